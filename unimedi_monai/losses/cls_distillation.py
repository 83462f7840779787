# SPDX-License-Identifier: Apache-2.0
"""L_icl: DINO-style self-distillation of the student's [CLS] towards the EMA teacher's."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from unimedi_monai.losses.distributed import all_reduce_sum

__all__ = ["ClsDistillationLoss", "distillation_diagnostics"]


@torch.no_grad()
def distillation_diagnostics(
    student_logits: torch.Tensor, targets: torch.Tensor, student_temperature: float
) -> dict[str, float]:
    """Detached health figures of one distillation call (no extra forward pass).

    Args:
        student_logits: ``(M, K)`` student head outputs.
        targets: ``(M, K)`` the teacher's centred, sharpened probabilities.
        student_temperature: T_s.

    Returns:
        ``entropy``: mean entropy of the teacher targets (nats; ``log K`` = uniform, 0 = one-hot),
        ``kl``: mean ``KL(targets || student)`` (the part of the loss the student can still reduce),
        ``distinct``: number of distinct teacher top prototypes among the M rows (1 = collapse).
    """
    targets = targets.float()
    log_t = targets.clamp_min(1e-12).log()
    log_s = F.log_softmax(student_logits.float() / student_temperature, dim=-1)
    entropy = -(targets * log_t).sum(-1)
    kl = (targets * (log_t - log_s)).sum(-1)
    return {
        "entropy": float(entropy.mean()),
        "kl": float(kl.mean()),
        "distinct": float(torch.unique(targets.argmax(-1)).numel()),
    }


class ClsDistillationLoss(nn.Module):
    """Cross-entropy between the centred, sharpened teacher distribution and the student's.

    ``loss = mean_b sum_k -softmax((t_b - c_{g(b)}) / T_t)_k * log_softmax(s_b / T_s)_k``

    State: one teacher centre per group (buffer ``center``, shape ``(num_groups, K)``), updated after
    each call with the batch mean of that group's teacher logits (all-reduced over ranks):
    ``c_g <- m c_g + (1 - m) mean_{b in g}(t_b)``. Centring and sharpening together keep the teacher
    from collapsing.

    Why groups: DINO's single centre assumes one input distribution. UniMedI mixes X-rays and CTs in
    a fixed ratio; one centre then sits between the two modality means, the modality offset is far
    larger than the spread between images of one modality, and at ``T_t = 0.04`` the targets collapse
    to one fixed prototype per modality (the loss equals the target entropy and the KL to the student
    is ~0). Centring each modality (and each token kind: 2D vs 3D patch tokens) on its own mean
    removes that offset, so what is left to sharpen is the difference between images. With
    ``num_groups=1`` this is exactly DINO's loss.

    Args:
        out_dim: number of prototypes K.
        student_temperature: T_s (0.1 as in DINO).
        teacher_temperature: T_t (0.04 as in DINO; lower is sharper). It can be changed between
            steps (the trainer's teacher-temperature warm-up sets the attribute).
        center_momentum: m (0.9 as in DINO).
        num_groups: number of separately centred groups (1: DINO).
    """

    def __init__(
        self,
        out_dim: int,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.04,
        center_momentum: float = 0.9,
        num_groups: int = 1,
    ) -> None:
        super().__init__()
        if student_temperature <= 0 or teacher_temperature <= 0:
            raise ValueError("distillation temperatures must be positive.")
        if not 0.0 <= center_momentum < 1.0:
            raise ValueError(f"center_momentum must be in [0, 1), got {center_momentum}.")
        if num_groups < 1:
            raise ValueError(f"num_groups must be >= 1, got {num_groups}.")
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature
        self.center_momentum = center_momentum
        self.num_groups = int(num_groups)
        self.register_buffer("center", torch.zeros(self.num_groups, out_dim))
        #: figures of the last call (detached floats), see :func:`distillation_diagnostics`
        self.last_diagnostics: dict[str, float] = {}

    def _groups(self, group: torch.Tensor | None, rows: int, device: torch.device) -> torch.Tensor:
        if group is None:
            if self.num_groups != 1:
                raise ValueError(f"this loss centres {self.num_groups} groups: pass the group of each row.")
            return torch.zeros(rows, dtype=torch.long, device=device)
        group = group.to(device=device, dtype=torch.long)
        if group.shape != (rows,):
            raise ValueError(f"group must have shape ({rows},), got {tuple(group.shape)}.")
        if rows and (int(group.min()) < 0 or int(group.max()) >= self.num_groups):
            raise ValueError(f"group indices must be in [0, {self.num_groups}).")
        return group

    def targets(self, teacher_logits: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """The teacher's centred, sharpened distribution ``(M, K)`` (``group``: ``(M,)`` long)."""
        return F.softmax((teacher_logits.detach().float() - self.center[group]) / self.teacher_temperature, dim=-1)

    def record_diagnostics(
        self,
        student_logits: torch.Tensor,
        targets: torch.Tensor,
        group: torch.Tensor,
        names: tuple[str, ...] | None = None,
    ) -> None:
        """Fill :attr:`last_diagnostics`: overall ``entropy`` / ``kl`` / ``distinct`` and, per group
        ``g`` (named by ``names[g]``), ``entropy_<name>`` and ``distinct_<name>``; plus ``log_k``."""
        diag = distillation_diagnostics(student_logits, targets, self.student_temperature)
        diag["log_k"] = math.log(targets.shape[-1])
        for g in range(self.num_groups):
            rows = group == g
            if names is None or g >= len(names) or not bool(rows.any()):
                continue
            d = distillation_diagnostics(student_logits[rows], targets[rows], self.student_temperature)
            diag[f"entropy_{names[g]}"] = d["entropy"]
            diag[f"kl_{names[g]}"] = d["kl"]
            diag[f"distinct_{names[g]}"] = d["distinct"]
        self.last_diagnostics = diag

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        group: torch.Tensor | None = None,
        group_names: tuple[str, ...] | None = None,
    ) -> torch.Tensor:
        """Loss for ``(B, K)`` student and teacher logits; updates the centres (in training mode).

        Args:
            student_logits: ``(B, K)``.
            teacher_logits: ``(B, K)``.
            group: ``(B,)`` long, the centre of each row (None: all rows in group 0).
            group_names: names of the groups for the per-group diagnostics.
        """
        group = self._groups(group, teacher_logits.shape[0], teacher_logits.device)
        teacher_logits = teacher_logits.detach().float()
        targets = self.targets(teacher_logits, group)
        log_probs = F.log_softmax(student_logits.float() / self.student_temperature, dim=-1)
        loss = -(targets * log_probs).sum(dim=-1).mean()
        self.record_diagnostics(student_logits.detach(), targets, group, group_names)
        if self.training:
            self.update_center(teacher_logits, group)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor, group: torch.Tensor | None = None) -> None:
        """EMA update of each group's centre with the (all-rank) mean of its rows of ``teacher_logits`` ``(M, K)``.

        A group with no row on any rank keeps its centre.
        """
        group = self._groups(group, teacher_logits.shape[0], teacher_logits.device)
        k = teacher_logits.shape[-1]
        stats = teacher_logits.new_zeros(self.num_groups, k + 1, dtype=torch.float32)
        stats[:, :k].index_add_(0, group, teacher_logits.float())
        stats[:, k].index_add_(0, group, torch.ones(group.shape[0], device=stats.device))
        stats = all_reduce_sum(stats)
        present = stats[:, k] > 0
        if bool(present.any()):
            batch_center = stats[present, :k] / stats[present, k:]
            self.center[present] = self.center[present] * self.center_momentum + batch_center * (
                1.0 - self.center_momentum
            )
