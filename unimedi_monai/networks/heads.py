# SPDX-License-Identifier: Apache-2.0
"""Heads on the backbone: projection into the shared image-text space and the self-distillation head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ProjectionHead", "DistillationHead"]


class ProjectionHead(nn.Module):
    """Projects an encoder feature into the shared image-text embedding space (L2-normalised).

    Args:
        in_dim: encoder feature width (image [CLS] or pooled report).
        embed_dim: shared embedding width.
        hidden_dim: hidden width of a two-layer MLP; None for a single linear layer (CLIP).
    """

    def __init__(self, in_dim: int, embed_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        if hidden_dim is None:
            self.net: nn.Module = nn.Linear(in_dim, embed_dim, bias=False)
        else:
            self.net = nn.Sequential(
                nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, embed_dim, bias=False)
            )
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=in_dim**-0.5)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        z = self.net(x)
        return F.normalize(z, dim=-1) if normalize else z


class DistillationHead(nn.Module):
    """DINO/iBOT projection head: MLP, L2-normalised bottleneck, weight-normalised prototypes.

    The same head maps the [CLS] token (for L_icl) and the patch tokens (for L_pcl), as iBOT's
    shared head does; student and teacher each own a copy (the teacher's is an EMA).

    Args:
        in_dim: backbone width.
        out_dim: number of prototypes (logits).
        hidden_dim: MLP hidden width.
        bottleneck_dim: width before the prototype layer.
        num_layers: MLP depth (>= 1).
        use_bn: BatchNorm after each hidden layer (DINO's ``use_bn_in_head``). Standardising each
            feature over the batch removes what all images share, so the prototype logits follow
            the differences between images from the first step. That matters when images share
            most of their content (chest radiographs of one view, CT of one body region): the raw
            [CLS] of two images then have a cosine near 1 and, without it, the sharpened targets
            start (and stay) near uniform. Call the head on one modality / token kind at a time so
            the batch statistics are not those of a modality mix.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_layers: int = 3,
        use_bn: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"DistillationHead num_layers must be >= 1, got {num_layers}.")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(dim, hidden_dim)] + ([nn.BatchNorm1d(hidden_dim)] if use_bn else []) + [nn.GELU()]
            dim = hidden_dim
        layers.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.prototypes = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        # DINO fixes the norm of the prototype weights (weight_g = 1, not learnt).
        self.prototypes.parametrizations.weight.original0.data.fill_(1.0)
        self.prototypes.parametrizations.weight.original0.requires_grad_(False)

        self.use_bn = bool(use_bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(..., in_dim)`` features to ``(..., out_dim)`` logits."""
        shape = x.shape
        z = self.mlp(x.reshape(-1, shape[-1]) if self.use_bn else x)
        return self.prototypes(F.normalize(z, dim=-1)).reshape(*shape[:-1], self.prototypes.out_features)
