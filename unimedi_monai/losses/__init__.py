"""Losses of UniMedI: vision-language contrastive (L_vl), [CLS] (L_icl) and patch (L_pcl) distillation."""

from unimedi_monai.losses.cls_distillation import ClsDistillationLoss
from unimedi_monai.losses.contrastive import ContrastiveLoss
from unimedi_monai.losses.patch_distillation import PatchDistillationLoss

__all__ = ["ClsDistillationLoss", "ContrastiveLoss", "PatchDistillationLoss"]
