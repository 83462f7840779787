# SPDX-License-Identifier: Apache-2.0
"""Optimiser parameter groups: no weight decay on biases, norms and embeddings; a scaled LR for the text model."""

from __future__ import annotations

from torch import nn

__all__ = ["param_groups"]

_NO_DECAY_NAMES = ("bias", "position_embedding", "modality_embedding", "cls_token", "mask_token", "logit_scale")


def param_groups(model: nn.Module, weight_decay: float = 0.05, text_lr_scale: float = 1.0) -> list[dict]:
    """Split the trainable parameters of ``model`` into AdamW groups.

    Biases, LayerNorm weights, position / modality embeddings, [CLS] / mask tokens and the contrastive
    temperature get no weight decay (``apply_weight_decay=False``: the trainer's weight-decay
    schedule leaves them at 0). Parameters of the pre-trained report encoder get ``lr_scale =
    text_lr_scale`` (the trainer multiplies the scheduled LR by each group's ``lr_scale``).

    Args:
        model: the (unwrapped) model.
        weight_decay: initial weight decay of the decayed groups.
        text_lr_scale: LR multiplier for ``text_encoder.*`` parameters.
    """
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or any(k in name for k in _NO_DECAY_NAMES)
        is_text = name.startswith("text_encoder.")
        groups.setdefault((no_decay, is_text), []).append(p)
    out = []
    for (no_decay, is_text), params in sorted(groups.items()):
        out.append(
            {
                "params": params,
                "weight_decay": 0.0 if no_decay else weight_decay,
                "apply_weight_decay": not no_decay,
                "lr_scale": text_lr_scale if is_text else 1.0,
            }
        )
    return out
