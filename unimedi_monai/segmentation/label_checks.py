# SPDX-License-Identifier: Apache-2.0
"""Checks of image / label-map pairs before training: :class:`CheckSameGridd` (one voxel grid) and
:class:`CheckLabelRanged` (class ids the network predicts), each raising one line naming the file."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from unimedi_monai.data.integrity import grid_mismatch
from unimedi_monai.data.meta import source_filename

__all__ = ["CheckLabelRanged", "CheckSameGridd"]


class CheckLabelRanged(MapTransform):
    """Raise a one-line ``ValueError`` naming the file when a label map holds ids outside ``0..num_classes-1``.

    Args:
        keys: label keys.
        num_classes: classes the network predicts, background included (None: no check).
        allow_missing_keys: don't raise if a key is missing.
    """

    def __init__(self, keys: KeysCollection, num_classes: int | None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.num_classes = None if num_classes is None else int(num_classes)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.num_classes is None:
            return d
        for key in self.key_iterator(d):
            label = torch.as_tensor(d[key])
            lo, hi = float(label.min()), float(label.max())
            fractional = label[label != label.round()]
            if fractional.numel():
                raise ValueError(
                    f"label map '{source_filename(d[key])}' (key '{key}') holds {fractional.numel()} "
                    f"non-integer values (e.g. {float(fractional[0]):g}): a label map holds integer class ids; "
                    "was it resampled with linear interpolation or saved as float? Re-export it with "
                    "nearest-neighbour resampling and an integer type."
                )
            if lo < 0 or hi > self.num_classes - 1:
                raise ValueError(
                    f"label map '{source_filename(d[key])}' (key '{key}') holds class ids {lo:g}..{hi:g}, "
                    f"but the network predicts classes 0..{self.num_classes - 1}; check the label file or the "
                    "bundle's organ list."
                )
        return d


class CheckSameGridd(MapTransform):
    """Refuse an image / label pair whose voxel grids differ: shape, spacing, origin or direction.

    A label map drawn on another grid (another resolution, a crop, a shifted origin) would be resampled
    silently with the image and teach the network wrong voxels. Use it right after reading, before any
    spatial transform. Tolerances: spacing 0.1 % (relative), direction cosines 1e-3, origin a tenth of the
    smallest voxel size.

    Args:
        keys: the image key first, then the keys that must share its grid (e.g. ``["image", "label"]``).
        allow_missing_keys: don't raise if a key is missing.
    """

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        keys = [k for k in self.key_iterator(d)]
        if len(keys) < 2:
            return d
        ref = d[keys[0]]
        for key in keys[1:]:
            other = d[key]
            problem = grid_mismatch(
                ref.meta.get("spatial_shape", ref.shape),
                ref.meta.get("affine"),
                other.meta.get("spatial_shape", other.shape),
                other.meta.get("affine"),
            )
            if problem:
                raise ValueError(
                    f"image '{source_filename(ref)}' and {key} '{source_filename(other)}' are not on the same "
                    f"voxel grid ({problem}); a {key} must be drawn on its image's grid: resample it to the image "
                    "or fix the datalist pair."
                )
        return d
