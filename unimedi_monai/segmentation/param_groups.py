# SPDX-License-Identifier: Apache-2.0
"""Optimiser parameter groups of the segmentation networks (the encoder at its own learning rate).

The pre-trained encoder is loaded by :func:`unimedi_monai.io.load_weights` (``source="student"`` or
``"teacher"``, ``init="random"`` for the from-scratch baseline).
"""

from __future__ import annotations

from torch import nn

__all__ = ["segmentation_param_groups"]


def segmentation_param_groups(network: nn.Module, lr: float, encoder_lr_scale: float = 1.0) -> list[dict]:
    """Two parameter groups: the encoder at ``lr * encoder_lr_scale`` and the decoder at ``lr``.

    A scale below 1 keeps the pre-trained encoder closer to its initialisation (0 freezes it in effect).
    Networks without ``encoder_parameters`` / ``decoder_parameters`` get one group. Parameters that do
    not require gradients (a frozen encoder) are left out.
    """
    module = getattr(network, "module", network)
    if not (hasattr(module, "encoder_parameters") and hasattr(module, "decoder_parameters")):
        return [{"params": list(network.parameters()), "lr": lr}]
    groups = [
        {"params": [p for p in module.encoder_parameters() if p.requires_grad], "lr": lr * float(encoder_lr_scale)},
        {"params": [p for p in module.decoder_parameters() if p.requires_grad], "lr": lr},
    ]
    return [g for g in groups if g["params"]]
