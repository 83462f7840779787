# SPDX-License-Identifier: Apache-2.0
"""Segmentation: 3D organ segmentation (BCV, AMOS datalists, transforms, organ phantoms) and 2D X-ray
segmentation (RSNA pneumonia boxes, generic 2D datalists, the lesion demo, PNG masks), metrics and helpers.

Names load on first use, like :mod:`unimedi_monai.data`, so bundle configs can reference
``$unimedi_monai.segmentation.xxx`` after ``$import unimedi_monai``.
"""

from __future__ import annotations

from unimedi_monai.lazy_exports import lazy_exports

_EXPORTS = {
    "AMOS_ORGANS": "organs",
    "BCV_ORGANS": "organs",
    "TOTALSEGMENTATOR_TO_BCV": "organs",
    "channel_def": "organs",
    "organ_names": "organs",
    "load_segmentation_datalist": "datalists",
    "RemapLabelsd": "remap_labels",
    "CheckLabelRanged": "label_checks",
    "CheckSameGridd": "label_checks",
    "per_organ_dice": "metrics",
    "generate_organ_phantoms": "phantoms",
    "resolve_segmentation_data": "phantoms",
    "OrganDiceWriter": "metrics",
    "organ_dice_report": "metrics",
    "MeanOrganDice": "metrics",
    "OrganMeanDiceMetric": "metrics",
    "mean_organ_dice": "metrics",
    "nan_mean_per_organ": "metrics",
    "AtomicNibabelWriter": "io",
    "inference_items": "io",
    "inference_outputs": "io",
    "MappedLayout": "io",
    "segmentation_param_groups": "param_groups",
    "XRAY_DATASETS": "xray_data",
    "generate_lesion_demo": "xray_data",
    "load_2d_datalist": "xray_data",
    "load_rsna_segmentation": "xray_data",
    "load_xray_segmentation_data": "xray_data",
    "resolve_xray_segmentation_data": "xray_data",
    "LoadXrayMaskd": "xray_transforms",
    "SavePNGMaskd": "xray_transforms",
    "boxes_to_mask": "xray_transforms",
    "SegmentationReportWriter": "xray_report",
    "save_overlays": "xray_report",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
