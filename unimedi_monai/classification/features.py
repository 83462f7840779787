# SPDX-License-Identifier: Apache-2.0
"""Frozen-encoder features computed once and cached on disk, for fast linear probes."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unimedi_monai.data.integrity import file_fingerprint
from unimedi_monai.io.checkpoint import atomic_save, safe_load

__all__ = ["state_dict_hash", "feature_cache_key", "extract_features"]

logger = logging.getLogger(__name__)


def state_dict_hash(module: nn.Module) -> str:
    """SHA-256 of a module's parameters and buffers (names, shapes, dtypes, values)."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def feature_cache_key(weights_hash: str, items: Sequence[Mapping], settings: Mapping[str, Any] | None = None) -> str:
    """Key of a feature file: the encoder weights, the images (in order, each by its path and its content:
    :func:`~unimedi_monai.data.integrity.file_fingerprint`) and the transform settings. A replaced,
    truncated or emptied image gives another key, so stale features are never reused."""
    h = hashlib.sha256(weights_hash.encode())
    h.update(json.dumps([[str(i["image"]), file_fingerprint(i["image"])] for i in items]).encode())
    h.update(json.dumps(dict(settings or {}), sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


@torch.no_grad()
def extract_features(
    network: nn.Module,
    items: Sequence[Mapping],
    transform: Callable,
    cache_dir: str | os.PathLike | None = None,
    settings: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = True,
) -> torch.Tensor:
    """Features ``(N, F)`` of ``items`` through ``network.features`` in eval mode without gradients.

    With ``cache_dir`` the result is stored as ``features_<key>.pt`` (written atomically) where the
    key hashes the network's encoder weights, the image paths and contents and ``settings`` (the transform's
    settings: image size, normalisation...), and reused by later calls with the same key, so 1% /
    10% / 100% linear probes compute the features once.

    Args:
        network: a module with ``features(images)`` (e.g. :class:`~unimedi_monai.networks.UniMedIClassifier`).
        items: datalist items with ``image``.
        transform: maps an item to a dict whose ``image`` is the network input.
        cache_dir: the cache folder, or None for no cache.
        settings: transform settings included in the cache key.
        device: where the network runs.
        batch_size: images per forward pass.
        num_workers: data-loading workers.
        progress: show a progress bar.

    Returns:
        float32 CPU tensor, one row per item in order.
    """
    from monai.data import DataLoader, Dataset
    from tqdm import tqdm

    if not items:
        raise ValueError("extract_features: no items given (is a split empty?).")
    encoder = getattr(network, "encoder", network)
    path = None
    if cache_dir is not None:
        key = feature_cache_key(
            state_dict_hash(encoder), items, {**dict(settings or {}), "pool": getattr(network, "pool", None)}
        )
        path = Path(cache_dir) / f"features_{key}.pt"
        if path.is_file():
            try:
                cached = safe_load(path)
                if (
                    isinstance(cached, dict)
                    and cached.get("features") is not None
                    and cached["features"].shape[0] == len(items)
                ):
                    logger.info("using cached features %s", path)
                    return cached["features"]
            except RuntimeError as err:
                logger.warning("%s; computing the features again.", err)
    was_training = network.training
    network.eval()
    loader = DataLoader(Dataset(list(items), transform), batch_size=batch_size, num_workers=num_workers, shuffle=False)
    chunks = []
    for batch in tqdm(loader, desc="features", disable=not progress, leave=False):
        chunks.append(network.features(batch["image"].to(device)).float().cpu())
    network.train(was_training)
    features = torch.cat(chunks)
    if path is not None:
        atomic_save({"features": features, "images": [str(i["image"]) for i in items]}, path)
    return features
