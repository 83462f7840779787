# SPDX-License-Identifier: Apache-2.0
"""A UniMedI that scores the slices of a CT volume: the inference network of the slice-selection bundle."""

from __future__ import annotations

from typing import Any, Literal

import torch

from unimedi_monai.networks.attention_selection import slice_scores
from unimedi_monai.networks.unimedi import UniMedI

__all__ = ["SLICE_SCORE_MODES", "SliceSelectionNet"]

#: valid values of :attr:`SliceSelectionNet.mode`.
SLICE_SCORE_MODES = ("attention", "text")


class SliceSelectionNet(UniMedI):
    """UniMedI weights, one score per slice of ``(B, 1, H, W, D)`` CT volumes as ``forward``.

    The module holds every UniMedI parameter under the same names, so the ``models/model.pt`` written
    by the pre-training bundle loads strictly (:func:`unimedi_monai.io.load_weights`) and
    ``monai.bundle ckpt_export`` can copy it as is. Two scores:

    - ``"attention"`` (the paper's attentive slice selection): the EMA teacher's [CLS] attention over
      the volume's 3D tokens, averaged per token depth (``patch_depth`` slices) and interpolated to
      one score per slice (:func:`unimedi_monai.networks.attention_selection.slice_scores`), minus the
      running mean scores of the training CTs when the weights were trained with ``slice_centring``
      (:class:`~unimedi_monai.networks.slice_score_centre.SliceScoreCentre`). Needs only the volume and
      traces to TorchScript.
    - ``"text"`` (text-guided selection): each slice is embedded alone through the 2D path (the
      student's 2D tokenizer, backbone and image projection, as the selected slices are during
      pre-training) and scored by the cosine similarity between its embedding and the embedding of
      a free-text query (``"nodule in the right upper lobe"``) in the shared image-report space.

    Args:
        mode: ``"attention"`` or ``"text"``: what :meth:`forward` computes.
        query: the text of ``"text"`` mode (can also be set later through :attr:`query`).
        interpolate: interpolate the attention scores between token-depth centres (default) or keep
            the block average (constant over the ``patch_depth`` slices of a token).
        slice_batch_size: slices embedded per backbone pass in ``"text"`` mode.
        kwargs: the :class:`~unimedi_monai.networks.UniMedI` arguments (``backbone``, ``text_encoder``,
            ``ct_size``, ``patch_size_3d``, ``attention_layers``, ...), as in the pre-training bundle.

    Example::

        net = SliceSelectionNet(backbone="demo")
        load_weights(net, "models/model.pt")
        scores = net.eval()(torch.rand(1, 1, 128, 128, 32))                    # (1, 32) attention scores
        net.mode, net.query = "text", "nodule in the right upper lobe"
        scores = net(torch.rand(1, 1, 128, 128, 32))                           # (1, 32) cosine similarities
    """

    def __init__(
        self,
        mode: Literal["attention", "text"] = "attention",
        query: str | None = None,
        interpolate: bool = True,
        slice_batch_size: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.mode = mode
        self.query = query
        self.interpolate = bool(interpolate)
        if int(slice_batch_size) < 1:
            raise ValueError(f"slice_batch_size must be >= 1, got {slice_batch_size}.")
        self.slice_batch_size = int(slice_batch_size)

    @property
    def mode(self) -> str:
        """``"attention"`` or ``"text"``."""
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in SLICE_SCORE_MODES:
            raise ValueError(f"mode must be one of {SLICE_SCORE_MODES}, got {value!r}.")
        self._mode = value

    def attention_scores(self, volume: torch.Tensor) -> torch.Tensor:
        """Teacher [CLS]-attention score of every slice: ``(B, 1, H, W, D)`` -> ``(B, D)``."""
        if volume.ndim != 5:
            raise ValueError(f"CT volumes must be (B, 1, H, W, D), got shape {tuple(volume.shape)}.")
        encoder = self.teacher["encoder"]
        out = encoder(encoder.embed_volume(volume), cls_attention=self.attention_layers)
        grid = encoder.tokenizer_3d.grid_for(volume.shape[2:])
        scores = slice_scores(out["cls_attention"], grid, volume.shape[-1], interpolate=self.interpolate)
        return self.slice_centre(scores)  # minus the training CTs' mean scores for a model trained with slice_centring

    def slice_embeddings(self, volume: torch.Tensor) -> torch.Tensor:
        """Embedding of every slice through the 2D path: ``(B, 1, H, W, D)`` -> ``(B, D, embed_dim)``, L2-normalised.

        Each slice is encoded alone as pre-training's ``L_slice`` encodes it
        (:meth:`~unimedi_monai.networks.UniMedI.slice_features`: the 2D tokenizer with its CT-slice
        statistics); its projected global feature (the backbone's ``pooled``) is the slice's embedding.
        """
        if volume.ndim != 5:
            raise ValueError(f"CT volumes must be (B, 1, H, W, D), got shape {tuple(volume.shape)}.")
        b, d = volume.shape[0], volume.shape[-1]
        index = torch.arange(d, device=volume.device)
        chunks = []
        for part in torch.split(index, max(1, self.slice_batch_size // b)):
            chunks.append(self.image_projection(self.slice_features(volume, part.expand(b, -1)), normalize=True))
        return torch.cat(chunks, dim=1)

    def text_scores(self, volume: torch.Tensor, query: str | None = None) -> torch.Tensor:
        """Cosine similarity between each slice and ``query`` (default :attr:`query`): ``(B, D)``."""
        query = self.query if query is None else query
        if not isinstance(query, str) or not query.strip():
            raise ValueError("text-guided slice selection needs a non-empty query (config key `query`, or a report).")
        text = self.encode_text([query.strip()])  # (1, embed_dim), L2-normalised
        return (self.slice_embeddings(volume) * text.unsqueeze(1)).sum(dim=-1)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Per-slice scores ``(B, D)`` of ``(B, 1, H, W, D)`` volumes in the current :attr:`mode`."""
        if self._mode == "text":
            return self.text_scores(volume)
        return self.attention_scores(volume)
