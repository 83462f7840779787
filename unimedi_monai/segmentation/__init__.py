"""3D organ segmentation: datalist adapters (BCV, AMOS), transforms, organ phantoms, metrics and helpers.

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
    "inference_postprocessing": "transforms",
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
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
