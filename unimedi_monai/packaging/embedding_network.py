# SPDX-License-Identifier: Apache-2.0
"""An image -> embedding network for inference, export and verification of the pre-training bundle."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from unimedi_monai.networks.attention_selection import slice_scores, top_k_slices
from unimedi_monai.networks.heads import ProjectionHead
from unimedi_monai.networks.presets import BackboneConfig
from unimedi_monai.networks.slice_score_centre import SliceScoreCentre
from unimedi_monai.networks.vision_encoder import UnifiedVisionEncoder

__all__ = ["ImageEmbeddingNetwork"]


class ImageEmbeddingNetwork(nn.Module):
    """UniMedI's image side alone: an X-ray or a CT volume in, its L2-normalised embedding out.

    It holds the student encoder, the image projection and (for CT) the teacher encoder that picks
    the slices, under the same names as :class:`~unimedi_monai.networks.UniMedI`, so the weights of
    the pre-training bundle (``models/model.pt``, a whole UniMedI state dict) load directly:
    :meth:`load_state_dict` keeps the entries this network has and drops the report encoder, the
    distillation heads and the loss buffers, which inference does not use. It computes what
    ``UniMedI.encode_image(image)`` computes, with one tensor in and one tensor out, so MONAI's
    ``verify_net_in_out`` and ``ckpt_export`` (TorchScript by tracing) apply.

    Args:
        backbone: preset name (``base``, ``small``, ``demo``, ``tiny``), dict of overrides or config;
            must be the one the weights were trained with.
        xray_size: 2D input size (224).
        ct_size: CT input size, (H, W, D) (128, 128, 32).
        patch_size_2d: 2D patch size (16).
        patch_size_3d: 3D patch size, (H, W, D) (16, 16, 4).
        slice_top_k: CT slices the teacher selects and adds to the volume tokens (4); 0 encodes the
            volume tokens alone.
        attention_layers: teacher [CLS] attention used for the slice scores (``last`` or ``all``).
        projection_hidden_dim: as in UniMedI (None: linear projection).

    Example::

        net = load_weights(ImageEmbeddingNetwork("demo"), "models/model.pt")   # unimedi_monai.io.load_weights
        embedding = net.eval()(torch.rand(1, 1, 128, 128, 32))   # (1, 256), unit norm
    """

    def __init__(
        self,
        backbone: str | Mapping[str, Any] | BackboneConfig = "base",
        xray_size: int | Sequence[int] = 224,
        ct_size: Sequence[int] = (128, 128, 32),
        patch_size_2d: int | Sequence[int] = 16,
        patch_size_3d: Sequence[int] = (16, 16, 4),
        slice_top_k: int = 4,
        attention_layers: Literal["last", "all"] = "last",
        projection_hidden_dim: int | None = None,
    ) -> None:
        super().__init__()
        if attention_layers not in ("last", "all"):
            raise ValueError(f"attention_layers must be 'last' or 'all', got {attention_layers!r}.")
        self.encoder = UnifiedVisionEncoder(backbone, xray_size, ct_size, patch_size_2d, patch_size_3d)
        cfg = self.encoder.backbone.config
        self.image_projection = ProjectionHead(cfg.hidden_size, cfg.embed_dim, projection_hidden_dim)
        n_slices = int(self.encoder.tokenizer_3d.img_size[-1])
        if not 0 <= slice_top_k <= n_slices:
            raise ValueError(f"slice_top_k must be in [0, {n_slices}], got {slice_top_k}.")
        self.slice_top_k = int(slice_top_k)
        self.attention_layers = attention_layers
        self.embed_dim = int(cfg.embed_dim)
        if self.slice_top_k > 0:
            self.teacher = nn.ModuleDict({"encoder": copy.deepcopy(self.encoder)})
            self.teacher.requires_grad_(False)
            self.slice_centre = SliceScoreCentre(n_slices)  # loaded from the weights (UniMedI slice_centring)

    def select_slices(self, volume: torch.Tensor) -> torch.Tensor:
        """``(B, slice_top_k)`` slice indices (ascending) chosen by the teacher's [CLS] attention (centred as
        in UniMedI when the weights were trained with ``slice_centring``)."""
        enc = self.teacher["encoder"]
        out = enc(enc.embed_volume(volume), cls_attention=self.attention_layers)
        scores = slice_scores(out["cls_attention"], enc.tokenizer_3d.grid_for(volume.shape[2:]), volume.shape[-1])
        return top_k_slices(self.slice_centre(scores), self.slice_top_k)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Embed ``(B, 1, H, W)`` X-rays or ``(B, 1, H, W, D)`` CT volumes.

        Returns:
            ``(B, embed_dim)`` L2-normalised embeddings.
        """
        if image.ndim == 4:
            tokens = self.encoder.embed_xray(image)
        elif image.ndim == 5:
            selected = self.select_slices(image) if self.slice_top_k > 0 else None
            tokens = self.encoder.embed_ct(image, selected)
        else:
            raise ValueError(f"ImageEmbeddingNetwork expects (B,1,H,W) or (B,1,H,W,D), got shape {tuple(image.shape)}.")
        return self.image_projection(self.encoder(tokens)["pooled"])

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Load this network's entries of ``state_dict`` (its own, or a whole UniMedI state dict).

        Entries that this network does not have (report encoder, heads, losses) are dropped; with
        ``strict`` every entry it does have must be present.
        """
        own = self.state_dict().keys()
        kept = {k: v for k, v in state_dict.items() if k in own}
        if strict and not kept:
            sample = list(state_dict)[:3]
            raise RuntimeError(
                f"the state dict holds none of ImageEmbeddingNetwork's weights (first keys: {sample}); "
                "expected a UniMedI state dict (models/model.pt of the pre-training bundle)."
            )
        return super().load_state_dict(kept, strict=strict, assign=assign)
