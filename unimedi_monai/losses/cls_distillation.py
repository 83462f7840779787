"""L_icl: DINO-style self-distillation of the student's [CLS] towards the EMA teacher's."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unimedi_monai.losses.distributed import all_reduce_sum

__all__ = ["ClsDistillationLoss"]


class ClsDistillationLoss(nn.Module):
    """Cross-entropy between the centred, sharpened teacher distribution and the student's.

    ``loss = mean_b sum_k -softmax((t_b - c) / T_t)_k * log_softmax(s_b / T_s)_k``

    State: the teacher centre ``c`` (buffer ``center``, shape ``(1, K)``), updated after each call
    with the batch mean of the teacher logits (all-reduced over ranks):
    ``c <- m c + (1 - m) mean(t)``. Centring and sharpening together keep the teacher from collapsing.

    Args:
        out_dim: number of prototypes K.
        student_temperature: T_s (0.1 as in DINO).
        teacher_temperature: T_t (0.04 as in DINO; lower is sharper).
        center_momentum: m (0.9 as in DINO).
    """

    def __init__(self, out_dim: int, student_temperature: float = 0.1, teacher_temperature: float = 0.04, center_momentum: float = 0.9) -> None:
        super().__init__()
        if student_temperature <= 0 or teacher_temperature <= 0:
            raise ValueError("distillation temperatures must be positive.")
        if not 0.0 <= center_momentum < 1.0:
            raise ValueError(f"center_momentum must be in [0, 1), got {center_momentum}.")
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """Loss for ``(B, K)`` student and teacher logits; updates the centre (in training mode)."""
        teacher_logits = teacher_logits.detach().float()
        targets = F.softmax((teacher_logits - self.center) / self.teacher_temperature, dim=-1)
        log_probs = F.log_softmax(student_logits.float() / self.student_temperature, dim=-1)
        loss = -(targets * log_probs).sum(dim=-1).mean()
        if self.training:
            self.update_center(teacher_logits)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """EMA update of the centre with the (all-rank) mean of ``teacher_logits`` ``(M, K)``."""
        stats = torch.cat([teacher_logits.float().sum(0), teacher_logits.new_tensor([teacher_logits.shape[0]], dtype=torch.float32)])
        stats = all_reduce_sum(stats)
        if stats[-1] > 0:
            batch_center = (stats[:-1] / stats[-1]).unsqueeze(0)
            self.center.mul_(self.center_momentum).add_(batch_center, alpha=1.0 - self.center_momentum)
