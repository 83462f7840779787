# SPDX-License-Identifier: Apache-2.0
"""UniMedIUNETR: a UNETR-style segmentation decoder on UniMedI's 3D tokenizer and shared backbone.

MONAI's :class:`monai.networks.nets.UNETR` assumes isotropic cubic patches (16^3). UniMedI cuts CTs
into anisotropic 16x16x4 patches (a 128x128x32 window gives an 8x8x8 token grid), so this network
rebuilds the UNETR decoder from MONAI's blocks (``UnetrBasicBlock``, ``UnetrUpBlock``,
``UnetOutBlock`` and ``get_conv_layer``) with a stride per decoder stage and axis that undoes the
patch size: four stages of stride 2 in-plane and, along an axis with a smaller patch (depth 4), stride
2 in the coarsest stages only, so the finest stages keep every slice (as nnU-Net does for
anisotropic spacing). For (16, 16, 4) the stages, coarse to fine, have strides (2, 2, 2), (2, 2, 2),
(2, 2, 1), (2, 2, 1).

Skip connections come from four backbone layers: 3 / 6 / 9 / 12 for the 12-layer presets (``base``,
``small``) and the evenly spaced ``round(L * k / 4)`` (k = 1..4, at least 1) for a backbone of ``L``
layers, e.g. 1 / 2 / 3 / 4 for ``demo`` and 1 / 1 / 2 / 2 for ``tiny``. As in UNETR, the deepest
feature is the backbone's output after its final norm; the others are the raw block outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetResBlock, UnetrUpBlock
from monai.networks.blocks.dynunet_block import UnetBasicBlock, get_conv_layer
from torch import nn

from unimedi_monai.networks.backbone import SharedBackbone
from unimedi_monai.networks.patch_tokenizer import PatchTokenizer
from unimedi_monai.networks.presets import BackboneConfig

__all__ = ["UniMedIUNETR", "VolumeEncoder", "decoder_strides", "skip_layers_for"]

logger = logging.getLogger(__name__)


def skip_layers_for(num_layers: int) -> tuple[int, int, int, int]:
    """The four 1-based backbone layers whose outputs feed the decoder: ``round(L * k / 4)``, at least 1.

    Example::

        skip_layers_for(12)  # (3, 6, 9, 12)
        skip_layers_for(4)   # (1, 2, 3, 4)
    """
    if num_layers < 1:
        raise ValueError(f"the backbone needs at least one layer, got {num_layers}.")
    return tuple(max(1, min(num_layers, int(round(num_layers * k / 4)))) for k in range(1, 5))  # type: ignore[return-value]


def decoder_strides(patch_size: Sequence[int], stages: int = 4) -> list[tuple[int, ...]]:
    """Per-stage upsampling strides, coarse to fine, whose product along each axis is the patch size.

    Each axis with patch size ``p = 2**n`` gets stride 2 in the ``n`` coarsest stages and 1 after.

    Raises:
        ValueError: a patch size that is not a power of two or needs more than ``stages`` doublings.
    """
    strides = []
    doublings = []
    for p in patch_size:
        p = int(p)
        if p < 1 or p & (p - 1) or p > 2**stages:
            raise ValueError(
                f"patch size {tuple(patch_size)} must hold powers of two up to {2**stages} for a {stages}-stage "
                "decoder."
            )
        doublings.append(p.bit_length() - 1)
    for stage in range(stages):
        strides.append(tuple(2 if stage < n else 1 for n in doublings))
    return strides


class VolumeEncoder(nn.Module):
    """The 3D half of UniMedI's vision encoder: the 3D tokenizer and the shared backbone.

    Its attribute names match ``UnifiedVisionEncoder`` (``tokenizer_3d``, ``backbone``), so the
    pre-training checkpoint's ``encoder.*`` keys load into it unchanged.

    Args:
        backbone: preset name, dict of overrides or :class:`BackboneConfig`.
        img_size: the input size the position embeddings are learnt for (the pre-training CT size).
        patch_size: 3D patch size in (H, W, D) order.
    """

    def __init__(
        self,
        backbone: str | Mapping[str, Any] | BackboneConfig,
        img_size: Sequence[int],
        patch_size: Sequence[int],
    ) -> None:
        super().__init__()
        self.backbone = SharedBackbone(backbone)
        self.tokenizer_3d = PatchTokenizer(
            3, img_size, patch_size, self.backbone.hidden_size, stem=self.backbone.config.patch_stem
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Return the normalised patch tokens ``(B, N, C)`` and every block's output ``(B, N + 1, C)``."""
        out = self.backbone(self.tokenizer_3d(x), return_hidden_states=True)
        return out["patches"], out["hidden_states"]


class _ProjectionUpsampler(nn.Module):
    """UNETR's "projection-upsampling" skip path with a stride per step (MONAI's ``UnetrPrUpBlock``
    takes one stride for all steps, which cannot undo an anisotropic patch).

    A transposed convolution for the first stride, then for each further stride a transposed
    convolution followed by a 3x3x3 residual (or plain) convolution block.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        strides: Sequence[Sequence[int]],
        norm_name: str | tuple,
        res_block: bool,
    ) -> None:
        super().__init__()
        first, *rest = [tuple(s) for s in strides]
        self.transp_conv_init = get_conv_layer(
            3, in_channels, out_channels, kernel_size=first, stride=first, conv_only=True, is_transposed=True
        )
        block = UnetResBlock if res_block else UnetBasicBlock
        self.blocks = nn.ModuleList(
            nn.Sequential(
                get_conv_layer(
                    3, out_channels, out_channels, kernel_size=s, stride=s, conv_only=True, is_transposed=True
                ),
                block(3, out_channels, out_channels, kernel_size=3, stride=1, norm_name=norm_name),
            )
            for s in rest
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.transp_conv_init(x)
        for blk in self.blocks:
            x = blk(x)
        return x


class UniMedIUNETR(nn.Module):
    """UNETR-style 3D segmentation network on UniMedI's pre-trainable 3D encoder.

    Args:
        out_channels: segmentation classes including background (14 for BCV, 16 for AMOS CT).
        backbone: preset name (``"base"``, ``"small"``, ``"demo"``, ``"tiny"``), dict of overrides
            or :class:`BackboneConfig`; must match the pre-training run to load its encoder.
        img_size: input size in (H, W, D) the position embeddings are learnt for (the pre-training
            ``ct_size``). Inputs of other sizes divisible by ``patch_size`` work too (interpolated
            position embeddings), e.g. the sliding-window ROI or smaller test volumes.
        patch_size: 3D patch size in (H, W, D) order (powers of two, at most 16).
        in_channels: input channels (1 for CT).
        feature_size: width of the finest decoder stage (UNETR's ``feature_size``), doubled per stage.
        norm_name: normalisation of the decoder blocks (MONAI name, e.g. ``"instance"``, ``"batch"``).
        res_block: residual decoder blocks.
        skip_layers: the four 1-based backbone layers feeding the decoder (default :func:`skip_layers_for`).

    Example::

        net = UniMedIUNETR(out_channels=14, backbone="tiny")
        net(torch.zeros(1, 1, 128, 128, 32)).shape  # (1, 14, 128, 128, 32)
        load_weights(net, "bundles/pretrain/models/model.pt", source="student")  # same preset
        net.load_report["loaded"], net.load_report["missing"], net.load_report["unexpected"]
    """

    def __init__(
        self,
        out_channels: int,
        backbone: str | Mapping[str, Any] | BackboneConfig = "base",
        img_size: Sequence[int] = (128, 128, 32),
        patch_size: Sequence[int] = (16, 16, 4),
        in_channels: int = 1,
        feature_size: int = 16,
        norm_name: str | tuple = "instance",
        res_block: bool = True,
        skip_layers: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if out_channels < 2:
            raise ValueError(f"out_channels must count the background and at least one class, got {out_channels}.")
        if in_channels != 1:
            raise ValueError(f"UniMedI's 3D tokenizer takes one CT channel, got in_channels={in_channels}.")
        self.patch_size = tuple(int(p) for p in patch_size)
        strides = decoder_strides(self.patch_size)
        self.encoder = VolumeEncoder(backbone, img_size, self.patch_size)
        cfg = self.encoder.backbone.config
        hidden = cfg.hidden_size
        layers = tuple(int(i) for i in (skip_layers if skip_layers is not None else skip_layers_for(cfg.num_layers)))
        if len(layers) != 4 or any(not 1 <= i <= cfg.num_layers for i in layers):
            raise ValueError(f"skip_layers must be four layers in 1..{cfg.num_layers}, got {layers}.")
        self.skip_layers = layers
        self.out_channels = int(out_channels)
        self.feature_size = int(feature_size)
        f = self.feature_size
        # resolution levels: 0 = input, 1..3 = decoder levels, 4 = token grid; strides[0] is token -> level 3
        self.encoder1 = UnetrBasicBlock(
            3, in_channels, f, kernel_size=3, stride=1, norm_name=norm_name, res_block=res_block
        )
        self.encoder2 = _ProjectionUpsampler(hidden, f * 2, strides[0:3], norm_name, res_block)
        self.encoder3 = _ProjectionUpsampler(hidden, f * 4, strides[0:2], norm_name, res_block)
        self.encoder4 = _ProjectionUpsampler(hidden, f * 8, strides[0:1], norm_name, res_block)
        self.decoder5 = UnetrUpBlock(
            3, hidden, f * 8, kernel_size=3, upsample_kernel_size=strides[0], norm_name=norm_name, res_block=res_block
        )
        self.decoder4 = UnetrUpBlock(
            3, f * 8, f * 4, kernel_size=3, upsample_kernel_size=strides[1], norm_name=norm_name, res_block=res_block
        )
        self.decoder3 = UnetrUpBlock(
            3, f * 4, f * 2, kernel_size=3, upsample_kernel_size=strides[2], norm_name=norm_name, res_block=res_block
        )
        self.decoder2 = UnetrUpBlock(
            3, f * 2, f, kernel_size=3, upsample_kernel_size=strides[3], norm_name=norm_name, res_block=res_block
        )
        self.out = UnetOutBlock(3, f, self.out_channels)

    @property
    def config(self) -> BackboneConfig:
        """The backbone configuration."""
        return self.encoder.backbone.config

    def _to_grid(self, tokens: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        # tokens are row-major over (h, w, d) (see PatchTokenizer): (B, N, C) -> (B, C, h, w, d)
        b, _, c = tokens.shape
        return tokens.transpose(1, 2).reshape(b, c, grid[0], grid[1], grid[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment ``x`` ``(B, 1, H, W, D)`` (each size divisible by the patch size) into logits
        ``(B, out_channels, H, W, D)``."""
        grid = self.encoder.tokenizer_3d.grid_for(x.shape[2:])
        patches, hidden_states = self.encoder(x)
        l1, l2, l3, _ = self.skip_layers
        enc1 = self.encoder1(x)
        enc2 = self.encoder2(self._to_grid(hidden_states[l1 - 1][:, 1:], grid))
        enc3 = self.encoder3(self._to_grid(hidden_states[l2 - 1][:, 1:], grid))
        enc4 = self.encoder4(self._to_grid(hidden_states[l3 - 1][:, 1:], grid))
        # the deepest feature: the backbone output after its final norm, as UNETR (layer skip_layers[3] is the last)
        if self.skip_layers[3] == self.config.num_layers:
            deepest = patches
        else:
            deepest = hidden_states[self.skip_layers[3] - 1][:, 1:]
        dec4 = self._to_grid(deepest, grid)
        dec3 = self.decoder5(dec4, enc4)
        dec2 = self.decoder4(dec3, enc3)
        dec1 = self.decoder3(dec2, enc2)
        out = self.decoder2(dec1, enc1)
        return self.out(out)

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of the (pre-trainable) encoder: 3D tokenizer and backbone."""
        return list(self.encoder.parameters())

    def decoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of everything but the encoder (decoder blocks and output layer)."""
        encoder = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in encoder]
