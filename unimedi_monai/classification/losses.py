# SPDX-License-Identifier: Apache-2.0
"""Loss for multi-label classification with ignored labels (CheXpert's uncertain labels)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MaskedBCEWithLogitsLoss"]


class MaskedBCEWithLogitsLoss(nn.Module):
    """Binary cross-entropy on logits, averaged over the labels that are not ``ignore_value``.

    Args:
        ignore_value: label value left out of the loss (``-1``: an uncertain CheXpert label
            under the ``ignore`` policy).

    Example::

        loss = MaskedBCEWithLogitsLoss()(logits, torch.tensor([[1.0, -1.0, 0.0]]))
    """

    def __init__(self, ignore_value: float = -1.0) -> None:
        super().__init__()
        self.ignore_value = float(ignore_value)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean loss over the kept entries (0 with a graph when every entry is ignored)."""
        target = target.to(logits.dtype)
        if target.shape != logits.shape:
            raise ValueError(
                f"multi-label target shape {tuple(target.shape)} does not match the logits {tuple(logits.shape)}."
            )
        keep = target != self.ignore_value
        loss = nn.functional.binary_cross_entropy_with_logits(logits, target.clamp(min=0.0), reduction="none")
        return (loss * keep).sum() / keep.sum().clamp(min=1)
