# Copyright (c) unimedi-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""
A dataset holding X-rays and CTs side by side, with a global index (X-rays first, then CTs) that
:py:class:`unimedi_monai.data.sampler.MixedBatchSampler` draws from.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.data import CacheDataset, Dataset, PersistentDataset

from unimedi_monai.data.transforms import unwrap_transform_error

__all__ = ["MODALITIES", "CACHE_MODES", "MixedModalityDataset", "build_pretrain_dataset"]

#: modality values accepted in data items, in global-index order.
MODALITIES = ("xray", "ct")

#: caching strategies accepted by :py:func:`build_pretrain_dataset`.
CACHE_MODES = ("memory", "disk", "none")

#: error types re-raised by :py:class:`MixedModalityDataset` with the sample index added to the message.
_CONTEXT_ERRORS = (ValueError, FileNotFoundError, TypeError, KeyError)


class MixedModalityDataset(torch.utils.data.Dataset):
    """
    Concatenation of an X-ray dataset and a CT dataset under one global index: ``0 .. num_xray - 1`` are the
    X-rays, ``num_xray .. num_xray + num_ct - 1`` the CTs. Every returned sample is a new dict with the
    transformed item (passthrough keys untouched) plus ``"index"`` (its global index).

    A transform error raised while fetching a sample (:py:class:`ValueError`, :py:class:`FileNotFoundError`,
    :py:class:`TypeError`, :py:class:`KeyError`) is re-raised with the same type and the sample's global index
    (and datalist entry, when ``source_indices`` is given) prepended to its message.

    Args:
        xray_dataset: dataset of X-ray samples (dicts), or ``None`` when there are none.
        ct_dataset: dataset of CT samples (dicts), or ``None`` when there are none.
        source_indices: for each global index, the position of the item in the original datalist
            (as built by :py:func:`build_pretrain_dataset`); ``None`` when unknown.

    Example::

        ds = MixedModalityDataset(Dataset(xray_items, xray_tf), Dataset(ct_items, ct_tf))
        sampler = MixedBatchSampler(ds.num_xray, ds.num_ct, batch_size=32)
    """

    def __init__(
        self,
        xray_dataset: torch.utils.data.Dataset | None,
        ct_dataset: torch.utils.data.Dataset | None,
        source_indices: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.xray_dataset = xray_dataset
        self.ct_dataset = ct_dataset
        self.num_xray = len(xray_dataset) if xray_dataset is not None else 0  # type: ignore[arg-type]
        self.num_ct = len(ct_dataset) if ct_dataset is not None else 0  # type: ignore[arg-type]
        if source_indices is not None and len(source_indices) != len(self):
            raise ValueError(
                f"MixedModalityDataset: source_indices has {len(source_indices)} entries for {len(self)} samples."
            )
        self.source_indices: list[int] | None = None if source_indices is None else [int(k) for k in source_indices]

    @property
    def xray_indices(self) -> range:
        """Global indices of the X-ray samples."""
        return range(0, self.num_xray)

    @property
    def ct_indices(self) -> range:
        """Global indices of the CT samples."""
        return range(self.num_xray, self.num_xray + self.num_ct)

    def __len__(self) -> int:
        return self.num_xray + self.num_ct

    def modality_of(self, index: int) -> str:
        """
        Return the modality (``"xray"`` or ``"ct"``) of a global index.

        Args:
            index: global sample index (negative values count from the end).
        """
        return "xray" if self._normalise(index) < self.num_xray else "ct"

    def _normalise(self, index: int) -> int:
        n = len(self)
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"MixedModalityDataset: index {index} out of range for {n} samples.")
        return i

    def __getitem__(self, index: int) -> dict[str, Any]:
        """
        Args:
            index: global sample index.

        Returns:
            the transformed sample as a new dict with ``"index"`` set to the (non-negative) global index.
        """
        i = self._normalise(index)
        try:
            if i < self.num_xray:
                sample = self.xray_dataset[i]  # type: ignore[index]
            else:
                sample = self.ct_dataset[i - self.num_xray]  # type: ignore[index]
        except Exception as e:
            root = unwrap_transform_error(e)  # a plain monai Compose wraps errors in RuntimeError
            if type(root) not in _CONTEXT_ERRORS:
                raise
            where = f"sample {i} ({self.modality_of(i)}"
            where += f", datalist entry {self.source_indices[i]})" if self.source_indices is not None else ")"
            message = root.args[0] if (type(root) is KeyError and root.args) else str(root)
            raise type(root)(f"{where}: {message}") from e
        if not isinstance(sample, Mapping):
            raise TypeError(
                f"MixedModalityDataset: sample {i} is a {type(sample).__name__}, expected a dict; "
                "the transforms must return the data dict."
            )
        out = dict(sample)
        out["index"] = i
        return out


def _split_by_modality(items: Sequence[Mapping[str, Any]]) -> tuple[list[dict], list[dict], list[int]]:
    """
    Split data items into (X-ray items, CT items, datalist position of each global index), validating
    ``modality`` and ``image``.
    """
    xray: list[dict] = []
    ct: list[dict] = []
    xray_pos: list[int] = []
    ct_pos: list[int] = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"datalist entry {i} is a {type(item).__name__}, expected a dict with 'image'.")
        if "image" not in item:
            raise ValueError(f"datalist entry {i} has no 'image' key; every entry needs an image path.")
        if "modality" not in item:
            raise ValueError(f"datalist entry {i} ('{item['image']}') has no 'modality' key; use one of {MODALITIES}.")
        modality = item["modality"]
        value = modality.strip().lower() if isinstance(modality, str) else modality
        if value == "xray":
            xray.append(dict(item))
            xray_pos.append(i)
        elif value == "ct":
            ct.append(dict(item))
            ct_pos.append(i)
        else:
            raise ValueError(
                f"datalist entry {i} ('{item['image']}') has unknown modality {modality!r}; use one of {MODALITIES}."
            )
    return xray, ct, xray_pos + ct_pos


def _wrap(
    items: list[dict],
    transform: Callable | None,
    cache: str,
    cache_dir: str | os.PathLike | None,
    subfolder: str,
    num_workers: int,
    progress: bool,
) -> torch.utils.data.Dataset | None:
    if not items:
        return None
    if cache == "memory":
        return CacheDataset(items, transform, num_workers=max(1, num_workers), progress=progress)
    if cache == "disk":
        folder = os.path.join(os.fspath(cache_dir), subfolder)  # type: ignore[arg-type]
        return PersistentDataset(items, transform, cache_dir=folder)
    return Dataset(items, transform)


def build_pretrain_dataset(
    items: Sequence[Mapping[str, Any]],
    xray_transform: Callable | None,
    ct_transform: Callable | None,
    cache: str = "memory",
    cache_dir: str | os.PathLike | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> MixedModalityDataset:
    """
    Split data items by ``modality`` and wrap each group in a MONAI dataset.

    Caching (each modality separately): ``"memory"`` uses :py:class:`monai.data.CacheDataset` (the deterministic
    prefix of the transform, up to the first random transform, is computed once at construction);
    ``"disk"`` uses :py:class:`monai.data.PersistentDataset` under ``cache_dir/xray`` and ``cache_dir/ct``
    (computed on first access; delete the folder when the transforms change, since the cache key is the
    data item only); ``"none"`` uses a plain :py:class:`monai.data.Dataset`.

    Args:
        items: data items ``{"image": path, "report": str, "modality": "xray" | "ct", ...}``; the other keys
            pass through untouched. Entries keep their relative order inside each modality.
        xray_transform: transform for X-ray items (e.g. :py:func:`~unimedi_monai.data.transforms.xray_transforms`).
        ct_transform: transform for CT items (e.g. :py:func:`~unimedi_monai.data.transforms.ct_transforms`).
        cache: ``"memory"``, ``"disk"`` or ``"none"``.
        cache_dir: root folder of the disk cache; required when ``cache="disk"``.
        num_workers: threads used to fill the memory cache (values below 1 mean 1).
        progress: show a progress bar while filling the memory cache.

    Returns:
        a :py:class:`MixedModalityDataset` with the X-rays first; its ``source_indices`` map each global index
        back to the position of the item in ``items``.

    Raises:
        ValueError: for an unknown ``cache`` value, a missing ``cache_dir``, an entry without ``image`` or
            ``modality``, or an unknown modality (the message names the entry index and value).
    """
    if cache not in CACHE_MODES:
        raise ValueError(f"build_pretrain_dataset: cache must be one of {CACHE_MODES}, got {cache!r}.")
    if cache == "disk" and not cache_dir:
        raise ValueError("build_pretrain_dataset: cache='disk' needs cache_dir (a folder for the cached samples).")
    xray_items, ct_items, source_indices = _split_by_modality(items)
    xray_ds = _wrap(xray_items, xray_transform, cache, cache_dir, "xray", num_workers, progress)
    ct_ds = _wrap(ct_items, ct_transform, cache, cache_dir, "ct", num_workers, progress)
    return MixedModalityDataset(xray_ds, ct_ds, source_indices=source_indices)
