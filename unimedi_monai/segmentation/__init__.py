"""Segmentation: 3D organ segmentation (BCV, AMOS datalists, transforms, organ phantoms) and 2D X-ray
segmentation (RSNA pneumonia boxes, generic 2D datalists, the lesion demo, PNG masks), metrics and helpers.

Names load on first use, like :mod:`unimedi_monai.data`, so bundle configs can reference
``$unimedi_monai.segmentation.xxx`` after ``$import unimedi_monai``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AMOS_ORGANS": "organs",
    "BCV_ORGANS": "organs",
    "TOTALSEGMENTATOR_TO_BCV": "organs",
    "channel_def": "organs",
    "organ_names": "organs",
    "load_segmentation_datalist": "datalists",
    "segmentation_transforms": "transforms",
    "RemapLabelsd": "transforms",
    "CheckLabelRanged": "transforms",
    "CheckSameGridd": "transforms",
    "per_organ_dice": "metrics",
    "generate_organ_phantoms": "phantoms",
    "resolve_segmentation_data": "phantoms",
    "OrganDiceWriter": "metrics",
    "organ_dice_report": "metrics",
    "BestModelSaver": "best_model",
    "AtomicNibabelWriter": "io",
    "inference_items": "io",
    "inference_outputs": "io",
    "MappedLayout": "io",
    "initialize_network": "network_init",
    "segmentation_param_groups": "network_init",
    "XRAY_DATASETS": "xray_data",
    "generate_lesion_demo": "xray_data",
    "load_2d_datalist": "xray_data",
    "load_rsna_segmentation": "xray_data",
    "load_xray_segmentation_data": "xray_data",
    "resolve_xray_segmentation_data": "xray_data",
    "LoadXrayMaskd": "xray_transforms",
    "SavePNGMaskd": "xray_transforms",
    "boxes_to_mask": "xray_transforms",
    "xray_segmentation_transforms": "xray_transforms",
    "SegmentationReportWriter": "xray_report",
    "save_overlays": "xray_report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
