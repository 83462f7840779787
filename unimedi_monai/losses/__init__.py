# SPDX-License-Identifier: Apache-2.0
"""Losses of UniMedI: vision-language contrastive (L_vl), [CLS] (L_icl) and patch (L_pcl) distillation,
slice-report contrastive (L_slice)."""

from __future__ import annotations

from unimedi_monai.lazy_exports import lazy_exports

_EXPORTS = {
    "ClsDistillationLoss": "cls_distillation",
    "ContrastiveLoss": "contrastive",
    "PatchDistillationLoss": "patch_distillation",
    "SliceReportLoss": "slice_report",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
