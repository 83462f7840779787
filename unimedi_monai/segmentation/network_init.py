# SPDX-License-Identifier: Apache-2.0
"""Network initialisation (pre-trained encoder or from scratch) and optimiser parameter groups."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from typing import TypeVar

from torch import nn

__all__ = ["INIT_MODES", "initialize_network", "segmentation_param_groups"]

logger = logging.getLogger(__name__)

#: a segmentation network with ``load_pretrained_encoder`` (``UniMedIUNETR``, ``UniMedISETRPUP``).
Net = TypeVar("Net", bound=nn.Module)

INIT_MODES = ("pretrained", "random")


def initialize_network(network: Net, init: str = "pretrained", pretrained_path: str | os.PathLike | None = None, source: str = "student") -> Net:
    """Load the pre-trained encoder into ``network`` (``init="pretrained"``) or keep its random weights.

    Args:
        network: the segmentation network (3D ``UniMedIUNETR`` or 2D ``UniMedISETRPUP``: any network
            with ``load_pretrained_encoder(path, source)``).
        init: ``"pretrained"`` (encoder from the pre-training bundle's checkpoint) or ``"random"``
            (from-scratch baseline).
        pretrained_path: the pre-training checkpoint (e.g. ``bundles/pretrain/models/model.pt``).
        source: ``"student"`` or ``"teacher"`` encoder of that checkpoint.

    Returns:
        ``network`` (for use in configs); the load report is kept in ``network.pretrained_report``.

    Raises:
        ValueError: an unknown ``init``.
        FileNotFoundError: ``init="pretrained"`` and no checkpoint at ``pretrained_path``.
    """
    if init not in INIT_MODES:
        raise ValueError(f"init must be one of {INIT_MODES}, got {init!r}.")
    network.pretrained_report = None  # type: ignore[assignment]
    if init == "random":
        logger.info("init=random: training the encoder from scratch (baseline)")
        return network
    if pretrained_path is None or not Path(pretrained_path).is_file():
        raise FileNotFoundError(
            f"pretrained_path '{pretrained_path}' does not exist; run the pretrain bundle first, set --pretrained_path "
            f"to its models/model.pt, or use --init random for the from-scratch baseline."
        )
    report = network.load_pretrained_encoder(pretrained_path, source=source)  # logs loaded / missing / unexpected
    network.pretrained_report = report  # type: ignore[assignment]
    return network


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
