# SPDX-License-Identifier: Apache-2.0
"""Map slices between a CT file's own slice numbering and the model's resampled slice grid.

One geometry, used by the pre-training evaluation (lesion slices of the demo CTs on the 32-slice
grid, :func:`lesion_slices_resampled`) and by the slice-selection tool (grid scores back on the
file's slices, :func:`grid_to_original`): a resize along the slice axis with ``align_corners=False``
(MONAI ``Resize``), where original slice ``z`` of ``n`` covers ``[z, z + 1)`` and grid slice ``t`` of
``T`` covers ``[t * n / T, (t + 1) * n / T)`` in original coordinates, so that the centre of original
slice ``z`` sits at the grid coordinate ``(z + 0.5) * T / n - 0.5``.

The CT pipelines (``ct_preprocessing`` of the pretrain bundle, ``preprocessing`` of the slice_selection
bundle) reorient every volume to RAS (``Orientationd``) and resize it to ``128 x 128 x 32`` (``Resized``,
linear interpolation with ``align_corners=False``). The 32 slices the model scores therefore run inferior
to superior along whichever axis of the file points (mostly) superior-inferior, in that direction,
whatever the file's own slice order is (a DICOM series stored head first, a NIfTI with a flipped ``z`` axis, ...).

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

from collections.abc import Sequence

import nibabel as nib
import numpy as np

__all__ = ["slice_axis_of", "original_to_grid", "grid_to_original", "lesion_slices_resampled"]


def slice_axis_of(affine: np.ndarray | Sequence[Sequence[float]], axcodes: str = "RAS") -> tuple[int, bool]:
    """The file axis that becomes the last (slice) axis after ``Orientationd(axcodes)``, and whether it is flipped.

    Args:
        affine: the file's ``(4, 4)`` voxel-to-world affine in the space of ``axcodes`` (RAS as
            written by :class:`~unimedi_monai.data.readers.SimpleITKReader` and nibabel).
        axcodes: the orientation the pipeline reorients to (``"RAS"`` in the bundles' CT pipelines).

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


def lesion_slices_resampled(lesion_slices: Sequence[int], num_slices: int, target_slices: int = 32) -> list[int]:
    """
    Map original slice indices to the slices of a volume linearly resampled along z.

    The resampling is MONAI ``Resize`` with ``align_corners=False`` semantics: original slice ``z``
    covers the coordinate range ``[z, z + 1)`` and target slice ``t`` covers
    ``[t * D / T, (t + 1) * D / T)`` in original coordinates (``D = num_slices``,
    ``T = target_slices``). A target slice is returned when its range overlaps the range of any
    lesion slice. Computed in exact integer arithmetic. This is exactly the set of target slices
    that receive weight from a lesion slice under ``Resize(mode="area")`` (MONAI's default); under
    ``mode="trilinear"`` it is the same for the demo's 48 -> 32 (and e.g. 40 -> 32, 64 -> 32), while
    other ratios may differ by one neighbouring slice of small weight.

    Example: ``D = 48, T = 32``: slice 0 -> [0], slice 1 -> [0, 1], slice 2 -> [1], slice 47 -> [31].

    Args:
        lesion_slices: original slice indices, each in ``[0, num_slices)``.
        num_slices: the original number of slices ``D`` (>= 1).
        target_slices: the resampled number of slices ``T`` (>= 1).

    Returns:
        sorted unique target slice indices (empty if ``lesion_slices`` is empty).

    Raises:
        ValueError: for non-positive slice counts or an index outside ``[0, num_slices)``.
    """
    num_slices, target_slices = int(num_slices), int(target_slices)
    if num_slices < 1 or target_slices < 1:
        raise ValueError(f"num_slices and target_slices must be >= 1, got {num_slices} and {target_slices}.")
    result: set[int] = set()
    for position, z in enumerate(lesion_slices):
        if int(z) != z or not 0 <= int(z) < num_slices:
            raise ValueError(
                f"lesion_slices[{position}] = {z!r} is not a slice index in [0, {num_slices}); "
                "pass original slice indices of the volume."
            )
        z = int(z)
        first = (z * target_slices) // num_slices  # smallest t with (t + 1) * D > z * T
        last = -(-((z + 1) * target_slices) // num_slices) - 1  # largest t with t * D < (z + 1) * T
        result.update(range(first, last + 1))
    return sorted(result)
