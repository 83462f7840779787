# SPDX-License-Identifier: Apache-2.0
"""ReadImaged: load the image files named in a data dict with the first reader that accepts each path.

Kept beside MONAI's ``LoadImaged`` because ``LoadImaged`` falls back to its other readers when a user
reader rejects a file, and its errors name neither the file nor the key; the pipelines need each bad
file refused with one line naming it, and 2D / 3D inputs checked (``spatial_ndim``).
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.config import DtypeLike, KeysCollection
from monai.data import ImageReader, MetaTensor
from monai.transforms import MapTransform
from monai.utils import ImageMetaKey, ensure_tuple

from unimedi_monai.data.readers import IMAGE_DIMENSION_KEY

__all__ = ["filename_of", "ReadImaged"]


def filename_of(img: Any) -> str:
    """Return the source file recorded in a MetaTensor's metadata, or ``"<unknown file>"``."""
    if isinstance(img, MetaTensor):
        name = img.meta.get(ImageMetaKey.FILENAME_OR_OBJ)
        if name:
            return f"{name}"
    return "<unknown file>"


class ReadImaged(MapTransform):
    """
    Load image files named in the data dict with the first reader whose ``verify_suffix`` accepts the path.

    Unlike :py:class:`monai.transforms.LoadImaged` with user readers, this never falls back silently to other
    readers: a missing path raises :py:class:`FileNotFoundError`, an unsupported suffix or an unreadable file
    raises :py:class:`ValueError`, and every message names the file and the key. The output is a
    :py:class:`monai.data.MetaTensor` with the reader's metadata and ``filename_or_obj``.

    Args:
        keys: keys of the data dict holding a file path (or a DICOM folder).
        readers: candidate readers, tried in order by ``verify_suffix``.
        dtype: convert the loaded array to this dtype; ``None`` keeps the file's dtype (unsigned 16/32-bit
            integers are widened to signed 32/64-bit since torch supports few operations on them).
        spatial_ndim: when set, the number of spatial dimensions the file must have (3: a CT volume); a
            file with fewer or more (a 2D image or a 4D series where a volume is expected) or, for 3, a volume
            of a single slice raises :py:class:`ValueError` naming the file. A trailing channel dimension is allowed.
        allow_missing_keys: don't raise if a key is missing.

    Example::

        load = ReadImaged(keys="image", readers=[XRayPILReader(), XRayDicomReader()], dtype=None)
        img = load({"image": "cxr.png"})["image"]  # (H, W) MetaTensor, uint8
    """

    def __init__(
        self,
        keys: KeysCollection,
        readers: ImageReader | Sequence[ImageReader],
        dtype: DtypeLike | None = np.float32,
        allow_missing_keys: bool = False,
        spatial_ndim: int | None = None,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if spatial_ndim is not None and int(spatial_ndim) < 1:
            raise ValueError(f"ReadImaged: spatial_ndim must be a positive integer or None, got {spatial_ndim}.")
        self.spatial_ndim = None if spatial_ndim is None else int(spatial_ndim)
        self.readers: tuple[ImageReader, ...] = tuple(ensure_tuple(readers))
        if not self.readers:
            raise ValueError("ReadImaged: at least one reader is required.")
        self.dtype = dtype

    def _select_reader(self, path: str, key: Hashable) -> ImageReader:
        for reader in self.readers:
            if reader.verify_suffix(path):
                return reader
        names = ", ".join(type(r).__name__ for r in self.readers)
        raise ValueError(
            f"ReadImaged: no reader for '{path}' (key '{key}'); the readers [{names}] do not accept this file type."
        )

    def _load(self, path: Any, key: Hashable) -> MetaTensor:
        """Read ``path`` into a MetaTensor, raising errors that name the file and ``key``."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"ReadImaged: key '{key}' must hold a file path (str), got {type(path).__name__}.")
        path = os.path.expanduser(f"{path}")
        if not os.path.exists(path):
            raise FileNotFoundError(f"ReadImaged: image file not found: '{path}' (key '{key}'); fix the path.")
        reader = self._select_reader(path, key)
        try:
            array, meta = reader.get_data(reader.read(path))
        except (FileNotFoundError, ValueError) as e:
            if path in str(e):
                raise
            error = FileNotFoundError if isinstance(e, FileNotFoundError) else ValueError
            raise error(f"ReadImaged: cannot read '{path}' (key '{key}') with {type(reader).__name__}: {e}") from e
        except Exception as e:
            reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise ValueError(
                f"ReadImaged: cannot read '{path}' (key '{key}') with {type(reader).__name__}: {reason}; "
                "check that the file is complete and in a supported format."
            ) from e
        array = np.asarray(array)
        if self.spatial_ndim is not None:
            self._check_ndim(array, meta, path, key)
        if not array.dtype.isnative:  # e.g. big-endian 16-bit PNG ("I;16B"); torch needs native byte order
            array = array.astype(array.dtype.newbyteorder("="))
        if not array.flags.writeable:  # e.g. PIL buffers; torch needs writable memory
            array = array.copy()
        if self.dtype is not None:
            array = array.astype(self.dtype, copy=False)
        elif array.dtype == np.uint16:
            array = array.astype(np.int32)
        elif array.dtype in (np.uint32, np.uint64):
            array = array.astype(np.int64)
        meta[ImageMetaKey.FILENAME_OR_OBJ] = path
        return MetaTensor.ensure_torch_and_prune_meta(array, meta)

    def _check_ndim(self, array: np.ndarray, meta: Mapping, path: str, key: Hashable) -> None:
        """Refuse an image with another number of spatial dimensions than ``spatial_ndim`` (or a one-slice volume)."""
        channel_dim = meta.get("original_channel_dim", "no_channel")
        has_channel = isinstance(channel_dim, (int, np.integer)) and not isinstance(channel_dim, bool)
        spatial = array.shape[:-1] if has_channel and int(channel_dim) == -1 else array.shape
        dimension = meta.get(IMAGE_DIMENSION_KEY)
        if dimension is not None and int(dimension) > len(spatial):  # a 4D series read with its 4th axis last
            spatial = array.shape[: int(dimension)]
        want = self.spatial_ndim
        if len(spatial) != want or (want == 3 and min(spatial[:3]) == 1):
            kind = f"{len(spatial)}D image" if len(spatial) != want else "volume of a single slice"
            raise ValueError(
                f"ReadImaged: '{path}' (key '{key}') is a {kind} (shape {tuple(array.shape)}) where a {want}D "
                f"{'volume' if want == 3 else 'image'} is expected; check the entry's modality and file."
            )

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """
        Args:
            data: a dict whose ``keys`` hold file paths.

        Returns:
            a shallow copy of ``data`` with the paths replaced by the loaded images.
        """
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self._load(d[key], key)
        return d
