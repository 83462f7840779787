# SPDX-License-Identifier: Apache-2.0
"""UniMedISETRPUP: a SETR-PUP segmentation decoder on UniMedI's 2D tokenizer and shared backbone.

SETR's "progressive upsampling" decoder (Zheng et al., CVPR 2021), as the paper uses it for RSNA
pneumonia segmentation: the backbone's patch tokens of a 224 x 224 X-ray (a 14 x 14 grid for 16 x 16
patches) are reshaped into a feature map and brought back to full resolution by four stages, each a
3 x 3 convolution, a normalisation, an activation (MONAI's ``Convolution`` block) and a x2 bilinear
upsampling (MONAI's ``UpSample``), then a 1 x 1 convolution (MONAI's ``UnetOutBlock``) gives the class
logits. The number of stages follows the patch size (``log2(16) = 4``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.networks.blocks import Convolution, UnetOutBlock, UpSample
from torch import nn

from unimedi_monai.networks.backbone import SharedBackbone
from unimedi_monai.networks.patch_tokenizer import PatchTokenizer
from unimedi_monai.networks.presets import BackboneConfig
from unimedi_monai.networks.vision_encoder import NUM_2D_SOURCES

__all__ = ["UniMedISETRPUP"]


class UniMedISETRPUP(nn.Module):
    """SETR-PUP 2D segmentation network on UniMedI's pre-trainable 2D (X-ray) encoder path.

    The encoder is the 2D tokenizer and the shared backbone, under the attribute names of
    ``UnifiedVisionEncoder`` (``encoder.tokenizer_2d``, ``encoder.backbone``), so the pre-training
    checkpoint's ``encoder.*`` (student) or ``teacher.encoder.*`` (EMA teacher) keys load unchanged
    (:func:`unimedi_monai.io.load_weights` with ``source="student"`` or ``"teacher"``). The forward
    pass is a plain tensor function (traceable for TorchScript export).

    Args:
        out_channels: segmentation classes including background (2 for pneumonia / lung vs background).
        backbone: preset name (``"base"`` = ViT-B/16, ``"small"``, ``"demo"``, ``"tiny"``), dict of
            overrides or :class:`BackboneConfig`; must match the pre-training run to load its encoder.
        img_size: the X-ray size the 2D position embeddings are learnt for (the pre-training
            ``xray_size``, 224). Other sizes divisible by the patch size work too (interpolated
            position embeddings), e.g. 128 for quick runs.
        patch_size: 2D patch size (a power of two: one decoder stage per doubling).
        in_channels: input channels (1 for X-rays).
        decoder_channels: width of every decoder stage (SETR: 256).
        norm_name: normalisation of the decoder stages (MONAI name: ``"batch"`` as SETR, ``"instance"``...).
        act_name: activation of the decoder stages (MONAI name, ``"relu"`` as SETR).
        freeze_encoder: keep the encoder frozen (no gradients) and in eval mode; only the decoder trains.

    Example::

        net = UniMedISETRPUP(out_channels=2, backbone="tiny")
        net(torch.zeros(2, 1, 224, 224)).shape  # (2, 2, 224, 224)
        load_weights(net, "bundles/pretrain/models/model.pt", source="student")  # same preset
        net.load_report["loaded"], net.load_report["missing"], net.load_report["unexpected"]
    """

    def __init__(
        self,
        out_channels: int = 2,
        backbone: str | Mapping[str, Any] | BackboneConfig = "base",
        img_size: int | Sequence[int] = 224,
        patch_size: int = 16,
        in_channels: int = 1,
        decoder_channels: int = 256,
        norm_name: str | tuple = "batch",
        act_name: str | tuple = "relu",
        freeze_encoder: bool = False,
    ) -> None:
        super().__init__()
        if int(out_channels) < 2:
            raise ValueError(f"out_channels must count the background and at least one class, got {out_channels}.")
        if in_channels != 1:
            raise ValueError(f"UniMedI's 2D tokenizer takes one X-ray channel, got in_channels={in_channels}.")
        patch = int(patch_size)
        if patch < 2 or patch & (patch - 1):
            raise ValueError(
                f"patch_size must be a power of two (one x2 decoder stage per doubling), got {patch_size}."
            )
        if int(decoder_channels) < 1:
            raise ValueError(f"decoder_channels must be a positive integer, got {decoder_channels}.")
        backbone_module = SharedBackbone(backbone)
        # the pre-trained tokenizer's statistics for X-rays and CT slices; X-rays use theirs (source 0)
        tokenizer = PatchTokenizer(
            2,
            img_size,
            patch,
            backbone_module.hidden_size,
            stem=backbone_module.config.patch_stem,
            num_sources=NUM_2D_SOURCES,
        )
        # attribute names of UnifiedVisionEncoder: the checkpoint's encoder.* keys load as they are
        self.encoder = nn.ModuleDict({"tokenizer_2d": tokenizer, "backbone": backbone_module})
        self.out_channels = int(out_channels)
        self.patch_size = patch
        self.decoder_channels = int(decoder_channels)
        stages = []
        channels = backbone_module.hidden_size
        for _ in range(patch.bit_length() - 1):
            stages.append(
                nn.Sequential(
                    Convolution(2, channels, self.decoder_channels, kernel_size=3, norm=norm_name, act=act_name),
                    UpSample(2, scale_factor=2, mode="nontrainable", interp_mode="bilinear", align_corners=False),
                )
            )
            channels = self.decoder_channels
        self.decoder = nn.Sequential(*stages)
        self.out = UnetOutBlock(2, self.decoder_channels, self.out_channels)
        self.freeze_encoder = bool(freeze_encoder)
        if self.freeze_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    @property
    def config(self) -> BackboneConfig:
        """The backbone configuration."""
        return self.encoder["backbone"].config

    def train(self, mode: bool = True) -> UniMedISETRPUP:
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment ``x`` ``(B, 1, H, W)`` (sides divisible by the patch size) into logits
        ``(B, out_channels, H, W)``."""
        tokenizer = self.encoder["tokenizer_2d"]
        grid = tokenizer.grid_for(x.shape[2:])
        patches = self.encoder["backbone"](tokenizer(x))["patches"]  # (B, h*w, C) after the final norm, row-major
        b, _, c = patches.shape
        features = patches.transpose(1, 2).reshape(b, c, grid[0], grid[1])
        return self.out(self.decoder(features))

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of the (pre-trainable) encoder: 2D tokenizer and backbone."""
        return list(self.encoder.parameters())

    def decoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of everything but the encoder (decoder stages and output layer)."""
        encoder = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in encoder]
