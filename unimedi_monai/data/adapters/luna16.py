# SPDX-License-Identifier: Apache-2.0
"""LUNA16 nodule annotations: reading ``annotations.csv`` and mapping world coordinates to voxels.

LUNA16 (https://luna16.grand-challenge.org) ships its CTs as MetaImage files
``subset0/<seriesuid>.mhd`` ... ``subset9/<seriesuid>.mhd`` and the nodules in ``annotations.csv``
(``seriesuid,coordX,coordY,coordZ,diameter_mm``) as world coordinates in millimetres in the ITK
(LPS) physical space of each image. A world point ``p`` lies at the continuous voxel index

    ``index = (D @ diag(spacing))^-1 @ (p - origin)``

with ``D`` the image's direction matrix (columns: the physical directions of the index axes), as
SimpleITK's ``TransformPhysicalPointToContinuousIndex``; :func:`world_to_voxel` rounds it half up as
``TransformPhysicalPointToIndex`` does. Voxel indices are in SimpleITK's ``(i, j, k)`` order, the
order of the arrays read by :class:`~unimedi_monai.data.readers.SimpleITKReader`: ``k`` is the slice
number of an axial CT.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LUNA16_COLUMNS", "world_to_voxel", "read_luna16_annotations", "find_luna16_images", "luna16_cases"]

logger = logging.getLogger(__name__)

#: the columns ``annotations.csv`` must have.
LUNA16_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")


def world_to_voxel(
    points: Sequence[float] | np.ndarray,
    origin: Sequence[float],
    spacing: Sequence[float],
    direction: Sequence[float] | np.ndarray,
    round_index: bool = True,
) -> np.ndarray:
    """Map physical (world, LPS as in ITK) points to voxel indices of an image.

    Args:
        points: one point ``(3,)`` or ``(N, 3)`` points, in millimetres.
        origin: the image origin (world position of voxel ``(0, 0, 0)``).
        spacing: voxel size along each index axis.
        direction: the direction matrix, ``(3, 3)`` or the 9 numbers of SimpleITK's ``GetDirection()``
            (row-major).
        round_index: round to the nearest integer index (halves up, as SimpleITK's
            ``TransformPhysicalPointToIndex``) and return integers; otherwise the continuous index.

    Returns:
        ``(3,)`` or ``(N, 3)`` indices in ``(i, j, k)`` order.

    Example::

        world_to_voxel([-100.0, 20.0, -150.0], image.GetOrigin(), image.GetSpacing(), image.GetDirection())
    """
    pts = np.asarray(points, dtype=np.float64)
    single = pts.ndim == 1
    pts = np.atleast_2d(pts)
    dim = pts.shape[-1]
    origin_arr = np.asarray(origin, dtype=np.float64).reshape(dim)
    spacing_arr = np.asarray(spacing, dtype=np.float64).reshape(dim)
    if np.any(spacing_arr <= 0):
        raise ValueError(f"world_to_voxel: spacing must be positive, got {tuple(spacing_arr)}.")
    matrix = np.asarray(direction, dtype=np.float64).reshape(dim, dim) @ np.diag(spacing_arr)
    index = np.linalg.solve(matrix, (pts - origin_arr).T).T
    if round_index:
        index = np.floor(index + 0.5).astype(np.int64)
    return index[0] if single else index


def _parse_float(value: str, column: str, row: int, path: Path) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{path}: row {row}: column '{column}' is {value!r}, not a number; fix or remove the row."
        ) from None
    if not np.isfinite(number):
        raise ValueError(
            f"{path}: row {row}: column '{column}' is {value!r}, not a finite number; fix or remove the row."
        )
    return number


def read_luna16_annotations(path: str | os.PathLike) -> dict[str, list[dict[str, Any]]]:
    """Read a LUNA16 ``annotations.csv``.

    Args:
        path: the CSV file with the header ``seriesuid,coordX,coordY,coordZ,diameter_mm`` (extra
            columns are ignored).

    Returns:
        ``{seriesuid: [{"world": [x, y, z], "diameter_mm": d, "row": row_number}, ...]}`` in file
        order (row numbers count the header as row 1).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a missing column, an empty series UID or a value that is not a number, naming the
            file and the row.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LUNA16 annotations file not found: '{path}'; set `annotations` to annotations.csv.")
    nodules: dict[str, list[dict[str, Any]]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in LUNA16_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {missing}; a LUNA16 annotations file has the header "
                f"{','.join(LUNA16_COLUMNS)}."
            )
        for row_number, row in enumerate(reader, start=2):
            uid = (row.get("seriesuid") or "").strip()
            if not uid:
                raise ValueError(f"{path}: row {row_number}: empty 'seriesuid'; fix or remove the row.")
            world = [_parse_float(row[c], c, row_number, path) for c in ("coordX", "coordY", "coordZ")]
            diameter = _parse_float(row["diameter_mm"], "diameter_mm", row_number, path)
            if diameter < 0:
                raise ValueError(f"{path}: row {row_number}: negative 'diameter_mm' {diameter}; fix or remove the row.")
            nodules.setdefault(uid, []).append({"world": world, "diameter_mm": diameter, "row": row_number})
    return nodules


def find_luna16_images(dataset_dir: str | os.PathLike) -> dict[str, Path]:
    """``{seriesuid: path}`` of the ``subset*/<seriesuid>.mhd`` images under ``dataset_dir``.

    Raises:
        FileNotFoundError: ``dataset_dir`` is not a folder or holds no ``subset*/*.mhd`` image.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise FileNotFoundError(
            f"LUNA16 folder not found: '{root}'; set `dataset_dir` to the folder holding subset0..subset9."
        )
    images = {p.name[: -len(".mhd")]: p for p in sorted(root.glob("subset*/*.mhd"))}
    if not images:
        raise FileNotFoundError(
            f"no LUNA16 images (subset*/<seriesuid>.mhd) under '{root}'; set `dataset_dir` to the folder holding "
            "subset0..subset9."
        )
    return images


def _image_geometry(path: Path) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...], tuple[int, ...]]:
    """Origin, spacing, direction and size of an image, from its header only."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        reason = [ln for ln in str(err).splitlines() if ln.strip()]
        raise ValueError(f"cannot read the header of '{path}' ({reason[-1].strip() if reason else err}).") from err
    return reader.GetOrigin(), reader.GetSpacing(), reader.GetDirection(), reader.GetSize()


def luna16_cases(
    dataset_dir: str | os.PathLike,
    annotations: str | os.PathLike | None = None,
    min_diameter_mm: float = 3.0,
    max_cases: int | None = None,
) -> list[dict[str, Any]]:
    """The CTs of a LUNA16 folder that hold at least one nodule of ``min_diameter_mm`` or more.

    Series listed in the annotations whose image is not under ``dataset_dir`` (e.g. only some subsets
    were downloaded) are skipped with one warning giving their number.

    Args:
        dataset_dir: the folder with ``subset*/<seriesuid>.mhd``.
        annotations: the annotations CSV (default ``dataset_dir/annotations.csv``; a relative path is
            taken relative to ``dataset_dir``).
        min_diameter_mm: smallest nodule diameter kept (3 mm in the protocol).
        max_cases: keep only the first ``max_cases`` CTs (in series UID order), or all when None.

    Returns:
        one dict per CT, sorted by series UID: ``id`` (the series UID), ``image`` (the ``.mhd`` path),
        ``num_slices`` (size along ``k``), ``nodules_voxel`` (``[[i, j, k], ...]`` nodule centres as
        voxel indices), ``nodules_world`` and ``diameters_mm``.

    Raises:
        ValueError: no CT with such a nodule was found, or ``min_diameter_mm`` is negative.
    """
    if min_diameter_mm < 0:
        raise ValueError(f"min_diameter_mm must be >= 0, got {min_diameter_mm}.")
    root = Path(dataset_dir)
    csv_path = Path(annotations) if annotations else root / "annotations.csv"
    if not csv_path.is_absolute() and annotations:
        csv_path = root / csv_path
    nodules = read_luna16_annotations(csv_path)
    images = find_luna16_images(root)
    cases: list[dict[str, Any]] = []
    absent = 0
    for uid in sorted(nodules):
        kept = [n for n in nodules[uid] if n["diameter_mm"] >= min_diameter_mm]
        if not kept:
            continue
        if uid not in images:
            absent += 1
            continue
        origin, spacing, direction, size = _image_geometry(images[uid])
        world = np.asarray([n["world"] for n in kept], dtype=np.float64)
        voxels = world_to_voxel(world, origin, spacing, direction)
        cases.append(
            {
                "id": uid,
                "image": str(images[uid]),
                "num_slices": int(size[2]),
                "nodules_voxel": voxels.tolist(),
                "nodules_world": world.tolist(),
                "diameters_mm": [n["diameter_mm"] for n in kept],
            }
        )
        if max_cases is not None and len(cases) >= max_cases:
            break
    if absent:
        logger.warning(
            "%d annotated series of %s have no image under %s (subsets not downloaded?); skipped.",
            absent,
            csv_path,
            root,
        )
    if not cases:
        raise ValueError(
            f"no CT under '{root}' has a nodule of at least {min_diameter_mm} mm in '{csv_path}'; check `dataset_dir`, "
            "`annotations` and `min_diameter_mm`."
        )
    return cases
