# SPDX-License-Identifier: Apache-2.0
"""Patch tokenizers: the modality-specific front ends of the shared backbone.

UniMedI keeps one tokenizer per input dimensionality and shares everything after it:

- the 2D tokenizer cuts a 1-channel image into 16x16 patches (a 224x224 X-ray gives 196 tokens, a
  128x128 CT slice gives 64) and its position embeddings, learnt on the 14x14 grid of a 224 input,
  are interpolated (bicubic) to any other grid;
- the 3D tokenizer cuts a 1-channel CT in MONAI's (H, W, D) order into 16x16x4 patches: a
  128x128x32 volume gives an 8x8x8 grid, 512 tokens (trilinear interpolation for other grids).

Each tokenizer adds its own position embeddings and a learnt modality embedding, so the shared
backbone can tell an X-ray / slice token from a volume token. Masked tokens (attention-guided
masking of the student) are swapped for the learnt mask token *before* position and modality
embeddings are added, as iBOT does: the student knows where a masked patch is, not what it holds.

Stems: ``"linear"`` (default, the paper's ViT) embeds each patch with one strided convolution;
``"conv"`` replaces it with a small stack of 3x3(x3) stride-2 convolutions ending at the patch
stride ("early convolutions", Xiao et al. 2021), which gives the transformer a local inductive bias
and makes it train in a few hundred steps on small data: the ``demo`` and ``tiny`` presets use it
so that the built-in demo pre-trains on a CPU in minutes. The conv stem's BatchNorm layers keep
running statistics per input source (``num_sources``; :class:`SourceBatchNorm`): the 2D tokenizer
serves X-rays (source 0) and CT slices (source 1), whose intensities differ, and one set of running
statistics would normalise both by their blend in eval mode.

Tokens are flattened in the grid's row-major order: for a 3D grid (h, w, d) the token index is
``(i * w + j) * d + k``, so the depth index is the fastest-moving one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from unimedi_monai.networks.source_batch_norm import SourceBatchNorm

__all__ = ["PatchTokenizer", "POSITION_RMS_CONV_STEM"]

#: per-channel RMS of ViT's learnt-position init (the smaller conv-stem position init that was tried):
#: ``position_scale=POSITION_RMS_CONV_STEM * 2 ** 0.5`` gives a sine-cosine init of this RMS
POSITION_RMS_CONV_STEM = 0.02


def _as_tuple(value: int | Sequence[int], dims: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * dims
    value = tuple(int(v) for v in value)
    if len(value) != dims:
        raise ValueError(f"{name} must have {dims} entries for spatial_dims={dims}, got {value}.")
    return value


def sincos_position_embedding(grid: Sequence[int], dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed sine-cosine position embeddings ``(dim, *grid)`` for a 2D or 3D grid (MAE / MoCo v3 style).

    The channels are split evenly over the axes (``dim`` must be divisible by ``2 * len(grid)``;
    leftover channels are zero); each axis gets sines and cosines of its coordinate at geometric
    frequencies.
    """
    axes = len(grid)
    per_axis = (dim // (2 * axes)) * 2
    if per_axis == 0:
        raise ValueError(f"position embedding width {dim} is too small for a {axes}D grid.")
    coords = torch.meshgrid(*[torch.arange(g, dtype=torch.float32) for g in grid], indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(per_axis // 2, dtype=torch.float32) / (per_axis // 2))
    parts = []
    for c in coords:
        angles = c.unsqueeze(0) * omega.view(-1, *([1] * axes))
        parts += [angles.sin(), angles.cos()]
    emb = torch.cat(parts, dim=0)
    if emb.shape[0] < dim:
        emb = torch.cat([emb, emb.new_zeros((dim - emb.shape[0], *grid))], dim=0)
    return emb


class _ConvStem(nn.Sequential):
    """The conv stem's layers, run in order; ``source`` selects the running statistics of its BatchNorms."""

    def forward(self, x: torch.Tensor, source: int = 0) -> torch.Tensor:
        for layer in self:
            x = layer(x, source) if isinstance(layer, SourceBatchNorm) else layer(x)
        return x


def _conv_stem(
    spatial_dims: int, in_channels: int, hidden_size: int, patch_size: Sequence[int], num_sources: int = 1
) -> _ConvStem:
    """3x3(x3) convolutions, stride 2 along each axis until its patch size is reached, then a 1x1(x1);
    each convolution but the last is followed by a :class:`SourceBatchNorm` with ``num_sources`` sets of
    running statistics and a ReLU."""
    for p in patch_size:
        if p & (p - 1):
            raise ValueError(f"the conv stem needs power-of-two patch sizes, got {tuple(patch_size)}.")
    stages = max(int(p).bit_length() - 1 for p in patch_size)
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    layers: list[nn.Module] = []
    channels = in_channels
    remaining = list(patch_size)
    for i in range(stages):
        out = max(hidden_size // 2 ** (stages - 1 - i), 8) if i < stages - 1 else hidden_size
        stride = tuple(2 if r > 1 else 1 for r in remaining)
        remaining = [r // s for r, s in zip(remaining, stride)]
        # BatchNorm trained this stem fastest on the demo data (GroupNorm: R@1 at chance after the
        # same 10-minute run); the EMA teacher copies the student's running statistics
        layers += [
            conv(channels, out, kernel_size=3, stride=stride, padding=1, bias=False),
            SourceBatchNorm(out, spatial_dims, num_sources),
            nn.ReLU(inplace=True),
        ]
        channels = out
    layers.append(conv(channels, hidden_size, kernel_size=1))
    return _ConvStem(*layers)


class PatchTokenizer(nn.Module):
    """Patch embedding with position and modality embeddings for 2D or 3D single-channel input.

    Args:
        spatial_dims: 2 for images / slices, 3 for volumes.
        img_size: the input size the position embeddings are learnt for, e.g. 224 or (128, 128, 32).
        patch_size: patch size, e.g. 16 or (16, 16, 4).
        hidden_size: token width (must match the backbone).
        in_channels: input channels (1 for X-ray and CT).
        stem: ``"linear"`` (one patch-sized convolution) or ``"conv"`` (stacked stride-2 convolutions).
        position_scale: amplitude of the sine-cosine init of the learnt position embeddings (1.0, MAE's;
            the embedding's RMS is then ~0.71). ``POSITION_RMS_CONV_STEM * 2 ** 0.5`` (~0.028) gives ViT's
            learnt-position RMS of 0.02, below the conv stem's initial token content (an option of the
            issue-13 objective study; 0 starts without position).
        num_sources: input sources with their own BatchNorm running statistics in the conv stem (the 2D
            tokenizer: 2, X-rays and CT slices); ``forward(..., source=i)`` picks one. The linear stem has
            no statistics and only checks the index.

    Example::

        tok2d = PatchTokenizer(2, 224, 16, 768)
        tok2d(torch.zeros(2, 1, 224, 224)).shape  # (2, 196, 768)
        tok2d(torch.zeros(2, 1, 128, 128)).shape  # (2, 64, 768), position embeddings interpolated
        tok3d = PatchTokenizer(3, (128, 128, 32), (16, 16, 4), 768)
        tok3d(torch.zeros(2, 1, 128, 128, 32)).shape  # (2, 512, 768)
    """

    def __init__(
        self,
        spatial_dims: int,
        img_size: int | Sequence[int],
        patch_size: int | Sequence[int],
        hidden_size: int,
        in_channels: int = 1,
        stem: str = "linear",
        position_scale: float = 1.0,
        num_sources: int = 1,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if isinstance(num_sources, bool) or int(num_sources) != num_sources or num_sources < 1:
            raise ValueError(f"tokenizer num_sources must be a positive integer, got {num_sources!r}.")
        position_scale = float(position_scale)
        if not math.isfinite(position_scale) or position_scale < 0:
            raise ValueError(f"position_scale must be a finite number >= 0, got {position_scale}.")
        self.spatial_dims = spatial_dims
        self.img_size = _as_tuple(img_size, spatial_dims, "img_size")
        self.patch_size = _as_tuple(patch_size, spatial_dims, "patch_size")
        for s, p in zip(self.img_size, self.patch_size):
            if s % p != 0:
                raise ValueError(f"img_size {self.img_size} must be divisible by patch_size {self.patch_size}.")
        self.grid_size = tuple(s // p for s, p in zip(self.img_size, self.patch_size))
        self.hidden_size = hidden_size
        self.in_channels = in_channels
        if stem == "linear":
            conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
            self.proj: nn.Module = conv(in_channels, hidden_size, kernel_size=self.patch_size, stride=self.patch_size)
        elif stem == "conv":
            self.proj = _conv_stem(spatial_dims, in_channels, hidden_size, self.patch_size, num_sources)
        else:
            raise ValueError(f"tokenizer stem must be 'linear' or 'conv', got {stem!r}.")
        self.stem = stem
        self.num_sources = int(num_sources)
        # learnt, initialised with sine-cosine embeddings of amplitude `position_scale` (default 1, MAE):
        # position is present from the first step, which a from-scratch ViT needs to tell left from right
        # on small data (MAE, MoCo v3). With the conv stem, whose initial token content is small (norm
        # ~0.6 against ~9.8 for the position at width 192), a position init scaled to
        # POSITION_RMS_CONV_STEM was tried together with other objective changes; on the full demo run
        # image-report alignment then stayed at the modality-only loss for all 432 steps, so amplitude 1
        # stays the default and the smaller init is an option until an ablation separates the causes.
        self.position_scale = position_scale
        self.position_embedding = nn.Parameter(
            sincos_position_embedding(self.grid_size, hidden_size).unsqueeze(0) * self.position_scale
        )
        self.modality_embedding = nn.Parameter(torch.zeros(1, 1, hidden_size))
        nn.init.trunc_normal_(self.modality_embedding, std=0.02)
        if stem == "linear":
            w = self.proj.weight.data
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
            nn.init.zeros_(self.proj.bias)

    @property
    def num_patches(self) -> int:
        """Tokens produced for an input of ``img_size``."""
        n = 1
        for g in self.grid_size:
            n *= g
        return n

    def grid_for(self, spatial_shape: Sequence[int]) -> tuple[int, ...]:
        """The token grid of an input of ``spatial_shape``.

        Raises:
            ValueError: the shape is not divisible by the patch size.
        """
        spatial_shape = tuple(int(s) for s in spatial_shape)
        if len(spatial_shape) != self.spatial_dims or any(s % p for s, p in zip(spatial_shape, self.patch_size)):
            raise ValueError(
                f"input spatial shape {spatial_shape} must have {self.spatial_dims} dims, each divisible by the "
                f"patch size {self.patch_size}."
            )
        return tuple(s // p for s, p in zip(spatial_shape, self.patch_size))

    def position_embedding_for(self, grid: Sequence[int]) -> torch.Tensor:
        """Position embeddings ``(1, prod(grid), hidden)`` for ``grid``, interpolated when it differs."""
        pos = self.position_embedding
        if tuple(grid) != self.grid_size:
            mode = "bicubic" if self.spatial_dims == 2 else "trilinear"
            pos = F.interpolate(pos, size=tuple(grid), mode=mode, align_corners=False)
        return pos.flatten(2).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        mask_token: torch.Tensor | None = None,
        source: int = 0,
    ) -> torch.Tensor:
        """Tokenise ``x``.

        Args:
            x: ``(B, C, *spatial)`` input.
            mask: optional ``(B, N)`` bool, True where the token is replaced by ``mask_token``.
            mask_token: ``(hidden,)`` or ``(1, 1, hidden)`` learnt token; required with ``mask``.
            source: the input source, in ``[0, num_sources)`` (the conv stem's running statistics).

        Returns:
            ``(B, N, hidden)`` tokens with position and modality embeddings added.
        """
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            kind = "(B, 1, H, W)" if self.spatial_dims == 2 else "(B, 1, H, W, D)"
            raise ValueError(f"{self.spatial_dims}D tokenizer expects input {kind}, got shape {tuple(x.shape)}.")
        grid = self.grid_for(x.shape[2:])
        if isinstance(source, bool) or not 0 <= int(source) < self.num_sources:
            raise ValueError(f"tokenizer source must be in [0, {self.num_sources - 1}], got {source!r}.")
        tokens = (self.proj(x, source) if isinstance(self.proj, _ConvStem) else self.proj(x)).flatten(2).transpose(1, 2)
        if mask is not None:
            if mask_token is None:
                raise ValueError("mask_token is required when a mask is given.")
            if mask.shape != tokens.shape[:2]:
                raise ValueError(f"mask shape {tuple(mask.shape)} does not match tokens {tuple(tokens.shape[:2])}.")
            tokens = torch.where(mask.unsqueeze(-1), mask_token.reshape(1, 1, -1).to(tokens.dtype), tokens)
        return tokens + self.position_embedding_for(grid).to(tokens.dtype) + self.modality_embedding.to(tokens.dtype)
