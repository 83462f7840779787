# SPDX-License-Identifier: Apache-2.0
"""
Collation of mixed X-ray / CT batches into one sub-batch per modality, and moving such batches to a device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.data import MetaTensor

__all__ = ["collate_mixed", "move_batch_to_device"]

_MODALITIES = ("xray", "ct")
#: marker key of a sample skipped by ``on_bad_sample="skip"``
#: (see :py:class:`~unimedi_monai.data.dataset.MixedModalityDataset`).
_BAD_SAMPLE_KEY = "bad_sample"
_STACKED_KEYS = ("image", "report", "index", "modality")


def _as_plain_tensor(x: Any) -> torch.Tensor:
    t = x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)
    return t.to(torch.float32)


def _collate_group(samples: Sequence[Mapping[str, Any]], modality: str) -> dict[str, Any]:
    images = [_as_plain_tensor(s["image"]) for s in samples]
    shapes = {tuple(t.shape) for t in images}
    if len(shapes) > 1:
        detail = ", ".join(f"index {s.get('index')}: {tuple(t.shape)}" for s, t in zip(samples, images))
        raise ValueError(
            f"collate_mixed: {modality} images in one batch must share a shape, got {detail}; "
            "resize them to a common size in the transforms."
        )
    out: dict[str, Any] = {
        "image": torch.stack(images, dim=0),
        "report": [s.get("report", "") for s in samples],
        "index": torch.as_tensor([int(s.get("index", -1)) for s in samples], dtype=torch.long),
    }
    extra_keys: list[str] = []
    for s in samples:
        for key in s:
            if key not in _STACKED_KEYS and key not in extra_keys:
                extra_keys.append(key)
    for key in extra_keys:
        out[key] = [s.get(key) for s in samples]
    return out


def collate_mixed(samples: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """
    Group samples by ``modality`` and collate each group.

    Each group becomes ``{"image": Tensor(B, 1, *spatial) float32 (plain torch.Tensor, not MetaTensor),
    "report": list[str], "index": LongTensor(B), <other keys>: list}``, keeping the samples' order; other keys
    (e.g. ``"lesion_slices"``, ``"num_slices"``, ``"finding"``) are lists with ``None`` for samples lacking them.
    A modality absent from the batch maps to ``None``.

    Skipped samples (markers ``{"bad_sample": reason, ...}`` returned by a dataset with ``on_bad_sample="skip"``)
    are dropped from the batch, which keeps every other sample and stays consistent (images and reports of the
    remaining samples); their reasons are listed under ``"skipped"`` (only present when a sample was skipped).
    A batch whose samples were all skipped is ``{"xray": None, "ct": None, "skipped": [...]}``.

    Args:
        samples: dicts with ``"image"`` and ``"modality"`` (``"xray"`` or ``"ct"``), usually from
            :py:class:`~unimedi_monai.data.dataset.MixedModalityDataset` (which adds ``"index"``; samples
            without one, e.g. from a plain ``monai.data.Dataset``, get index ``-1``).

    Returns:
        ``{"xray": dict | None, "ct": dict | None}`` (plus ``"skipped": list[str]`` when samples were skipped).

    Example::

        loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate_mixed)
        batch = next(iter(loader))
        batch["xray"]["image"].shape  # (n_xray, 1, 224, 224)
        batch["ct"]["image"].shape    # (n_ct, 1, 128, 128, 32)
    """
    if len(samples) == 0:
        raise ValueError("collate_mixed: got an empty list of samples.")
    groups: dict[str, list[Mapping[str, Any]]] = {m: [] for m in _MODALITIES}
    skipped: list[str] = []
    for pos, s in enumerate(samples):
        if not isinstance(s, Mapping):
            raise TypeError(f"collate_mixed: sample {pos} is a {type(s).__name__}, expected a dict.")
        if _BAD_SAMPLE_KEY in s:
            skipped.append(f"{s[_BAD_SAMPLE_KEY]}")
            continue
        for key in ("image", "modality"):
            if key not in s:
                raise ValueError(f"collate_mixed: sample {pos} has no '{key}' key; every sample needs one.")
        modality = s["modality"].strip().lower() if isinstance(s["modality"], str) else s["modality"]
        if modality not in groups:
            raise ValueError(
                f"collate_mixed: sample {pos} (index {s.get('index')}) has unknown modality {s['modality']!r}; "
                f"expected one of {_MODALITIES}."
            )
        groups[modality].append(s)
    batch: dict[str, Any] = {m: (_collate_group(g, m) if g else None) for m, g in groups.items()}
    if skipped:
        batch["skipped"] = skipped
    return batch


def move_batch_to_device(batch: Any, device: torch.device | str, non_blocking: bool = True) -> Any:
    """
    Move every tensor in a (nested) batch to ``device``; dicts, lists and tuples are rebuilt, everything else
    (strings, numbers, ``None``) is returned as is.

    Args:
        batch: the output of :py:func:`collate_mixed` or any nesting of dicts, lists and tuples.
        device: target device.
        non_blocking: passed to ``Tensor.to`` (asynchronous copies from pinned memory).

    Returns:
        the batch with tensors on ``device``.
    """
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return {k: move_batch_to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(move_batch_to_device(v, device, non_blocking) for v in batch)
    if isinstance(batch, list):
        return [move_batch_to_device(v, device, non_blocking) for v in batch]
    return batch
