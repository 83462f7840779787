# SPDX-License-Identifier: Apache-2.0
"""
A dataset holding X-rays and CTs side by side, with a global index (X-rays first, then CTs) that
:py:class:`unimedi_monai.data.sampler.MixedBatchSampler` draws from.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.data import CacheDataset, Dataset, PersistentDataset

from unimedi_monai.data.integrity import file_fingerprint
from unimedi_monai.data.transforms import ReadImaged, unwrap_transform_error

__all__ = [
    "MODALITIES",
    "CACHE_MODES",
    "BAD_SAMPLE_MODES",
    "BAD_SAMPLE_KEY",
    "MixedModalityDataset",
    "build_pretrain_dataset",
]

logger = logging.getLogger(__name__)

#: modality values accepted in data items, in global-index order.
MODALITIES = ("xray", "ct")

#: caching strategies accepted by :py:func:`build_pretrain_dataset`.
CACHE_MODES = ("memory", "disk", "none")

#: values of ``on_bad_sample``: raise an error naming the entry, or skip the sample (logged).
BAD_SAMPLE_MODES = ("raise", "skip")

#: key of the marker dict returned for a skipped sample (its value: one line naming entry, file and reason).
BAD_SAMPLE_KEY = "bad_sample"

#: error types re-raised by :py:class:`MixedModalityDataset` with the sample index added to the message.
_CONTEXT_ERRORS = (ValueError, FileNotFoundError, TypeError, KeyError)


class _LoadFailure:
    """What :py:class:`_TolerantCacheDataset` caches for an item whose deterministic transforms failed."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _TolerantCacheDataset(CacheDataset):
    """A :py:class:`monai.data.CacheDataset` that records a failing item instead of aborting the whole cache
    fill; fetching that item raises the recorded error again (so ``on_bad_sample`` decides what happens).

    Why MONAI's private methods are overridden: ``CacheDataset`` has no public option for a failing item.
    Its cache fill (``_fill_cache``, run from ``__init__``) maps ``_load_cache_item`` over all items in a
    thread pool, so one unreadable file among thousands raises out of the constructor and nothing is
    cached. A wrapper transform catching the error would have to re-implement how ``CacheDataset`` splits
    the pipeline at the first random transform (and the re-seeding of those transforms). Overriding
    ``_load_cache_item`` (cache a :py:class:`_LoadFailure` marker) and ``_transform`` (raise it on access,
    also when no random transform follows, where MONAI would return the marker as the sample) keeps every
    good item cached. Both methods are pinned by the ``monai>=1.6,<1.7`` requirement (their signatures as in
    MONAI 1.6); tests/test_reliability_data.py (``test_bad_sample_raises_naming_entry_and_file``,
    ``test_skip_leaves_the_bad_sample_out_of_its_batch``, memory cache) fails if they change.
    """

    def _load_cache_item(self, idx: int):  # type: ignore[override]
        try:
            return super()._load_cache_item(idx)
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure of a bad file is recorded and re-raised on access
            return _LoadFailure(e)

    def _transform(self, index: int):  # type: ignore[override]
        cached = self._cache[index] if self._cache is not None and 0 <= index < len(self._cache) else None
        if isinstance(cached, _LoadFailure):
            raise cached.error
        return super()._transform(index)

    def failed_indices(self) -> list[int]:
        """Indices whose cached transform failed."""
        return [i for i, c in enumerate(self._cache or []) if isinstance(c, _LoadFailure)]


class MixedModalityDataset(torch.utils.data.Dataset):
    """
    Concatenation of an X-ray dataset and a CT dataset under one global index: ``0 .. num_xray - 1`` are the
    X-rays, ``num_xray .. num_xray + num_ct - 1`` the CTs. Every returned sample is a new dict with the
    transformed item (passthrough keys untouched) plus ``"index"`` (its global index).

    A transform error raised while fetching a sample (:py:class:`ValueError`, :py:class:`FileNotFoundError`,
    :py:class:`TypeError`, :py:class:`KeyError`) is re-raised with the same type and the sample's global index
    (and datalist entry, when ``source_indices`` is given) prepended to its message and the file (and datalist
    section) appended; any other error is re-raised as a :py:class:`ValueError` with the same context.
    With ``on_bad_sample="skip"`` the sample is returned instead as the marker ``{"bad_sample": <that message>,
    "index": i, "modality": m}``, which :py:func:`~unimedi_monai.data.collate.collate_mixed` drops from its batch.

    Random transforms: an index may be given as ``(index, seed)`` (as
    :py:class:`~unimedi_monai.data.sampler.MixedBatchSampler` yields with ``sample_seeds=True``); the random
    transforms of the modality's pipeline are then re-seeded with ``seed`` before the sample is transformed, so
    its augmentation depends only on the sampler (epoch, batch, slot), not on the data-loader worker that
    fetches it or on the samples fetched before: runs resumed mid-epoch and runs with any ``num_workers``
    draw the same augmentations.

    Args:
        xray_dataset: dataset of X-ray samples (dicts), or ``None`` when there are none.
        ct_dataset: dataset of CT samples (dicts), or ``None`` when there are none.
        source_indices: for each global index, the position of the item in the original datalist
            (as built by :py:func:`build_pretrain_dataset`); ``None`` when unknown.
        on_bad_sample: ``"raise"`` (default) or ``"skip"``, see above.
        section: name of the datalist section the items come from (named in error messages).

    Example::

        ds = MixedModalityDataset(Dataset(xray_items, xray_tf), Dataset(ct_items, ct_tf))
        sampler = MixedBatchSampler(ds.num_xray, ds.num_ct, batch_size=32)
    """

    def __init__(
        self,
        xray_dataset: torch.utils.data.Dataset | None,
        ct_dataset: torch.utils.data.Dataset | None,
        source_indices: Sequence[int] | None = None,
        on_bad_sample: str = "raise",
        section: str | None = None,
    ) -> None:
        super().__init__()
        if on_bad_sample not in BAD_SAMPLE_MODES:
            raise ValueError(f"on_bad_sample must be one of {BAD_SAMPLE_MODES}, got {on_bad_sample!r}.")
        self.on_bad_sample = on_bad_sample
        self.section = section
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

    def _source(self, i: int) -> tuple[torch.utils.data.Dataset | None, int]:
        return (self.xray_dataset, i) if i < self.num_xray else (self.ct_dataset, i - self.num_xray)

    def image_of(self, index: int) -> str | None:
        """The ``image`` value of the data item behind a global index (None when unknown)."""
        ds, j = self._source(self._normalise(index))
        data = getattr(ds, "data", None)
        try:
            item = data[j] if data is not None else None
        except (IndexError, TypeError, KeyError):
            return None
        return f"{item['image']}" if isinstance(item, Mapping) and "image" in item else None

    def describe_error(self, index: int, error: BaseException) -> str:
        """One line naming the sample, its datalist entry and section, its file and the reason."""
        i = self._normalise(index)
        where = f"sample {i} ({self.modality_of(i)}"
        where += f", datalist entry {self.source_indices[i]})" if self.source_indices is not None else ")"
        message = error.args[0] if (type(error) is KeyError and error.args) else str(error)
        message = " ".join(f"{message}".split()) or type(error).__name__
        if type(error) not in _CONTEXT_ERRORS:
            message = f"{type(error).__name__}: {message}"
        context = []
        if self.section is not None:
            context.append(f"datalist section '{self.section}'")
        image = self.image_of(i)
        if image is not None and image not in message:
            context.append(f"file '{image}'")
        return f"{where}: {message}" + (f" [{', '.join(context)}]" if context else "")

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        """
        Args:
            index: global sample index, or ``(index, seed)`` to re-seed the random transforms first.

        Returns:
            the transformed sample as a new dict with ``"index"`` set to the (non-negative) global index, or the
            skipped-sample marker (``on_bad_sample="skip"``).
        """
        seed = None
        if isinstance(index, (tuple, list)):
            index, seed = index
        i = self._normalise(index)
        ds, j = self._source(i)
        try:
            if seed is not None:
                transform = getattr(ds, "transform", None)
                if hasattr(transform, "set_random_state"):
                    transform.set_random_state(seed=int(seed) % (2**32))
            sample = ds[j]  # type: ignore[index]
        except MemoryError:
            raise
        except Exception as e:
            root = unwrap_transform_error(e)  # a plain monai Compose wraps errors in RuntimeError
            message = self.describe_error(i, root)
            if self.on_bad_sample == "skip":
                logger.debug("skipping %s", message)
                return {BAD_SAMPLE_KEY: message, "index": i, "modality": self.modality_of(i)}
            error = type(root) if type(root) in _CONTEXT_ERRORS else ValueError
            raise error(message) from e
        if not isinstance(sample, Mapping):
            raise TypeError(
                f"MixedModalityDataset: sample {i} is a {type(sample).__name__}, expected a dict; "
                "the transforms must return the data dict."
            )
        out = dict(sample)
        out["index"] = i
        return out

    def failed_indices(self) -> list[int]:
        """Global indices whose cached (deterministic) transforms failed when the memory cache was filled."""
        out = []
        for ds, offset in ((self.xray_dataset, 0), (self.ct_dataset, self.num_xray)):
            if isinstance(ds, _TolerantCacheDataset):
                out.extend(offset + j for j in ds.failed_indices())
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
        return _TolerantCacheDataset(items, transform, num_workers=max(1, num_workers), progress=progress)
    if cache == "disk":
        folder = os.path.join(os.fspath(cache_dir), subfolder)  # type: ignore[arg-type]
        return PersistentDataset(items, transform, cache_dir=folder, hash_func=content_hash)
    return Dataset(items, transform)


def content_hash(item: Mapping[str, Any]) -> bytes:
    """Disk-cache key of a datalist item: the item itself and the content of its image
    (:func:`~unimedi_monai.data.integrity.file_fingerprint`: size, modification time, first and last bytes),
    so a replaced image is decoded again instead of served stale from the cache."""
    from monai.data.utils import pickle_hashing

    image = item.get("image") if isinstance(item, Mapping) else None
    extra = {"__content__": file_fingerprint(image)} if isinstance(image, (str, os.PathLike)) else {}
    return pickle_hashing({**dict(item), **extra})


def _require_volumes(ct_transform: Callable | None) -> None:
    """Make the CT pipeline's :py:class:`ReadImaged` refuse 2D files (``spatial_ndim=3``) unless it already says."""
    for t in getattr(ct_transform, "transforms", ()):
        if isinstance(t, ReadImaged) and t.spatial_ndim is None:
            t.spatial_ndim = 3


def build_pretrain_dataset(
    items: Sequence[Mapping[str, Any]],
    xray_transform: Callable | None,
    ct_transform: Callable | None,
    cache: str = "memory",
    cache_dir: str | os.PathLike | None = None,
    num_workers: int = 0,
    progress: bool = True,
    on_bad_sample: str = "raise",
    section: str | None = "training",
) -> MixedModalityDataset:
    """
    Split data items by ``modality`` and wrap each group in a MONAI dataset.

    Caching (each modality separately): ``"memory"`` uses :py:class:`monai.data.CacheDataset` (the deterministic
    prefix of the transform, up to the first random transform, is computed once at construction);
    ``"disk"`` uses :py:class:`monai.data.PersistentDataset` under ``cache_dir/xray`` and ``cache_dir/ct``
    (computed on first access; keyed by the data item and the content of its image, :func:`content_hash`, so
    a replaced image is decoded again; delete the folder when the transforms change); ``"none"`` uses a plain
    :py:class:`monai.data.Dataset`.

    Args:
        items: data items ``{"image": path, "report": str, "modality": "xray" | "ct", ...}``; the other keys
            pass through untouched. Entries keep their relative order inside each modality.
        xray_transform: transform for X-ray items (e.g. the pretrain bundle's ``train#xray_transforms``).
        ct_transform: transform for CT items (e.g. the pretrain bundle's ``train#ct_transforms``).
        cache: ``"memory"``, ``"disk"`` or ``"none"``.
        cache_dir: root folder of the disk cache; required when ``cache="disk"``.
        num_workers: threads used to fill the memory cache (values below 1 mean 1).
        progress: show a progress bar while filling the memory cache.
        on_bad_sample: what a sample that cannot be loaded or transformed (missing, truncated or corrupt file,
            a 2D file where a volume is expected, NaN/inf voxels, an empty report...) does: ``"raise"`` (default)
            stops with an error naming the datalist entry, the file and the reason (with ``cache="memory"`` this
            happens here, before training starts); ``"skip"`` logs the item and leaves it out of its batches
            (see :py:class:`MixedModalityDataset`).
        section: the datalist section of ``items`` (named in error messages).

    The CT pipeline's :py:class:`~unimedi_monai.data.transforms.ReadImaged` is set to refuse 2D files and
    one-slice volumes (``spatial_ndim=3``) when it does not set ``spatial_ndim`` itself: a 2D file listed as a
    CT would otherwise be stretched into a volume without a word.

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
    if on_bad_sample not in BAD_SAMPLE_MODES:
        raise ValueError(
            f"build_pretrain_dataset: on_bad_sample must be one of {BAD_SAMPLE_MODES}, got {on_bad_sample!r}."
        )
    _require_volumes(ct_transform)
    xray_items, ct_items, source_indices = _split_by_modality(items)
    xray_ds = _wrap(xray_items, xray_transform, cache, cache_dir, "xray", num_workers, progress)
    ct_ds = _wrap(ct_items, ct_transform, cache, cache_dir, "ct", num_workers, progress)
    dataset = MixedModalityDataset(
        xray_ds, ct_ds, source_indices=source_indices, on_bad_sample=on_bad_sample, section=section
    )
    failed = dataset.failed_indices()
    if failed and on_bad_sample == "raise":
        try:
            dataset[failed[0]]
        except Exception as e:
            more = f" ({len(failed) - 1} more entries failed too)" if len(failed) > 1 else ""
            raise type(e)(f"{e}{more}; fix or remove the entry, or set on_bad_sample to 'skip'.") from e.__cause__
    for g in failed:
        logger.warning("on_bad_sample=skip: %s; it is left out of every batch", dataset[g][BAD_SAMPLE_KEY])
    return dataset
