# SPDX-License-Identifier: Apache-2.0
"""
The X-ray and CT pre-processing pipelines of UniMedI pre-training: :func:`xray_transforms`, :func:`ct_transforms`.

Each pipeline is a single :py:class:`monai.transforms.Compose` whose deterministic part comes first and whose
random augmentation (``train=True``) comes last, so :py:class:`monai.data.CacheDataset` and
:py:class:`monai.data.PersistentDataset` cache everything up to the first random transform. The two parts are
also available separately through ``part="deterministic" | "random"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import (
    CenterSpatialCropd,
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    Orientationd,
    RandAffined,
    RandScaleIntensityd,
    RandShiftIntensityd,
    Resized,
    ScaleIntensityRanged,
)
from monai.utils import ensure_tuple

from unimedi_monai.data.ct_resample import CT_RESAMPLERS
from unimedi_monai.data.intensity_transforms import CheckFinited, ScaleToUnitd, ToGreyscaled
from unimedi_monai.data.pipeline_compose import PipelineCompose
from unimedi_monai.data.read_image import ReadImaged
from unimedi_monai.data.readers import SimpleITKReader, XRayDicomReader, XRayPILReader
from unimedi_monai.data.report_transforms import CleanReportd
from unimedi_monai.data.resize_shortest_side import ResizeShortestSided

__all__ = ["PIPELINE_PARTS", "xray_transforms", "ct_transforms"]

#: valid values of the ``part`` argument of :py:func:`xray_transforms` and :py:func:`ct_transforms`.
PIPELINE_PARTS = ("all", "deterministic", "random")


def _check_part(part: str) -> None:
    if part not in PIPELINE_PARTS:
        raise ValueError(f"part must be one of {PIPELINE_PARTS}, got '{part}'.")


def _assemble(deterministic: list, random: list, part: str) -> PipelineCompose:
    if part == "deterministic":
        return PipelineCompose(deterministic)
    if part == "random":
        return PipelineCompose(random)
    return PipelineCompose(deterministic + random)


def xray_transforms(
    image_size: int = 224, train: bool = True, mean: float = 0.5, std: float = 0.5, part: str = "all"
) -> Compose:
    """
    Build the X-ray pipeline: ``{"image": path, "report": str, ...}`` -> ``image`` ``(1, image_size, image_size)``
    ``float32`` tensor, normalised as ``(x - mean) / std`` after scaling to ``[0, 1]``, and a cleaned ``report``.

    Deterministic part: :py:class:`ReadImaged` (PNG/JPEG/BMP via :py:class:`XRayPILReader`, DICOM via
    :py:class:`XRayDicomReader`, both keeping the picture's row order: first spatial dim = rows, top first),
    ``EnsureChannelFirstd``, :py:class:`CheckFinited`, :py:class:`ToGreyscaled`, :py:class:`ScaleToUnitd`,
    :py:class:`ResizeShortestSided` to ``image_size``, ``CenterSpatialCropd`` to ``image_size x image_size``,
    ``(x - mean) / std``, :py:class:`CleanReportd` (if a ``report`` key is present) and
    ``EnsureTyped(float32, track_meta=False)``.
    Random part (``train=True``): ``RandAffined`` (prob 0.5, rotation up to 5 degrees, scale +-10%,
    translation up to 5% of the size, border padding), then ``EnsureTyped`` again.

    Args:
        image_size: side of the square output image.
        train: append the random augmentation.
        mean: subtracted after scaling to ``[0, 1]``.
        std: divisor after subtracting ``mean``; must be positive.
        part: ``"all"`` (one Compose, random transforms last), ``"deterministic"`` or ``"random"``.

    Returns:
        a :py:class:`PipelineCompose` (a :py:class:`monai.transforms.Compose` that raises the failing transform's
        own error, e.g. a :py:class:`FileNotFoundError` or :py:class:`ValueError` naming the file).

    Example::

        tf = xray_transforms(image_size=224, train=False)
        out = tf({"image": "/data/cxr.png", "report": "No acute findings."})
        out["image"].shape  # torch.Size([1, 224, 224])
    """
    _check_part(part)
    if int(image_size) < 1:
        raise ValueError(f"xray_transforms: image_size must be a positive integer, got {image_size}.")
    if not std > 0:
        raise ValueError(f"xray_transforms: std must be positive, got {std}.")
    size = int(image_size)
    deterministic = [
        ReadImaged(keys="image", readers=[XRayPILReader(), XRayDicomReader()], dtype=None, spatial_ndim=2),
        EnsureChannelFirstd(keys="image"),
        CheckFinited(keys="image"),
        ToGreyscaled(keys="image"),
        ScaleToUnitd(keys="image"),
        ResizeShortestSided(keys="image", size=size),
        CenterSpatialCropd(keys="image", roi_size=(size, size)),
        ScaleIntensityRanged(keys="image", a_min=float(mean), a_max=float(mean) + float(std), b_min=0.0, b_max=1.0),
        CleanReportd(keys="report", allow_missing_keys=True),
        EnsureTyped(keys="image", data_type="tensor", dtype=torch.float32, track_meta=False),
    ]
    random: list = []
    if train:
        random = [
            RandAffined(
                keys="image",
                prob=0.5,
                rotate_range=(math.radians(5.0),),
                scale_range=(0.1, 0.1),
                translate_range=(0.05 * size, 0.05 * size),
                spatial_size=(size, size),
                mode="bilinear",
                padding_mode="border",
            ),
            EnsureTyped(keys="image", data_type="tensor", dtype=torch.float32, track_meta=False),
        ]
    return _assemble(deterministic, random, part)


def ct_transforms(
    spatial_size: Sequence[int] = (128, 128, 32),
    hu_window: tuple[float, float] = (-1000.0, 1000.0),
    train: bool = True,
    part: str = "all",
    resampler: str = "simpleitk",
) -> Compose:
    """
    Build the CT pipeline: ``{"image": path, "report": str, ...}`` -> ``image`` ``(1, *spatial_size)`` ``float32``
    tensor in ``[0, 1]`` (the HU window mapped linearly, values outside clipped), RAS-oriented, and a
    cleaned ``report``.

    Deterministic part (``resampler="simpleitk"``, the default): :py:class:`ReadImaged` with
    ``SimpleITKReader(spatial_size=spatial_size, axcodes="RAS")`` (NIfTI, NRRD, MHA/MHD, DICOM series folders;
    see :py:class:`~unimedi_monai.data.readers.SimpleITKReader`), which resamples each volume at read time to
    the RAS grid of ``Orientationd("RAS")`` + ``Resized(spatial_size)`` with SimpleITK's linear interpolation
    straight from the stored voxels (output affine: the resampled grid's; about 10x faster than the MONAI
    transforms on a 512x512x300 CT, with a fraction of the memory), ``EnsureChannelFirstd``,
    :py:class:`CheckFinited`, ``ScaleIntensityRanged(hu_window -> 0..1, clip=True)``, :py:class:`CleanReportd`
    (if a ``report`` key is present) and ``EnsureTyped(float32, track_meta=False)``.
    With ``resampler="monai"`` the volume is read as ``float32`` and goes through ``Orientationd("RAS")``,
    ``ScaleIntensityRanged`` and ``Resized(spatial_size, mode="trilinear")`` instead (the HU window is then
    clipped before, not after, the interpolation: values differ only next to voxels outside the window).
    Random part (``train=True``): ``RandScaleIntensityd`` (factor +-10%, prob 0.5) and ``RandShiftIntensityd``
    (offset +-0.05, prob 0.5), then ``EnsureTyped`` again.

    Args:
        spatial_size: output ``(x, y, z)`` size.
        hu_window: ``(low, high)`` Hounsfield units mapped to ``(0, 1)``.
        train: append the random augmentation.
        part: ``"all"`` (one Compose, random transforms last), ``"deterministic"`` or ``"random"``.
        resampler: ``"simpleitk"`` (one SimpleITK resampling pass, default) or ``"monai"`` (``Orientationd`` +
            ``Resized`` on the full-resolution float volume).

    Returns:
        a :py:class:`PipelineCompose` (a :py:class:`monai.transforms.Compose` that raises the failing transform's
        own error, e.g. a :py:class:`FileNotFoundError` or :py:class:`ValueError` naming the file).

    Example::

        tf = ct_transforms(train=False)
        out = tf({"image": "/data/ct.nii.gz", "report": "Nodule in the right upper lobe."})
        out["image"].shape  # torch.Size([1, 128, 128, 32])
    """
    _check_part(part)
    size = tuple(int(s) for s in ensure_tuple(spatial_size))
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"ct_transforms: spatial_size must be 3 positive integers, got {spatial_size}.")
    lo, hi = (float(v) for v in hu_window)
    if not lo < hi:
        raise ValueError(f"ct_transforms: hu_window must be (low, high) with low < high, got {hu_window}.")
    if resampler not in CT_RESAMPLERS:
        raise ValueError(f"ct_transforms: resampler must be one of {CT_RESAMPLERS}, got {resampler!r}.")
    window = ScaleIntensityRanged(keys="image", a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)
    if resampler == "simpleitk":
        spatial = [
            ReadImaged(
                keys="image",
                readers=[SimpleITKReader(spatial_size=size, axcodes="RAS")],
                dtype=np.float32,
                spatial_ndim=3,
            ),
            EnsureChannelFirstd(keys="image"),
            CheckFinited(keys="image"),
            window,
        ]
    else:
        spatial = [
            ReadImaged(keys="image", readers=[SimpleITKReader()], dtype=np.float32, spatial_ndim=3),
            EnsureChannelFirstd(keys="image"),
            CheckFinited(keys="image"),
            Orientationd(keys="image", axcodes="RAS", labels=None),
            window,
            Resized(keys="image", spatial_size=size, mode="trilinear"),
        ]
    deterministic = spatial + [
        CleanReportd(keys="report", allow_missing_keys=True),
        EnsureTyped(keys="image", data_type="tensor", dtype=torch.float32, track_meta=False),
    ]
    random: list = []
    if train:
        random = [
            RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
            RandShiftIntensityd(keys="image", offsets=0.05, prob=0.5),
            EnsureTyped(keys="image", data_type="tensor", dtype=torch.float32, track_meta=False),
        ]
    return _assemble(deterministic, random, part)
