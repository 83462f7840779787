# SPDX-License-Identifier: Apache-2.0
"""The transformer backbone shared by the 2D and 3D tokenizers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

from unimedi_monai.networks.attention_block import SDPABlock
from unimedi_monai.networks.presets import BackboneConfig, resolve_backbone_config

__all__ = ["SharedBackbone"]

AttentionLayers = Literal["last", "all"]


class SharedBackbone(nn.Module):
    """A ViT encoder over already-embedded tokens: prepends [CLS], runs the blocks, normalises.

    It knows nothing of images: tokenizers embed patches (with position and modality embeddings),
    so one backbone serves X-rays, CT slices, CT volumes and their concatenation.

    Its ``pooled`` output is the image's global feature, per the config's ``pooling``: the [CLS] token
    (``"cls"``, the paper's ViT), or the [CLS] plus a LayerNorm of the channel-wise max over the patch tokens
    (``"cls_max"``, an option; every preset pools ``"cls"``). Why the max: the [CLS] attends near-uniformly
    (entropy 0.999 of log N on a CT), so a lesion covering a few of a volume's 512 tokens moves the [CLS] by
    about 1/512; the ``demo`` backbone told the finding directly fits 29 % of 72 demo CTs through its [CLS]
    in 200 steps, against 100 % through the max of the same patch tokens (``benchmarks/bench_ct_path.py``).
    The max lets a few tokens carry the image from step 0, as max / log-sum-exp pooling does in weakly
    supervised chest imaging. In the full demo pre-training (2 seeds, benchmarks/RESULTS.md) it pulls the
    training CTs apart (teacher cosine between CTs 0.72-0.84 against 0.996) but CT retrieval stays at chance
    and report-guided slice selection falls to random, so it is not the default.

    Args:
        config: a preset name (``"base"``, ``"small"``, ``"demo"``, ``"tiny"``), a dict of overrides
            or a :class:`BackboneConfig`.

    Example::

        backbone = SharedBackbone("tiny")
        out = backbone(torch.randn(2, 196, 64), cls_attention="last")
        out["cls"].shape, out["patches"].shape, out["cls_attention"].shape  # (2,64) (2,196,64) (2,196)
    """

    def __init__(self, config: str | Mapping[str, Any] | BackboneConfig = "base") -> None:
        super().__init__()
        self.config = resolve_backbone_config(config)
        cfg = self.config
        self.hidden_size = cfg.hidden_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.hidden_size))
        rates = [cfg.drop_path_rate * i / max(cfg.num_layers - 1, 1) for i in range(cfg.num_layers)]
        self.blocks = nn.ModuleList(
            SDPABlock(cfg.hidden_size, cfg.num_heads, cfg.mlp_dim, cfg.qkv_bias, cfg.dropout_rate, rate)
            for rate in rates
        )
        self.norm = nn.LayerNorm(cfg.hidden_size)
        self.pooling = cfg.pooling
        # the max of layer-normalised tokens sits ~2-3 above zero in every channel: normalised again so
        # that it enters the global feature at the [CLS]'s scale (and its keys mark a cls_max checkpoint)
        self.max_norm = nn.LayerNorm(cfg.hidden_size) if cfg.pooling == "cls_max" else None
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(
        self,
        tokens: torch.Tensor,
        cls_attention: AttentionLayers | None = None,
        return_hidden_states: bool = False,
    ) -> dict[str, Any]:
        """Encode embedded tokens.

        Args:
            tokens: ``(B, N, hidden)`` patch tokens from one or more tokenizers.
            cls_attention: ``None`` (default, nothing extra), ``"last"`` (the last block's [CLS]
                attention) or ``"all"`` (the mean over all blocks), averaged over heads.
            return_hidden_states: also return every block's output (before the final norm), e.g.
                for UNETR-style skip connections.

        Returns:
            dict with ``cls`` ``(B, hidden)``, ``patches`` ``(B, N, hidden)`` (after the final norm),
            ``pooled`` ``(B, hidden)`` (the global feature, see the class docstring: ``cls`` itself for
            ``pooling="cls"``),
            ``cls_attention`` ``(B, N)``: the [CLS] query's softmax weights on the patch keys (the
            [CLS] key's own weight is dropped, not renormalised; fp32; mean over blocks for
            ``"all"``) or None,
            and ``hidden_states`` (list of ``(B, N + 1, hidden)``) when asked.
        """
        if cls_attention not in (None, "last", "all"):
            raise ValueError(f"cls_attention must be None, 'last' or 'all', got {cls_attention!r}.")
        b = tokens.shape[0]
        x = torch.cat([self.cls_token.expand(b, -1, -1).to(tokens.dtype), tokens], dim=1)
        attention_sum = None
        attention_count = 0
        hidden_states = []
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            want = cls_attention == "all" or (cls_attention == "last" and i == last)
            x, attn = block(x, return_cls_attention=want)
            if attn is not None:
                attention_sum = attn if attention_sum is None else attention_sum + attn
                attention_count += 1
            if return_hidden_states:
                hidden_states.append(x)
        x = self.norm(x)
        cls, patches = x[:, 0], x[:, 1:]
        pooled = cls if self.max_norm is None else cls + self.max_norm(patches.amax(dim=1))
        out: dict[str, Any] = {"cls": cls, "patches": patches, "pooled": pooled, "cls_attention": None}
        if attention_sum is not None:
            out["cls_attention"] = attention_sum[:, 1:] / attention_count
        if return_hidden_states:
            out["hidden_states"] = hidden_states
        return out
