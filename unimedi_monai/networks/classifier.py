# SPDX-License-Identifier: Apache-2.0
"""UniMedI image classifier: the pre-trained vision encoder with a linear head on the [CLS] feature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from unimedi_monai.networks.presets import BackboneConfig
from unimedi_monai.networks.vision_encoder import UnifiedVisionEncoder

__all__ = ["UniMedIClassifier"]


class UniMedIClassifier(nn.Module):
    """The UniMedI vision encoder (2D X-ray path and 3D CT path) and one linear layer.

    X-rays ``(B, 1, H, W)`` go through the 2D tokenizer, CT volumes ``(B, 1, H, W, D)`` through the
    3D tokenizer (the 512 volume tokens; no slice selection, which needs the pre-training teacher);
    the shared backbone's global feature (``pool="cls"``: its ``pooled`` output, the [CLS] plus the token
    max for a backbone with ``pooling: cls_max``) or the mean of the patch tokens
    (``pool="mean"``) feeds ``head``. The forward pass is a plain tensor function, so the network
    can be traced (``torch.jit.trace``) for export.

    Args:
        num_classes: output logits.
        backbone: preset name (``"base"`` = ViT-B/16, ``"small"``, ``"demo"``, ``"tiny"``), dict or config;
            must match the pre-training run whose weights are loaded.
        xray_size: X-ray input size (224).
        ct_size: CT input size (H, W, D).
        patch_size_2d: 2D patch size.
        patch_size_3d: 3D patch size (H, W, D).
        pool: ``"cls"`` or ``"mean"``.
        dropout: dropout before the head (fine-tuning regulariser; 0 for linear probing).
        freeze_encoder: keep the encoder frozen and in eval mode (linear probe).

    Example::

        net = load_weights(UniMedIClassifier(3, backbone="demo"), "pretrain/models/model.pt", source="student")
        probs = net(torch.rand(2, 1, 224, 224)).softmax(-1)   # (2, 3)
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str | Mapping[str, Any] | BackboneConfig = "base",
        xray_size: int | Sequence[int] = 224,
        ct_size: Sequence[int] = (128, 128, 32),
        patch_size_2d: int | Sequence[int] = 16,
        patch_size_3d: Sequence[int] = (16, 16, 4),
        pool: Literal["cls", "mean"] = "cls",
        dropout: float = 0.0,
        freeze_encoder: bool = False,
    ) -> None:
        super().__init__()
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes}.")
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got {pool!r}.")
        self.encoder = UnifiedVisionEncoder(backbone, xray_size, ct_size, patch_size_2d, patch_size_3d)
        self.pool = pool
        self.num_classes = int(num_classes)
        self.dropout = nn.Dropout(float(dropout))
        self.head = nn.Linear(self.encoder.hidden_size, self.num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)
        self.freeze_encoder = bool(freeze_encoder)
        if self.freeze_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    @property
    def feature_size(self) -> int:
        """Width of the feature the head reads (the backbone's hidden size)."""
        return self.encoder.hidden_size

    def train(self, mode: bool = True) -> UniMedIClassifier:
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def checkpoint_mismatch_hint(self, state: Mapping[str, Any]) -> str | None:
        """Why a checkpoint of another classifier does not fit (read by :func:`unimedi_monai.io.load_weights`).

        Returns:
            a sentence when the checkpoint's head has another number of classes (the classification
            bundle derives ``num_classes`` from its ``dataset`` and ``covidx_variant`` keys), else None.
        """
        head = state.get("head.weight")
        if isinstance(head, torch.Tensor) and head.ndim == 2 and head.shape[0] != self.num_classes:
            return (
                f"predicts {head.shape[0]} classes but the config builds {self.num_classes}; "
                "set the 'dataset' (and 'covidx_variant') keys to those the model was trained with."
            )
        return None

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled encoder features ``(B, feature_size)`` of X-rays (4D) or CT volumes (5D)."""
        if images.ndim == 4:
            tokens = self.encoder.embed_xray(images)
        elif images.ndim == 5:
            tokens = self.encoder.embed_volume(images)
        else:
            raise ValueError(
                f"UniMedIClassifier expects (B,1,H,W) X-rays or (B,1,H,W,D) CTs, got shape {tuple(images.shape)}."
            )
        out = self.encoder(tokens)
        return out["pooled"] if self.pool == "cls" else out["patches"].mean(dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, num_classes)``."""
        return self.head(self.dropout(self.features(images)))
