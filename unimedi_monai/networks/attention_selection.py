# SPDX-License-Identifier: Apache-2.0
"""Attention-guided masking and attentive slice selection, as pure tensor functions.

Both use the EMA teacher's [CLS]-to-patch attention (``SharedBackbone(..., cls_attention=...)``).

Attention-guided masking (student input): per sample, the ``ratio`` fraction of patch tokens with
the *lowest* teacher attention is replaced by the mask token, so the student keeps the patches the
report-aligned [CLS] looks at and must recover the rest (L_pcl). Ties are broken by token index.

Attentive slice selection (Eq. 2, "inter-slice average"): a 3D token covers ``patch_depth``
consecutive slices (4 for 16x16x4 patches on 32 slices), so the score of a slice is the mean
attention of the tokens covering it. That score is constant over the slices of one token; we
interpolate linearly between token-depth centres (``F.interpolate``, ``align_corners=False``) so that
slices get distinct scores and, inside a token's span, the side facing other high-scoring tokens
ranks first. With ``interpolate=False`` the plain block average is returned. The top-k slices are
returned in ascending slice order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "attention_guided_mask",
    "attention_statistics",
    "mean_pairwise_cosine",
    "slice_scores",
    "top_k_slices",
    "sample_slices",
    "gather_slices",
]


def attention_guided_mask(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """Mask the lowest-scoring tokens.

    Args:
        scores: ``(B, N)`` teacher [CLS] attention per patch token.
        ratio: fraction of tokens to mask, in ``[0, 1)``; ``round(ratio * N)`` tokens per sample.

    Returns:
        ``(B, N)`` bool, True where the student gets the mask token.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}.")
    b, n = scores.shape
    num_masked = int(round(ratio * n))
    mask = torch.zeros(b, n, dtype=torch.bool, device=scores.device)
    if num_masked == 0:
        return mask
    order = torch.argsort(scores.float(), dim=1, stable=True)
    mask.scatter_(1, order[:, :num_masked], True)
    return mask


def attention_statistics(attention: torch.Tensor) -> tuple[float, float]:
    """How focused and how image-dependent a batch of [CLS] attention maps is.

    Args:
        attention: ``(B, N)`` non-negative [CLS] attention on ``N`` patch tokens (renormalised here, so a
            map without the [CLS] key's own weight is fine).

    Returns:
        ``(entropy, cosine)``: the mean entropy of the renormalised maps divided by its maximum ``log N``
        (1: uniform attention, the [CLS] averages every token alike; near 0: a few tokens), and the mean
        cosine between the maps of different images (1: every image gets the same map, i.e. attention by
        position; ``nan`` for a single image).
    """
    if attention.ndim != 2 or attention.shape[1] < 2:
        raise ValueError(f"attention must be (B, N) with N >= 2, got shape {tuple(attention.shape)}.")
    a = attention.float().clamp_min(0.0)
    a = a / a.sum(dim=1, keepdim=True).clamp_min(1e-12)
    entropy = -(a * a.clamp_min(1e-12).log()).sum(dim=1).mean() / math.log(a.shape[1])
    return float(entropy), mean_pairwise_cosine(a)


def mean_pairwise_cosine(rows: torch.Tensor) -> float:
    """Mean cosine between the different rows of ``(B, D)`` (attention maps, embeddings); ``nan`` for ``B < 2``."""
    b = rows.shape[0]
    if b < 2:
        return float("nan")
    unit = F.normalize(rows.float(), dim=1)
    sim = unit @ unit.t()
    return float((sim.sum() - sim.diagonal().sum()) / (b * (b - 1)))


def slice_scores(
    attention: torch.Tensor, grid: Sequence[int], num_slices: int, interpolate: bool = True
) -> torch.Tensor:
    """Per-slice scores from the [CLS] attention over 3D tokens (inter-slice average).

    Args:
        attention: ``(B, h*w*d)`` attention over the volume tokens, in the tokenizer's order
            (depth fastest).
        grid: the token grid ``(h, w, d)``.
        num_slices: slices of the input volume along its last axis (a multiple of ``d``).
        interpolate: interpolate between token-depth centres (default) or keep the block average.

    Returns:
        ``(B, num_slices)`` scores.
    """
    h, w, d = (int(g) for g in grid)
    if attention.shape[-1] != h * w * d:
        raise ValueError(f"attention has {attention.shape[-1]} tokens but grid {tuple(grid)} holds {h * w * d}.")
    if num_slices % d != 0:
        raise ValueError(f"num_slices ({num_slices}) must be a multiple of the token grid depth ({d}).")
    per_depth = attention.float().reshape(-1, h * w, d).mean(dim=1)
    if interpolate:
        return F.interpolate(per_depth.unsqueeze(1), size=num_slices, mode="linear", align_corners=False).squeeze(1)
    return per_depth.repeat_interleave(num_slices // d, dim=1)


def top_k_slices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``(B, k)`` of the k highest-scoring slices, in ascending slice order."""
    if not 1 <= k <= scores.shape[-1]:
        raise ValueError(f"k must be in [1, {scores.shape[-1]}], got {k}.")
    return torch.topk(scores, k, dim=-1).indices.sort(dim=-1).values


def sample_slices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``(B, k)`` of k slices drawn without replacement, slice ``i`` with probability proportional
    to ``scores[:, i]`` (non-negative, e.g. attention mass), in ascending slice order.

    Gumbel top-k: the k largest ``log(score) + Gumbel noise`` are an ordered draw without replacement
    (Kool et al., 2019). Draws from the global torch RNG (saved in training checkpoints).
    """
    if (scores < 0).any():
        raise ValueError("sample_slices needs non-negative scores (e.g. the raw attention mass per slice).")
    u = torch.rand_like(scores, dtype=torch.float32).clamp_(1e-12, 1.0 - 1e-7)
    keys = scores.float().clamp_min(1e-30).log() - (-u.log()).log()
    return top_k_slices(keys, k)


def gather_slices(volume: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Cut slices along the last axis.

    Args:
        volume: ``(B, C, H, W, D)``.
        indices: ``(B, k)`` slice indices.

    Returns:
        ``(B * k, C, H, W)``: sample-major (the k slices of sample 0 first).
    """
    b, c, h, w, _ = volume.shape
    k = indices.shape[1]
    idx = indices.to(volume.device).view(b, 1, 1, 1, k).expand(b, c, h, w, k)
    return torch.gather(volume, 4, idx).permute(0, 4, 1, 2, 3).reshape(b * k, c, h, w)
