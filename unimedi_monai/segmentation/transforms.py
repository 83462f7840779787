# SPDX-License-Identifier: Apache-2.0
"""MONAI transform pipelines of the organ segmentation bundles (training, validation, inference).

Deterministic part (cached by ``CacheDataset``): :class:`~unimedi_monai.data.transforms.ReadImaged`
with :class:`~unimedi_monai.data.SimpleITKReader` (NIfTI / NRRD / MHA / DICOM series folders; 3D
volumes only, truncated NIfTI files refused), :class:`~unimedi_monai.data.transforms.CheckFinited`
(NaN/inf CTs refused), for training and validation :class:`CheckSameGridd` (image and label on one
grid), ``EnsureChannelFirstd``, ``Orientationd("RAS")``, ``Spacingd(pixdim)`` (bilinear for the image,
nearest for the label), ``ScaleIntensityRanged`` (HU window -> 0..1, clipped), and for training and
validation :class:`CheckLabelRanged`, ``CropForegroundd`` (the body) and ``SpatialPadd`` to the ROI.
Random part (training): ``RandCropByPosNegLabeld`` (``num_samples`` ROI crops centred on organ /
background voxels with ratio ``pos:neg``), ``RandFlipd`` along each axis and ``RandShiftIntensityd``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    EnsureTyped,
    MapTransform,
    Orientationd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandShiftIntensityd,
    ScaleIntensityRanged,
    Spacingd,
    SpatialPadd,
)
from monai.utils import convert_to_tensor

from unimedi_monai.data.integrity import grid_mismatch
from unimedi_monai.data.intensity_transforms import CheckFinited
from unimedi_monai.data.meta import source_filename
from unimedi_monai.data.pipeline_compose import PipelineCompose
from unimedi_monai.data.read_image import ReadImaged
from unimedi_monai.data.readers import SimpleITKReader

__all__ = ["CheckLabelRanged", "CheckSameGridd", "RemapLabelsd", "segmentation_transforms"]

MODES = ("train", "validate", "infer")


class CheckLabelRanged(MapTransform):
    """Raise a one-line ``ValueError`` naming the file when a label map holds ids outside ``0..num_classes-1``.

    Args:
        keys: label keys.
        num_classes: classes the network predicts, background included.
    """

    def __init__(self, keys: KeysCollection, num_classes: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.num_classes = int(num_classes)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = torch.as_tensor(d[key])
            lo, hi = float(label.min()), float(label.max())
            fractional = label[label != label.round()]
            if fractional.numel():
                raise ValueError(
                    f"label map '{source_filename(d[key])}' (key '{key}') holds {fractional.numel()} non-integer values "
                    f"(e.g. {float(fractional[0]):g}): a label map holds integer class ids; was it resampled with linear "
                    "interpolation or saved as float? Re-export it with nearest-neighbour resampling and an integer type."
                )
            if lo < 0 or hi > self.num_classes - 1:
                raise ValueError(
                    f"label map '{source_filename(d[key])}' (key '{key}') holds class ids {lo:g}..{hi:g}, but the network predicts "
                    f"classes 0..{self.num_classes - 1}; check the label file or the bundle's organ list."
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
                    f"image '{source_filename(ref)}' and {key} '{source_filename(other)}' are not on the same voxel grid ({problem}); "
                    f"a {key} must be drawn on its image's grid: resample it to the image or fix the datalist pair."
                )
        return d


class RemapLabelsd(MapTransform):
    """Map label ids through ``mapping``; ids not in it become ``default`` (e.g. TotalSegmentator -> BCV ids).

    Args:
        keys: label keys.
        mapping: ``{source id: target id}``.
        default: the id of every unlisted source id.

    Example::

        from unimedi_monai.segmentation import TOTALSEGMENTATOR_TO_BCV
        RemapLabelsd("label", TOTALSEGMENTATOR_TO_BCV)({"label": seg})["label"]  # BCV ids 0..13
    """

    def __init__(
        self, keys: KeysCollection, mapping: Mapping[int, int], default: int = 0, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mapping = {int(k): int(v) for k, v in mapping.items()}
        self.default = int(default)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            plain = convert_to_tensor(label, track_meta=False)
            size = max(int(plain.max()) + 1, max(self.mapping) + 1)
            table = torch.full((size,), self.default, dtype=torch.int64)
            for src, dst in self.mapping.items():
                table[src] = dst
            values = table[plain.long()].to(plain.dtype)
            d[key] = (
                MetaTensor(values, meta=label.meta, applied_operations=label.applied_operations)
                if isinstance(label, MetaTensor)
                else values
            )
        return d


def _triple(value: Sequence[float] | float, name: str) -> tuple[float, float, float]:
    values = tuple(float(v) for v in (value if isinstance(value, (list, tuple)) else [value] * 3))
    if len(values) != 3 or min(values) <= 0:
        raise ValueError(f"segmentation_transforms: {name} must be 3 positive numbers, got {value}.")
    return values  # type: ignore[return-value]


def segmentation_transforms(
    mode: str = "train",
    pixdim: Sequence[float] = (1.5, 1.5, 2.0),
    hu_window: Sequence[float] = (-175.0, 250.0),
    roi_size: Sequence[int] = (128, 128, 32),
    num_classes: int | None = None,
    num_samples: int = 2,
    pos: float = 1.0,
    neg: float = 1.0,
    flip_prob: float = 0.1,
    shift_prob: float = 0.5,
    shift_offset: float = 0.1,
    label_map: Mapping[int, int] | None = None,
) -> Compose:
    """The pre-processing (and for training, augmentation) of CT + label map dictionaries.

    Args:
        mode: ``"train"`` (image + label, random ROI crops), ``"validate"`` (image + label, whole
            foreground, for sliding-window evaluation) or ``"infer"`` (image only, whole image; its
            spatial transforms are what ``Invertd`` undoes).
        pixdim: output voxel spacing in mm (x, y, z) after RAS reorientation.
        hu_window: ``(low, high)`` Hounsfield units mapped to 0..1 (values outside clipped).
        roi_size: the crop / sliding-window ROI (x, y, z); smaller images are padded to it.
        num_classes: with a label, check its ids are in ``0..num_classes-1`` (None: no check).
        num_samples: ROI crops per cached volume per epoch (training).
        pos: weight of organ-centred crops.
        neg: weight of background-centred crops.
        flip_prob: probability of a flip along each axis (training).
        shift_prob: probability of an intensity shift (training).
        shift_offset: maximum intensity shift, in window units (training).
        label_map: ``{file id: class id}`` applied to the label on loading, every other id becoming
            background (e.g. :data:`~unimedi_monai.segmentation.organs.TOTALSEGMENTATOR_TO_BCV`); None keeps the ids.

    Returns:
        a ``Compose`` (raising the failing transform's own one-line error, e.g. naming the file);
        deterministic transforms first, so ``CacheDataset`` caches up to the first random one.

    Example::

        train_tf = segmentation_transforms("train", pixdim=(1.5, 1.5, 2.0), roi_size=(128, 128, 32), num_classes=14)
        crops = train_tf({"image": "img0001.nii.gz", "label": "label0001.nii.gz"})  # list of 2 dicts
        crops[0]["image"].shape  # (1, 128, 128, 32)
    """
    if mode not in MODES:
        raise ValueError(f"segmentation_transforms: mode must be one of {MODES}, got {mode!r}.")
    spacing = _triple(pixdim, "pixdim")
    roi = tuple(int(r) for r in roi_size)
    if len(roi) != 3 or min(roi) < 1:
        raise ValueError(f"segmentation_transforms: roi_size must be 3 positive integers, got {roi_size}.")
    lo, hi = (float(v) for v in hu_window)
    if not lo < hi:
        raise ValueError(f"segmentation_transforms: hu_window must be (low, high) with low < high, got {hu_window}.")
    keys = ["image"] if mode == "infer" else ["image", "label"]
    modes = ["bilinear"] if mode == "infer" else ["bilinear", "nearest"]
    transforms: list = [
        ReadImaged(keys=keys, readers=[SimpleITKReader()], dtype=np.float32, spatial_ndim=3),
        CheckFinited(keys="image"),
        *([CheckSameGridd(keys=keys)] if mode != "infer" else []),
        *([RemapLabelsd(keys="label", mapping=label_map)] if label_map is not None and mode != "infer" else []),
        EnsureChannelFirstd(keys=keys),
        Orientationd(keys=keys, axcodes="RAS", labels=None),
        Spacingd(keys=keys, pixdim=spacing, mode=modes),
        ScaleIntensityRanged(keys="image", a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True),
    ]
    if mode != "infer":
        if num_classes is not None:
            transforms.append(CheckLabelRanged(keys="label", num_classes=num_classes))
        transforms += [
            CropForegroundd(keys=keys, source_key="image", allow_smaller=True),
            SpatialPadd(keys=keys, spatial_size=roi),
        ]
    transforms.append(EnsureTyped(keys=keys, dtype=torch.float32, track_meta=mode == "infer"))
    if mode == "train":
        transforms += [
            RandCropByPosNegLabeld(
                keys=keys,
                label_key="label",
                spatial_size=roi,
                pos=pos,
                neg=neg,
                num_samples=int(num_samples),
                image_key="image",
                image_threshold=0.0,
            ),
            RandFlipd(keys=keys, spatial_axis=[0], prob=flip_prob),
            RandFlipd(keys=keys, spatial_axis=[1], prob=flip_prob),
            RandFlipd(keys=keys, spatial_axis=[2], prob=flip_prob),
            RandShiftIntensityd(keys="image", offsets=shift_offset, prob=shift_prob),
        ]
    return PipelineCompose(transforms)
