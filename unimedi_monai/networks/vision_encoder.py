# SPDX-License-Identifier: Apache-2.0
"""The unified vision encoder: a 2D and a 3D tokenizer in front of one shared backbone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from unimedi_monai.networks.attention_selection import gather_slices
from unimedi_monai.networks.backbone import SharedBackbone
from unimedi_monai.networks.patch_tokenizer import PatchTokenizer
from unimedi_monai.networks.presets import BackboneConfig

__all__ = ["UnifiedVisionEncoder", "XRAY_SOURCE", "CT_SLICE_SOURCE", "NUM_2D_SOURCES"]

#: the 2D tokenizer's input sources, each with its own running statistics in a conv stem's BatchNorm
#: (:class:`~unimedi_monai.networks.source_batch_norm.SourceBatchNorm`), and their number
XRAY_SOURCE, CT_SLICE_SOURCE = 0, 1
NUM_2D_SOURCES = 2


class UnifiedVisionEncoder(nn.Module):
    """2D tokenizer + 3D tokenizer + shared backbone + the learnt mask token.

    A CT sequence is ``[3D tokens | tokens of slice 1 | ... | tokens of slice k]``: the volume's
    tokens followed by the 2D tokens of the selected slices, encoded in one backbone pass.

    Args:
        backbone: preset name, dict of overrides or :class:`BackboneConfig`.
        xray_size: 2D input size the 2D position embeddings are learnt for (224).
        ct_size: CT input size in (H, W, D) order (128, 128, 32).
        patch_size_2d: 2D patch size (16).
        patch_size_3d: 3D patch size in (H, W, D) order (16, 16, 4).
        position_scale: amplitude of both tokenizers' sine-cosine position init (1.0; see
            :class:`PatchTokenizer`).
    """

    def __init__(
        self,
        backbone: str | Mapping[str, Any] | BackboneConfig = "base",
        xray_size: int | Sequence[int] = 224,
        ct_size: Sequence[int] = (128, 128, 32),
        patch_size_2d: int | Sequence[int] = 16,
        patch_size_3d: Sequence[int] = (16, 16, 4),
        position_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.backbone = SharedBackbone(backbone)
        hidden = self.backbone.hidden_size
        stem = self.backbone.config.patch_stem
        scale = position_scale
        self.tokenizer_2d = PatchTokenizer(
            2, xray_size, patch_size_2d, hidden, stem=stem, position_scale=scale, num_sources=NUM_2D_SOURCES
        )
        self.tokenizer_3d = PatchTokenizer(3, ct_size, patch_size_3d, hidden, stem=stem, position_scale=scale)
        self.mask_token = nn.Parameter(torch.zeros(hidden))
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    @property
    def hidden_size(self) -> int:
        return self.backbone.hidden_size

    def embed_xray(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens ``(B, N2d, hidden)`` of ``(B, 1, H, W)`` images; ``mask`` ``(B, N2d)`` swaps in the mask token."""
        return self.tokenizer_2d(images, mask, self.mask_token if mask is not None else None, source=XRAY_SOURCE)

    def embed_volume(self, volumes: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens ``(B, N3d, hidden)`` of ``(B, 1, H, W, D)`` volumes through the 3D tokenizer."""
        if volumes.ndim != 5:
            raise ValueError(f"CT volumes must be (B, 1, H, W, D), got shape {tuple(volumes.shape)}.")
        return self.tokenizer_3d(volumes, mask, self.mask_token if mask is not None else None)

    def embed_slices(
        self, volumes: torch.Tensor, slice_indices: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Tokens ``(B, k * N2d, hidden)`` of the slices ``slice_indices`` ``(B, k)`` through the 2D tokenizer."""
        b, k = slice_indices.shape
        slices = gather_slices(volumes, slice_indices)
        mask2d = mask.reshape(b * k, -1) if mask is not None else None
        tokens = self.tokenizer_2d(slices, mask2d, self.mask_token if mask is not None else None, CT_SLICE_SOURCE)
        return tokens.reshape(b, -1, tokens.shape[-1])

    def embed_ct(
        self,
        volumes: torch.Tensor,
        slice_indices: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        volume_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Tokens of ``(B, 1, H, W, D)`` volumes, followed by those of the selected slices.

        Args:
            volumes: CT volumes.
            slice_indices: ``(B, k)`` slices (last axis) to add through the 2D tokenizer, or None.
            mask: ``(B, N3d + k * N2d)`` bool over the whole sequence, or None.
            volume_tokens: the unmasked :meth:`embed_volume` output when already computed (reused).

        Returns:
            ``(B, N3d + k * N2d, hidden)``.
        """
        if volumes.ndim != 5:
            raise ValueError(f"CT volumes must be (B, 1, H, W, D), got shape {tuple(volumes.shape)}.")
        n3d = 1
        for g in self.tokenizer_3d.grid_for(volumes.shape[2:]):
            n3d *= g
        if mask is not None and slice_indices is None and mask.shape[1] != n3d:
            raise ValueError(f"mask covers {mask.shape[1]} tokens but the volume alone gives {n3d}.")
        if volume_tokens is not None and mask is None:
            tokens = volume_tokens
        else:
            tokens = self.embed_volume(volumes, None if mask is None else mask[:, :n3d])
        if slice_indices is None or slice_indices.shape[1] == 0:
            return tokens
        slice_tokens = self.embed_slices(volumes, slice_indices, None if mask is None else mask[:, n3d:])
        return torch.cat([tokens, slice_tokens], dim=1)

    def forward(
        self,
        tokens: torch.Tensor,
        cls_attention: Literal["last", "all"] | None = None,
        return_hidden_states: bool = False,
    ) -> dict[str, Any]:
        """Run the shared backbone on embedded tokens (see :meth:`SharedBackbone.forward`)."""
        return self.backbone(tokens, cls_attention=cls_attention, return_hidden_states=return_hidden_states)
