# SPDX-License-Identifier: Apache-2.0
"""Vision-language contrastive loss (CLIP's symmetric InfoNCE) with a learnable temperature."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from unimedi_monai.losses.distributed import all_gather_with_grad

__all__ = ["ContrastiveLoss"]


class ContrastiveLoss(nn.Module):
    """Symmetric InfoNCE between paired image and report embeddings.

    Under ``torch.distributed`` each rank gathers every rank's features *with gradient* and scores
    its local queries against all candidates (open_clip's ``local_loss`` with ``gather_with_grad``);
    averaged over ranks (what DDP's gradient averaging does) this equals the single-process loss on the
    concatenated batch.

    State: the learnable log inverse temperature ``logit_scale`` (initialised to ``log(1 / 0.07)``),
    clamped so the temperature stays in ``[min_temperature, max_temperature]``.

    Args:
        init_temperature: starting temperature (0.07 as in CLIP).
        min_temperature: lower clamp (0.01: logit scale at most 100, CLIP's cap).
        max_temperature: upper clamp.
        learnable: learn the temperature (else fixed at ``init_temperature``).
    """

    def __init__(
        self,
        init_temperature: float = 0.07,
        min_temperature: float = 0.01,
        max_temperature: float = 1.0,
        learnable: bool = True,
    ) -> None:
        super().__init__()
        if not 0 < min_temperature <= init_temperature <= max_temperature:
            raise ValueError(
                "contrastive temperatures must satisfy 0 < min_temperature <= init_temperature <= max_temperature, "
                f"got {min_temperature}, {init_temperature}, {max_temperature}."
            )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)), requires_grad=learnable)
        self.min_log = math.log(1.0 / max_temperature)
        self.max_log = math.log(1.0 / min_temperature)

    @property
    def temperature(self) -> float:
        """The current (clamped) temperature."""
        return float(1.0 / self.logit_scale.detach().clamp(self.min_log, self.max_log).exp())

    def logit_scale_value(self) -> torch.Tensor:
        """The clamped inverse temperature, with gradient (shared with
        :class:`~unimedi_monai.losses.slice_report.SliceReportLoss`)."""
        return self.logit_scale.clamp(self.min_log, self.max_log).exp()

    def forward(self, image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        """Loss for ``(B, D)`` L2-normalised image and text embeddings, row i paired with row i."""
        if image_emb.shape != text_emb.shape:
            raise ValueError(
                f"image and text embeddings must have the same shape, got {tuple(image_emb.shape)} and "
                f"{tuple(text_emb.shape)}."
            )
        scale = self.logit_scale_value()
        all_images, offset = all_gather_with_grad(image_emb)
        all_texts, _ = all_gather_with_grad(text_emb)
        labels = torch.arange(image_emb.shape[0], device=image_emb.device) + offset
        logits_per_image = scale * image_emb.float() @ all_texts.float().t()
        logits_per_text = scale * text_emb.float() @ all_images.float().t()
        return 0.5 * (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels))
