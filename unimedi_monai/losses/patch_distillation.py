# SPDX-License-Identifier: Apache-2.0
"""L_pcl: iBOT-style self-distillation of patch tokens at the masked positions ("mask and recovery")."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unimedi_monai.losses.cls_distillation import ClsDistillationLoss

__all__ = ["PatchDistillationLoss"]


class PatchDistillationLoss(ClsDistillationLoss):
    """Masked-patch distillation: the student sees a mask token where the teacher sees the patch.

    For each sample, the cross-entropy between the teacher's centred, sharpened distribution and
    the student's is averaged over that sample's masked positions; samples are then averaged
    (iBOT's ``loss2``), so a sequence with many tokens (a CT) weighs as much as one with few (an X-ray).

    The inputs are the masked positions only, flattened over samples of any sequence length, with
    ``sample_index`` telling which sample each row belongs to: X-ray and CT sequences of different
    lengths are handled in one call. The centres (buffer ``center``, one per token group, e.g. X-ray
    patches, CT volume tokens, CT slice tokens: the 2D and 3D tokenizers' outputs have different
    means, see :class:`ClsDistillationLoss`) are updated with the mean of the teacher logits at the
    masked positions (documented choice: iBOT centres on all patch tokens; only the masked ones
    enter the loss, so we centre on what is distilled).

    Args: as :class:`ClsDistillationLoss` (``teacher_temperature`` 0.04, ``student_temperature`` 0.1).
    """

    def forward(  # type: ignore[override]
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        sample_index: torch.Tensor,
        num_samples: int,
        group: torch.Tensor | None = None,
        group_names: tuple[str, ...] | None = None,
    ) -> torch.Tensor:
        """Loss for ``(M, K)`` logits at the M masked positions.

        Args:
            student_logits: student head output at the masked positions.
            teacher_logits: teacher head output at the same positions.
            sample_index: ``(M,)`` long, the sample of each row, in ``[0, num_samples)``.
            num_samples: number of samples in the batch; samples with no masked position are skipped.
            group: ``(M,)`` long, the centre of each row (None: group 0).
            group_names: names of the groups for the per-group diagnostics.
        """
        if student_logits.shape != teacher_logits.shape or student_logits.shape[0] != sample_index.shape[0]:
            raise ValueError("student, teacher logits and sample_index must agree on the number of masked tokens.")
        if student_logits.shape[0] == 0:
            self.last_diagnostics = {}
            return student_logits.sum() * 0.0
        group = self._groups(group, teacher_logits.shape[0], teacher_logits.device)
        teacher_logits = teacher_logits.detach().float()
        targets = self.targets(teacher_logits, group)
        per_token = -(targets * F.log_softmax(student_logits.float() / self.student_temperature, dim=-1)).sum(-1)
        sums = per_token.new_zeros(num_samples).index_add_(0, sample_index, per_token)
        counts = per_token.new_zeros(num_samples).index_add_(0, sample_index, torch.ones_like(per_token))
        present = counts > 0
        loss = (sums[present] / counts[present]).mean()
        self.record_diagnostics(student_logits.detach(), targets, group, group_names)
        if self.training:
            self.update_center(teacher_logits, group)
        return loss
