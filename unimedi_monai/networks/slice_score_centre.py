# SPDX-License-Identifier: Apache-2.0
"""Centring of the per-slice attention scores over the CTs seen in training."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unimedi_monai.losses.distributed import all_reduce_sum

__all__ = ["SliceScoreCentre"]


class SliceScoreCentre(nn.Module):
    """Running mean of the teacher's per-slice scores; selection on the scores minus that mean.

    The teacher's [CLS] attention, averaged per slice, holds a part shared by every CT (which slice
    positions the model attends to whatever the image, e.g. the lung bases where most findings lie)
    and a part that depends on the image. Top-k on the raw scores lets the shared part pick the same
    slices for every CT. Subtracting the running mean of the scores over the training CTs keeps the
    image-dependent part: a slice is selected when it gets more attention than that slice usually
    gets. This is DINO's centring of the teacher output, applied to slice selection; as there, the
    centre is an exponential moving average of batch means, updated after it is used (all-reduced
    over processes in distributed training).

    The centre is a buffer saved with the model; it stays zero (no centring) until :meth:`update` is
    called, so a model trained without centring selects on its raw scores.

    Args:
        num_slices: slices of the CT grid the centre is kept for (32 for a 128x128x32 CT).
        momentum: EMA momentum of the centre (0.9, DINO's centre momentum).
    """

    def __init__(self, num_slices: int, momentum: float = 0.9) -> None:
        super().__init__()
        if num_slices < 1:
            raise ValueError(f"num_slices must be at least 1, got {num_slices}.")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"slice score centre momentum must be in [0, 1), got {momentum}.")
        self.momentum = float(momentum)
        self.register_buffer("centre", torch.zeros(int(num_slices)))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        # weights saved before the centre existed load as "never updated" (raw scores, as they were trained)
        for name, value in (("centre", self.centre), ("initialised", self.initialised)):
            state_dict.setdefault(prefix + name, torch.zeros_like(value))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def centre_for(self, depth: int) -> torch.Tensor:
        """The centre ``(depth,)`` on a grid of ``depth`` slices, linearly interpolated (the identity for the
        centre's own depth; no shape test, so tracing records no constant)."""
        return F.interpolate(self.centre.view(1, 1, -1), size=depth, mode="linear", align_corners=False).view(-1)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` scores minus the centre (unchanged while the centre was never updated)."""
        if scores.ndim != 2:
            raise ValueError(f"slice scores must be (B, D), got shape {tuple(scores.shape)}.")
        # no Python branch on the buffer, so a traced (TorchScript) network keeps the centring
        return scores - self.centre_for(scores.shape[1]).to(scores.dtype) * self.initialised.to(scores.dtype)

    @torch.no_grad()
    def update(self, scores: torch.Tensor) -> None:
        """Move the centre towards the mean of ``scores`` ``(B, D)`` (the first update sets it)."""
        if scores.ndim != 2 or scores.shape[1] != self.centre.shape[0]:
            raise ValueError(
                f"slice scores for the centre must be (B, {self.centre.shape[0]}), got shape {tuple(scores.shape)}."
            )
        stats = torch.cat([scores.float().sum(0), scores.new_tensor([scores.shape[0]], dtype=torch.float32)])
        stats = all_reduce_sum(stats)
        mean = (stats[:-1] / stats[-1].clamp_min(1.0)).to(self.centre.dtype)
        ema = self.centre * self.momentum + mean * (1.0 - self.momentum)
        # torch.where on the flag instead of a Python test: no device-to-host sync in the training step
        self.centre.copy_(torch.where(self.initialised, ema, mean))
        self.initialised.fill_(True)
