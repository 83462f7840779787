# SPDX-License-Identifier: Apache-2.0
"""Map per-slice scores between a CT file's own slice numbering and the model's resampled grid.

The CT pipeline (:func:`unimedi_monai.data.ct_transforms`) reorients every volume to RAS
(``Orientationd``) and resizes it to ``128 x 128 x 32`` (``Resized``, linear interpolation with
``align_corners=False``). The 32 slices the model scores therefore run inferior to superior along
whichever axis of the file points (mostly) superior-inferior, in that direction, whatever the file's
own slice order is (a DICOM series stored head first, a NIfTI with a flipped ``z`` axis, ...).

:func:`slice_axis_of` finds that axis of the file (its index in SimpleITK's ``(i, j, k)`` order, the
order of the arrays read by :class:`~unimedi_monai.data.readers.SimpleITKReader`; ``2`` for an axial
CT) and whether ``Orientationd`` flips it, exactly as MONAI does (``nibabel.io_orientation`` then
``ornt_transform`` to the target axis codes). :func:`grid_to_original` then gives every original
slice the score of its position on the resampled grid: with ``n`` original slices and ``T`` grid
slices, original slice ``s`` (``r = n - 1 - s`` when flipped, else ``r = s``) sits at the grid
coordinate ``(r + 0.5) * T / n - 0.5``, where the grid scores are interpolated linearly (and held
constant beyond the first and last grid centres).
"""

from __future__ import annotations

from typing import Sequence

import nibabel as nib
import numpy as np

__all__ = ["slice_axis_of", "original_to_grid", "grid_to_original"]


def slice_axis_of(affine: np.ndarray | Sequence[Sequence[float]], axcodes: str = "RAS") -> tuple[int, bool]:
    """The file axis that becomes the last (slice) axis after ``Orientationd(axcodes)``, and whether it is flipped.

    Args:
        affine: the file's ``(4, 4)`` voxel-to-world affine in the space of ``axcodes`` (RAS as
            written by :class:`~unimedi_monai.data.readers.SimpleITKReader` and nibabel).
        axcodes: the orientation the pipeline reorients to (``"RAS"`` in :func:`ct_transforms`).

    Returns:
        ``(axis, flipped)``: the original axis (0, 1 or 2) and True when its index order is reversed.

    Example::

        slice_axis_of(np.diag([-1.0, -1.0, 1.0, 1.0]))  # (2, False): an LPS-stored axial CT
    """
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise ValueError(f"slice_axis_of expects a (4, 4) affine, got shape {a.shape}.")
    src = nib.orientations.io_orientation(a)
    dst = nib.orientations.axcodes2ornt(axcodes)
    ornt = nib.orientations.ornt_transform(src, dst)
    target = len(axcodes) - 1
    for axis, (new_axis, flip) in enumerate(ornt):
        if int(new_axis) == target:
            return axis, bool(flip < 0)
    raise ValueError(f"no axis of affine {a.tolist()} maps to the last axis of {axcodes!r}.")


def original_to_grid(num_original: int, num_grid: int, flipped: bool = False) -> np.ndarray:
    """Continuous grid coordinate of each original slice, ``(num_original,)``.

    Args:
        num_original: slices along the file's slice axis.
        num_grid: slices of the resampled grid (32).
        flipped: the reorientation reverses the slice order.
    """
    if num_original < 1 or num_grid < 1:
        raise ValueError(f"slice counts must be >= 1, got num_original={num_original}, num_grid={num_grid}.")
    r = np.arange(num_original, dtype=np.float64)
    if flipped:
        r = num_original - 1 - r
    return (r + 0.5) * num_grid / num_original - 0.5


def grid_to_original(grid_scores: np.ndarray | Sequence[float], num_original: int, flipped: bool = False) -> np.ndarray:
    """Scores of the original slices from scores on the resampled grid.

    Args:
        grid_scores: ``(T,)`` scores of the resampled slices (inferior to superior).
        num_original: slices along the file's slice axis.
        flipped: the reorientation reverses the slice order (from :func:`slice_axis_of`).

    Returns:
        ``(num_original,)`` float64 scores, entry ``s`` for the file's slice ``s``.
    """
    g = np.asarray(grid_scores, dtype=np.float64).reshape(-1)
    if g.size == 0:
        raise ValueError("grid_scores is empty.")
    position = original_to_grid(num_original, g.size, flipped)
    return np.interp(position, np.arange(g.size, dtype=np.float64), g)
