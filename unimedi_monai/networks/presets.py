# SPDX-License-Identifier: Apache-2.0
"""Backbone sizes declared as data.

A preset names the width, depth, heads and MLP size of the shared transformer backbone and the
default widths of the heads built on it. ``UniMedI`` and the segmentation / classification
networks take a preset name (or a dict with the same keys) so that model sizes stay in one table,
as open_clip does with its model configs.

Presets:
    - ``"base"``: ViT-B/16 (768 wide, 12 layers, 12 heads, MLP 3072), the paper's backbone.
    - ``"small"``: ViT-S/16 (384, 12, 6, 1536).
    - ``"demo"``: a narrow 4-layer model with a convolutional patch stem that pre-trains on the
      built-in demo data in minutes on a CPU (a from-scratch ViT with linear patch embeddings does
      not learn that small synthetic set within a few hundred steps; the conv stem does).
    - ``"tiny"``: a 2-layer model (conv stem) for unit tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = [
    "BackboneConfig",
    "BACKBONE_PRESETS",
    "HEAD_OPTIONS",
    "head_options_of_state_dict",
    "pooling_of_state_dict",
    "preset_of_state_dict",
    "resolve_backbone_config",
]


@dataclass(frozen=True)
class BackboneConfig:
    """Sizes of the shared transformer backbone.

    Args:
        hidden_size: token width.
        num_layers: number of transformer blocks.
        num_heads: attention heads per block (``hidden_size`` must be divisible by it).
        mlp_dim: hidden width of each block's MLP.
        qkv_bias: whether the fused qkv projection has a bias.
        drop_path_rate: stochastic-depth rate reached by the last block (linearly increasing).
        dropout_rate: dropout after attention / MLP projections.
        embed_dim: width of the shared image-text embedding space (projection output).
        head_out_dim: number of prototypes of the self-distillation head (DINO/iBOT "out_dim").
        head_hidden_dim: hidden width of the self-distillation head MLP.
        head_bottleneck_dim: bottleneck width before the weight-normalised prototype layer.
        patch_stem: ``"linear"`` (the paper's one-convolution patch embedding) or ``"conv"`` (stacked
            stride-2 convolutions, for fast training on small data; see ``PatchTokenizer``).
        pooling: the image's global feature (``SharedBackbone``'s ``pooled`` output, what the projection,
            the distillation head and the linear probes read): ``"cls"`` (the [CLS] token, the paper's) or
            ``"cls_max"`` (the [CLS] plus the layer-normalised channel-wise max over the patch tokens, an
            option: see ``SharedBackbone`` for what it does and does not fix on the demo).
    """

    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    qkv_bias: bool = True
    drop_path_rate: float = 0.1
    dropout_rate: float = 0.0
    embed_dim: int = 512
    head_out_dim: int = 8192
    head_hidden_dim: int = 2048
    head_bottleneck_dim: int = 256
    patch_stem: str = "linear"
    pooling: str = "cls"

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads != 0:
            raise ValueError(
                f"backbone hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})."
            )
        if self.patch_stem not in ("linear", "conv"):
            raise ValueError(f"backbone patch_stem must be 'linear' or 'conv', got {self.patch_stem!r}.")
        if self.pooling not in ("cls", "cls_max"):
            raise ValueError(f"backbone pooling must be 'cls' or 'cls_max', got {self.pooling!r}.")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"backbone drop_path_rate must be in [0, 1), got {self.drop_path_rate}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


BACKBONE_PRESETS: dict[str, BackboneConfig] = {
    "base": BackboneConfig(),
    "small": BackboneConfig(hidden_size=384, num_layers=12, num_heads=6, mlp_dim=1536, embed_dim=512),
    "demo": BackboneConfig(
        hidden_size=192,
        num_layers=4,
        num_heads=3,
        mlp_dim=768,
        drop_path_rate=0.0,
        embed_dim=256,
        head_out_dim=1024,
        head_hidden_dim=512,
        head_bottleneck_dim=128,
        patch_stem="conv",
    ),
    "tiny": BackboneConfig(
        hidden_size=64,
        num_layers=2,
        num_heads=2,
        mlp_dim=128,
        drop_path_rate=0.0,
        embed_dim=32,
        head_out_dim=64,
        head_hidden_dim=64,
        head_bottleneck_dim=32,
        patch_stem="conv",
    ),
}


def resolve_backbone_config(backbone: str | Mapping[str, Any] | BackboneConfig) -> BackboneConfig:
    """Turn a preset name, a dict of overrides or a config into a :class:`BackboneConfig`.

    A dict may hold ``preset`` (the starting point, default ``"base"``) plus any field to override,
    e.g. ``{"preset": "small", "drop_path_rate": 0.0}``.

    Raises:
        ValueError: an unknown preset name or field, naming the valid ones.
    """
    if isinstance(backbone, BackboneConfig):
        return backbone
    if isinstance(backbone, str):
        if backbone not in BACKBONE_PRESETS:
            raise ValueError(f"unknown backbone preset '{backbone}'; choose one of {sorted(BACKBONE_PRESETS)}.")
        return BACKBONE_PRESETS[backbone]
    overrides = dict(backbone)
    base = resolve_backbone_config(overrides.pop("preset", "base"))
    valid = set(BackboneConfig.__dataclass_fields__)
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown backbone key(s) {unknown}; valid keys are 'preset' and {sorted(valid)}.")
    return replace(base, **overrides)


#: the :class:`~unimedi_monai.networks.UniMedI` options that change its parameters besides the backbone sizes
HEAD_OPTIONS = ("head_batch_norm", "center_per_group")


def head_options_of_state_dict(state: Mapping[str, Any]) -> dict[str, bool]:
    """The :data:`HEAD_OPTIONS` a pre-trained UniMedI state dict was built with, as far as its keys show them.

    ``head_batch_norm``: the distillation head has BatchNorm buffers (``head.mlp.<i>.running_mean``).
    ``center_per_group``: the [CLS] distillation centre has one row per modality (``icl_loss.center``).
    An option whose keys are absent (a state dict without the distillation parts) is left out.

    Args:
        state: a UniMedI state dict (parameter name -> tensor).
    """
    options: dict[str, bool] = {}
    if any(k.startswith("head.mlp.") for k in state):
        options["head_batch_norm"] = any(re.match(r"head\.mlp\.\d+\.running_mean$", k) for k in state)
    center = state.get("icl_loss.center")
    if center is not None:
        options["center_per_group"] = int(center.shape[0]) > 1
    return options


def pooling_of_state_dict(state: Mapping[str, Any]) -> str:
    """The backbone ``pooling`` a state dict was trained with: ``"cls_max"`` when it holds the max-pooled
    tokens' LayerNorm (``...backbone.max_norm.weight``), else ``"cls"``.

    Args:
        state: a state dict of any network built on the shared backbone.
    """
    return "cls_max" if any(k == "max_norm.weight" or k.endswith("backbone.max_norm.weight") for k in state) else "cls"


def preset_of_state_dict(state: Mapping[str, Any]) -> str | None:
    """The name of the :data:`BACKBONE_PRESETS` entry whose transformer sizes a state dict has, or None.

    The sizes are read from the first ``backbone.blocks.<i>.`` parameters of any network built on the
    shared backbone (pre-training, classification, 2D / 3D segmentation): token width, MLP width, number
    of blocks.

    Args:
        state: a state dict (parameter name -> tensor).
    """
    pattern = re.compile(r"(.*\bbackbone\.blocks\.)(\d+)\.norm1\.weight$")
    prefix, depth, width = None, 0, None
    for key, value in state.items():
        match = pattern.match(key)
        if match and (prefix is None or match.group(1) == prefix):
            prefix = match.group(1)
            depth = max(depth, int(match.group(2)) + 1)
            width = int(value.shape[0])
    if prefix is None:
        return None
    mlp = state.get(f"{prefix}0.mlp.0.weight")
    mlp_dim = None if mlp is None else int(mlp.shape[0])
    for name, config in BACKBONE_PRESETS.items():
        if (config.hidden_size, config.num_layers) == (width, depth) and mlp_dim in (None, config.mlp_dim):
            return name
    return None
