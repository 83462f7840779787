# SPDX-License-Identifier: Apache-2.0
"""Checks every image reader of the package shares: complete NIfTI files with plausible headers, finite voxel
values, image / label pairs on one grid, and content fingerprints that key the caches.

- :func:`check_nifti_file`: the header is plausible (dimensions, voxel count, memory) and the file holds the
  whole voxel block the header declares (for ``.nii.gz`` the *decompressed* size). SimpleITK zero-fills a
  truncated file without a word; this check runs before it reads.
- :func:`count_nonfinite`: NaN/inf voxels of a floating-point array.
- :func:`grid_mismatch`: how two images' grids (shape, spacing, origin, direction) differ, or None.
- :func:`file_fingerprint`: size, modification time and a hash of the first and last bytes of a file (every
  file of a DICOM folder), so a cache never serves the result of a file that has since changed.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MAX_VOXELS_ENV",
    "DEFAULT_MAX_VOXELS",
    "check_nifti_file",
    "count_nonfinite",
    "grid_mismatch",
    "file_fingerprint",
]

logger = logging.getLogger(__name__)

#: environment variable that raises (or lowers) the largest voxel count a NIfTI header may declare.
MAX_VOXELS_ENV = "UNIMEDI_MAX_VOXELS"
#: default largest voxel count: 2**30 (a 1024 x 1024 x 1024 volume, 4 GiB as float32).
DEFAULT_MAX_VOXELS = 1 << 30

_HASH_BYTES = 1 << 16  # bytes hashed at each end of a file (a gzip file ends with the CRC of its content)


def _max_voxels() -> int:
    value = os.environ.get(MAX_VOXELS_ENV, "")
    try:
        return int(value) if value else DEFAULT_MAX_VOXELS
    except ValueError:
        raise ValueError(f"environment variable {MAX_VOXELS_ENV}={value!r} must be an integer voxel count.") from None


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _gzip_payload(path: str, need: int) -> int:
    """Decompressed bytes of a gzip file, counted up to ``need`` (the gzip trailer is trusted when it agrees)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() >= 18:  # smallest gzip member: 10-byte header, empty deflate block, 8-byte trailer
            f.seek(-4, os.SEEK_END)
            if struct.unpack("<I", f.read(4))[0] == need % (1 << 32):
                return need
    total = 0
    try:
        with gzip.open(path, "rb") as g:
            while total < need:
                chunk = g.read(min(1 << 24, need - total))
                if not chunk:
                    break
                total += len(chunk)
    except (EOFError, OSError, zlib.error):  # cut short, or corrupt: what was read before counts
        pass
    return total


def check_nifti_file(path: str | os.PathLike) -> dict[str, Any]:
    """Refuse a NIfTI file whose header is implausible or whose voxel data is shorter than the header says.

    Checked before any voxel is read: every dimension is at least 1; the voxel count is at most
    ``UNIMEDI_MAX_VOXELS`` (environment variable, default 2**30) and the volume as float32 fits in the
    machine's memory; the file (for ``.nii.gz`` its decompressed stream) holds ``vox_offset + voxels x
    bytes per voxel`` bytes. A zero or negative voxel size (``pixdim``) is logged as a warning naming the file.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.

    Returns:
        ``{"shape": ..., "dtype": ..., "bytes": ...}`` of the header.

    Raises:
        ValueError: one line naming the file and what is wrong with it.
    """
    import nibabel as nib

    name = os.fspath(path)
    try:
        image = nib.load(name)
        header = image.header
    except Exception as err:  # not a NIfTI header, a gzip stream cut inside the header, ...
        raise ValueError(f"cannot read '{name}' as NIfTI ({type(err).__name__}: {err}); repair or replace it.") from err
    shape = tuple(int(s) for s in header.get_data_shape())
    if not shape or min(shape) < 1:
        raise ValueError(
            f"NIfTI file '{name}' declares the shape {shape}: every dimension must be at least 1; repair or replace it."
        )
    voxels = int(np.prod(np.asarray(shape, dtype=np.int64)))
    limit = _max_voxels()
    if voxels > limit:
        raise ValueError(
            f"NIfTI file '{name}' declares {'x'.join(map(str, shape))} = {voxels:,} voxels, more than the limit of "
            f"{limit:,}; a corrupt header? (raise the limit with {MAX_VOXELS_ENV} for a genuinely larger volume)."
        )
    dtype = header.get_data_dtype()
    memory = _physical_memory()
    if memory is not None and voxels * max(4, dtype.itemsize) > memory:
        raise ValueError(
            f"NIfTI file '{name}' declares {'x'.join(map(str, shape))} voxels, "
            f"{voxels * max(4, dtype.itemsize) / 2**30:.1f} GiB as float32: more than this machine's "
            f"{memory / 2**30:.1f} GiB of memory; a corrupt header?"
        )
    offset = int(getattr(image.dataobj, "offset", header.single_vox_offset))  # where the voxels start in the file
    need = offset + voxels * dtype.itemsize
    if name.lower().endswith(".gz"):
        have = _gzip_payload(name, need)
        what = "decompressed data"
    else:
        have = os.path.getsize(name)
        what = "file"
    if have < need:
        raise ValueError(
            f"NIfTI file '{name}' is truncated: its header declares {'x'.join(map(str, shape))} voxels of {dtype} "
            f"({need:,} bytes with the header) but the {what} holds {have:,} bytes; copy the file again or remove it "
            "from the datalist."
        )
    with nib.openers.ImageOpener(name) as f:  # the stored voxel sizes: nibabel's loader repairs zero ones
        stored = type(header).from_fileobj(f, check=False)
    pixdim = np.asarray(stored["pixdim"][1 : 1 + min(len(shape), 3)], dtype=np.float64)
    if not np.all(np.isfinite(pixdim)) or np.any(pixdim <= 0):
        logger.warning(
            "NIfTI file '%s' has the voxel size (pixdim) %s: zero, negative or not finite; its spacing is unreliable.",
            name,
            pixdim.tolist(),
        )
    return {"shape": shape, "dtype": str(dtype), "bytes": need}


def count_nonfinite(array: Any) -> int:
    """Number of NaN/inf values of a floating-point (or complex) array or tensor; 0 for integer ones."""
    if hasattr(array, "is_floating_point"):  # a torch tensor (MetaTensor included)
        import torch

        t = torch.as_tensor(array)
        if not (t.is_floating_point() or t.is_complex()):
            return 0
        return int((~torch.isfinite(t)).sum())
    values = np.asarray(array)
    if values.dtype.kind not in "fc":
        return 0
    return int(values.size - np.count_nonzero(np.isfinite(values)))


def grid_mismatch(
    shape_a: Any,
    affine_a: Any,
    shape_b: Any,
    affine_b: Any,
    spacing_rtol: float = 1e-3,
    direction_atol: float = 1e-3,
    origin_voxels: float = 0.1,
) -> str | None:
    """How two images' voxel grids differ (shape, spacing, direction, origin), or None when they agree.

    Args:
        shape_a: spatial shape of the first image.
        affine_a: its ``(d+1, d+1)`` voxel-to-world affine.
        shape_b: spatial shape of the second image.
        affine_b: its affine.
        spacing_rtol: relative tolerance of the voxel sizes.
        direction_atol: absolute tolerance of the direction cosines.
        origin_voxels: tolerance of the origins, in units of the smallest voxel size.

    Returns:
        e.g. ``"origin (0, 0, 0) vs (100, 0, 0) mm"``, or None.
    """
    sa, sb = tuple(int(s) for s in shape_a), tuple(int(s) for s in shape_b)
    if sa != sb:
        return f"shape {sa} vs {sb}"
    a, b = np.asarray(affine_a, dtype=np.float64), np.asarray(affine_b, dtype=np.float64)
    if a.shape != b.shape:
        return f"dimension {a.shape[0] - 1} vs {b.shape[0] - 1}"
    d = a.shape[0] - 1
    spacing_a, spacing_b = np.linalg.norm(a[:d, :d], axis=0), np.linalg.norm(b[:d, :d], axis=0)
    if not np.allclose(spacing_a, spacing_b, rtol=spacing_rtol, atol=1e-6):
        return f"spacing {tuple(np.round(spacing_a, 4))} vs {tuple(np.round(spacing_b, 4))} mm"
    dir_a, dir_b = a[:d, :d] / np.maximum(spacing_a, 1e-12), b[:d, :d] / np.maximum(spacing_b, 1e-12)
    if not np.allclose(dir_a, dir_b, atol=direction_atol):
        return f"direction {np.round(dir_a, 3).tolist()} vs {np.round(dir_b, 3).tolist()}"
    tolerance = origin_voxels * float(min(spacing_a.min(), spacing_b.min()))
    if np.max(np.abs(a[:d, d] - b[:d, d])) > tolerance:
        return f"origin {tuple(np.round(a[:d, d], 2))} vs {tuple(np.round(b[:d, d], 2))} mm"
    return None


def _hash_file(h: Any, path: Path, size: int) -> None:
    with path.open("rb") as f:
        if size <= 2 * _HASH_BYTES:
            h.update(f.read())
        else:
            h.update(f.read(_HASH_BYTES))
            f.seek(-_HASH_BYTES, os.SEEK_END)
            h.update(f.read(_HASH_BYTES))


def file_fingerprint(path: str | os.PathLike) -> str:
    """A key that changes when the file (or any file of a folder, e.g. a DICOM series) changes.

    Hashes the size, the modification time (ns) and the first and last 64 KiB of each file (the whole
    file when it is at most 128 KiB; a ``.gz`` file ends with the CRC-32 of its whole content); a missing
    path gives ``"missing"``.

    Args:
        path: a file or a folder.

    Returns:
        a hex SHA-256 digest.
    """
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
    elif p.is_file():
        files = [p]
    else:
        return "missing"
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(p) if f != p else f.name}:{st.st_size}:{st.st_mtime_ns}:".encode())
        _hash_file(h, f, st.st_size)
    return h.hexdigest()
