# SPDX-License-Identifier: Apache-2.0
"""
Image readers that plug into :py:class:`monai.transforms.LoadImage`.

- :py:class:`SimpleITKReader`: 3D (and 2D) medical volumes through SimpleITK (NIfTI, NRRD, MHA/MHD,
  single DICOM files and DICOM series folders), with MONAI's conventions (array in ``(x, y, z)`` order,
  RAS affine), as a drop-in for :py:class:`monai.data.ITKReader` without the ``itk`` package.
- :py:class:`XRayPILReader`: PNG/JPEG/BMP X-rays kept in ``(rows, columns)`` order (no transpose), palette and
  grey-alpha images converted to grey.
- :py:class:`XRayDicomReader`: single-frame DICOM X-rays kept in ``(rows, columns)`` order, with the
  photometric interpretation (``MONOCHROME1``/``MONOCHROME2``) exposed in the metadata.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import SimpleITK as sitk
from monai.config import PathLike
from monai.data import ImageReader, PILReader, PydicomReader
from monai.data.image_reader import _copy_compatible_dict, _stack_images
from monai.data.utils import is_supported_format, orientation_ras_lps
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

from unimedi_monai.data.ct_resample import (
    RESAMPLE_MODES,
    check_resample_arguments,
    resample_array,
    resample_image,
    resampled_grid,
)
from unimedi_monai.data.integrity import check_nifti_file, count_nonfinite

__all__ = [
    "SIMPLEITK_SUFFIXES",
    "ORIGINAL_SPATIAL_SHAPE_KEY",
    "IMAGE_DIMENSION_KEY",
    "SimpleITKImage",
    "PHOTOMETRIC_KEY",
    "SimpleITKReader",
    "XRayPILReader",
    "XRayDicomReader",
    "convert_pil_to_grey_or_rgb",
]

#: file suffixes handled by :py:class:`SimpleITKReader` (directories are read as DICOM series).
SIMPLEITK_SUFFIXES: tuple[str, ...] = ("nii", "nii.gz", "nrrd", "nhdr", "mha", "mhd", "dcm")

#: metadata key holding the file's spatial shape when :py:class:`SimpleITKReader` resamples at read time.
ORIGINAL_SPATIAL_SHAPE_KEY = "original_spatial_shape"

#: metadata key holding the number of image dimensions of the file (a 4D series stays 4 even though its
#: affine and ``spatial_shape`` describe the first three), so that :py:class:`ReadImaged` can refuse it.
IMAGE_DIMENSION_KEY = "image_dimension"

#: metadata key under which the X-ray readers store the DICOM photometric interpretation.
PHOTOMETRIC_KEY = "PhotometricInterpretation"


@dataclass
class SimpleITKImage:
    """A ``SimpleITK.Image`` with the file name it came from and the header entries read with it."""

    image: Any
    filename: str = ""
    meta: dict = field(default_factory=dict)
    array: np.ndarray | None = None  # voxel values in (x, y, z) order overriding the image's, when set


def _first_line(err: BaseException) -> str:
    """Return the last non-empty line of an exception message (SimpleITK puts the reason there)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[-1] if lines else type(err).__name__


class SimpleITKReader(ImageReader):
    """
    Load medical images with SimpleITK, following the conventions of :py:class:`monai.data.ITKReader`.

    Supported inputs: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``), MetaImage (``.mha``, ``.mhd``),
    a single DICOM file (``.dcm``) and a DICOM series folder (a directory). For a folder holding several
    series, the series with the most files is read and a warning names the folder (or pass ``series_uid``).

    The returned array is in ``(x, y, z)`` order (SimpleITK's ``(z, y, x)`` transposed); multi-component images
    (e.g. RGB) keep their components in the last axis and set ``original_channel_dim=-1``, scalar images set
    ``original_channel_dim=nan`` (MONAI's "no channel"). The metadata hold ``affine`` and ``original_affine``
    (RAS by default: SimpleITK's LPS with the first two rows flipped), ``space``, ``spatial_shape``,
    ``spacing`` and ``filename_or_obj``.

    Example::

        from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd

        load = Compose([
            LoadImaged(keys="image", reader=SimpleITKReader()),
            EnsureChannelFirstd(keys="image"),
            Orientationd(keys="image", axcodes="RAS"),
        ])
        volume = load({"image": "ct.nii.gz"})["image"]  # (1, X, Y, Z) MetaTensor

    Args:
        affine_lps_to_ras: convert the affine from SimpleITK's LPS to RAS (consistent with ``NibabelReader``).
        series_uid: the DICOM series instance UID to read when a folder holds several series;
            ``""`` picks the series with the most files.
        series_meta: for DICOM series, copy the first slice's DICOM tags into the metadata.
        read_file_meta: for single files, copy the file's header entries (e.g. NIfTI header fields) into
            the metadata as strings.
        keep_nonfinite: ITK's NIfTI I/O silently replaces NaN/inf voxels of floating-point NIfTI files by 0.
            When True (default), the voxel values of floating-point NIfTI files are read with nibabel instead,
            so NaN/inf stay visible (e.g. to ``CheckFinited``); integer NIfTI files (the usual CT storage) and
            the other formats are not affected.
        spatial_size: resample every (3D, scalar) image at read time to this ``(X, Y, Z)`` size in the
            orientation ``axcodes``: the grid and affine of ``Orientationd(axcodes)`` + ``Resized(spatial_size)``
            (``align_corners=False``), sampled by SimpleITK straight from the stored voxels (see
            :py:mod:`unimedi_monai.data.ct_resample`), so the full-resolution volume never becomes a NumPy
            array. The metadata then hold the resampled grid's ``affine``, ``spacing`` and ``spatial_shape``,
            and the file's ``original_affine`` and ``original_spatial_shape``. A floating-point volume holding
            NaN/inf voxels raises :py:class:`ValueError` naming the file and the count (interpolation would spread
            them). ``None`` (default): no resampling.
        axcodes: the orientation of the resampled grid (``"RAS"``); used only with ``spatial_size``.
        resample_mode: ``"linear"`` (``float32`` output, as ``Resized(mode="trilinear")``) or ``"nearest"``
            (label maps, stored dtype); used only with ``spatial_size``.
    """

    def __init__(
        self,
        affine_lps_to_ras: bool = True,
        series_uid: str = "",
        series_meta: bool = False,
        read_file_meta: bool = True,
        keep_nonfinite: bool = True,
        spatial_size: Sequence[int] | None = None,
        axcodes: str = "RAS",
        resample_mode: str = "linear",
    ) -> None:
        super().__init__()
        self.affine_lps_to_ras = affine_lps_to_ras
        self.series_uid = series_uid
        self.series_meta = series_meta
        self.read_file_meta = read_file_meta
        self.keep_nonfinite = keep_nonfinite
        self.spatial_size: tuple[int, ...] | None = None
        if spatial_size is not None:
            self.spatial_size = check_resample_arguments(
                "SimpleITKReader", spatial_size, resample_mode, axcodes, "resample_mode"
            )
        elif resample_mode not in RESAMPLE_MODES or len(axcodes) != 3:
            check_resample_arguments("SimpleITKReader", (1, 1, 1), resample_mode, axcodes, "resample_mode")
        self.axcodes = axcodes
        self.resample_mode = resample_mode

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """
        Return whether every file in ``filename`` has a supported suffix or is a directory (DICOM series).

        Args:
            filename: file name or a sequence of file names.
        """
        for name in ensure_tuple(filename):
            if not (Path(f"{name}").is_dir() or is_supported_format(name, SIMPLEITK_SUFFIXES)):
                return False
        return True

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs: Any) -> Any:
        """
        Read one image (a ``SimpleITK.Image``) or a list of images from file names or DICOM folders.

        Args:
            data: a file/folder name or a sequence of them (stacked as channels by :py:meth:`get_data`).
            kwargs: unused, accepted for API compatibility with the other MONAI readers.

        Returns:
            a :py:class:`SimpleITKImage` (the ``SimpleITK.Image`` with its file name and header entries)
            for one input, otherwise a list of them.

        Raises:
            FileNotFoundError: when a path does not exist or a folder holds no DICOM series.
            ValueError: when SimpleITK cannot read a file (unknown format, corrupt or truncated data), or a
                NIfTI file is shorter than its header declares or its header is implausible.
        """
        names = tuple(f"{n}" for n in ensure_tuple(data))
        images = []
        for name in names:
            if not os.path.exists(name):
                raise FileNotFoundError(f"SimpleITKReader: image path does not exist: '{name}'; check the datalist.")
            try:
                if os.path.isdir(name):
                    images.append(self._read_series(name))
                else:
                    images.append(self._read_file(name))
            except (FileNotFoundError, ValueError):
                raise
            except RuntimeError as e:  # SimpleITK reports every I/O failure as RuntimeError
                raise ValueError(
                    f"SimpleITKReader: cannot read '{name}' ({_first_line(e)}); "
                    "check that it is a valid, complete NIfTI/NRRD/MHA/DICOM file."
                ) from e
        return images if len(names) > 1 else images[0]

    def _read_file(self, name: str) -> SimpleITKImage:
        """Read a single image file, keeping its header entries when ``read_file_meta``.

        A NIfTI file is checked first (:func:`~unimedi_monai.data.integrity.check_nifti_file`): a truncated
        file or an implausible header is refused, naming the file, before SimpleITK (which zero-fills missing
        voxels) reads it.
        """
        if is_supported_format(name, ("nii", "nii.gz")):
            check_nifti_file(name)
        reader = sitk.ImageFileReader()
        reader.SetFileName(name)
        image = reader.Execute()
        meta = {}
        if self.read_file_meta:
            meta = {k: reader.GetMetaData(k) for k in reader.GetMetaDataKeys() if not k.startswith("ITK_")}
        array = None
        if (
            self.keep_nonfinite
            and is_supported_format(name, ("nii", "nii.gz"))
            and image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64)
        ):
            values = np.asanyarray(nib.load(name).dataobj)
            if values.shape == tuple(image.GetSize()):
                array = np.asarray(values, dtype=sitk.GetArrayViewFromImage(image).dtype)
        return SimpleITKImage(image=image, filename=name, meta=meta, array=array)

    def _read_series(self, folder: str) -> SimpleITKImage:
        """Read the DICOM series in ``folder`` (the requested UID, else the one with the most files)."""
        with os.scandir(folder) as entries:
            has_files = any(entry.is_file() for entry in entries)
        series_ids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder)) if has_files else []
        if not series_ids:
            raise FileNotFoundError(
                f"SimpleITKReader: no DICOM series found in folder '{folder}'; "
                "point the datalist at a folder of DICOM slices or at an image file."
            )
        files = {uid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid) for uid in series_ids}
        if self.series_uid:
            if self.series_uid not in files:
                raise ValueError(
                    f"SimpleITKReader: series '{self.series_uid}' not found in '{folder}'; "
                    f"available series: {sorted(files)}."
                )
            uid = self.series_uid
        else:
            uid = max(series_ids, key=lambda s: len(files[s]))
            if len(series_ids) > 1:
                warnings.warn(
                    f"SimpleITKReader: folder '{folder}' holds {len(series_ids)} DICOM series; reading '{uid}' "
                    f"({len(files[uid])} files), the one with the most files. Pass series_uid to choose another.",
                    stacklevel=3,
                )
        _check_slice_gaps(folder, files[uid])
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files[uid])
        if self.series_meta:
            reader.MetaDataDictionaryArrayUpdateOn()
            reader.LoadPrivateTagsOn()
        image = reader.Execute()
        meta = {}
        if self.series_meta:
            meta = {k: reader.GetMetaData(0, k) for k in reader.GetMetaDataKeys(0)}
        meta["series_uid"] = uid
        return SimpleITKImage(image=image, filename=folder, meta=meta)

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        """
        Extract the array and the metadata from one image or a list of them.

        Several images are stacked along a new first (channel) dimension and described by the first one's
        metadata, as in :py:class:`monai.data.ITKReader`.

        Args:
            img: a :py:class:`SimpleITKImage` or a list of them, as returned by :py:meth:`read`
                (plain ``SimpleITK.Image`` objects are accepted too).

        Returns:
            the image array (``(x, y[, z])`` or ``(x, y[, z], components)``) and its metadata dict.
        """
        arrays: list[np.ndarray] = []
        compatible_meta: dict = {}
        for item in img if isinstance(img, (list, tuple)) else [img]:
            if not isinstance(item, SimpleITKImage):
                item = SimpleITKImage(image=item)
            image, name = item.image, item.filename
            header: dict = dict(item.meta)
            header[MetaKeys.ORIGINAL_AFFINE] = self._get_affine(image)
            header[MetaKeys.SPACE] = SpaceKeys.RAS if self.affine_lps_to_ras else SpaceKeys.LPS
            header[MetaKeys.SPATIAL_SHAPE] = self._get_spatial_shape(image)
            header[IMAGE_DIMENSION_KEY] = int(image.GetDimension())
            if self.spatial_size is None:
                data = self._get_array_data(image) if item.array is None else item.array
                header["spacing"] = np.asarray(image.GetSpacing(), dtype=np.float64)
                header[MetaKeys.AFFINE] = header[MetaKeys.ORIGINAL_AFFINE].copy()
            else:
                data, affine = self._resample(item, header[MetaKeys.ORIGINAL_AFFINE], header[MetaKeys.SPATIAL_SHAPE])
                header[ORIGINAL_SPATIAL_SHAPE_KEY] = header[MetaKeys.SPATIAL_SHAPE]
                header[MetaKeys.SPATIAL_SHAPE] = np.asarray(self.spatial_size)
                header[MetaKeys.AFFINE] = affine
                header["spacing"] = np.linalg.norm(affine[:3, :3], axis=0)
            header[MetaKeys.ORIGINAL_CHANNEL_DIM] = (
                float("nan") if data.ndim == len(header[MetaKeys.SPATIAL_SHAPE]) else -1
            )
            if name:
                header["filename_or_obj"] = name
            arrays.append(data)
            _copy_compatible_dict(header, compatible_meta)
        return _stack_images(arrays, compatible_meta), compatible_meta

    def _resample(self, item: SimpleITKImage, affine: np.ndarray, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Resample one image to ``spatial_size`` in ``axcodes``; returns the array and the new grid's affine."""
        image = item.image
        size = tuple(image.GetSize())
        if image.GetDimension() < 3 or min(size) == 1:
            kind = f"{image.GetDimension()}D image" if image.GetDimension() < 3 else "volume of a single slice"
            raise ValueError(
                f"SimpleITKReader: '{item.filename}' is a {kind} (size {size}) where a 3D volume is expected; "
                "check the entry's modality and file."
            )
        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(
                f"SimpleITKReader: cannot resample '{item.filename}' to {self.spatial_size}: it is a "
                f"{image.GetDimension()}D image with {image.GetNumberOfComponentsPerPixel()} component(s); "
                "resampling at read time needs a 3D scalar volume (leave spatial_size unset)."
            )
        values = item.array if item.array is not None else sitk.GetArrayViewFromImage(image)
        if values.dtype.kind in "fc":
            # check before resampling: interpolation would spread a NaN/inf voxel over its neighbours
            bad = count_nonfinite(values)
            if bad:
                raise ValueError(
                    f"SimpleITKReader: image '{item.filename}' holds {bad} NaN/inf values; "
                    "repair the file or remove it from the datalist."
                )
        index_map, out_affine = resampled_grid(
            affine, shape, self.spatial_size, self.axcodes, lps=not self.affine_lps_to_ras
        )
        if item.array is not None:
            data = resample_array(item.array, index_map, self.spatial_size, self.resample_mode)
        else:
            data = resample_image(image, index_map, self.spatial_size, self.resample_mode)
        return data, out_affine

    @staticmethod
    def _spatial_rank(image: Any) -> int:
        """Spatial rank used for the affine: the image dimension clipped to 1..3 (4D images: time last)."""
        return max(min(image.GetDimension(), 3), 1)

    def _get_affine(self, image: Any) -> np.ndarray:
        """Build the ``(r+1, r+1)`` affine from direction, spacing and origin; RAS when ``affine_lps_to_ras``."""
        dim = image.GetDimension()
        sr = self._spatial_rank(image)
        direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dim, dim)[:sr, :sr]
        spacing = np.asarray(image.GetSpacing(), dtype=np.float64)[:sr]
        origin = np.asarray(image.GetOrigin(), dtype=np.float64)[:sr]
        affine = np.eye(sr + 1, dtype=np.float64)
        affine[:sr, :sr] = direction @ np.diag(spacing)
        affine[:sr, -1] = origin
        return orientation_ras_lps(affine) if self.affine_lps_to_ras else affine

    def _get_spatial_shape(self, image: Any) -> np.ndarray:
        """Return the spatial size in ``(x, y, z)`` order."""
        return np.asarray(image.GetSize()[: self._spatial_rank(image)])

    @staticmethod
    def _get_array_data(image: Any) -> np.ndarray:
        """Return the pixel array with SimpleITK's ``(z, y, x)`` axes reversed; components stay last.

        Scalar images are copied once, transposing, into a C-ordered ``(x, y, z)`` array (MONAI would otherwise
        make a second, transposing copy of a Fortran-ordered one when converting it to a tensor).
        """
        if image.GetNumberOfComponentsPerPixel() == 1:
            return np.ascontiguousarray(sitk.GetArrayViewFromImage(image).T)
        arr = sitk.GetArrayFromImage(image)  # a copy, (z, y, x, c)
        return np.moveaxis(arr.T, 0, -1)


def _check_slice_gaps(folder: str, names: Sequence[str]) -> None:
    """Warn, naming the folder, when the slice positions of a DICOM series are not evenly spaced (missing or
    repeated slices): SimpleITK stacks the files at the first spacing, so every slice beyond a gap lies at a
    wrong position."""
    if len(names) < 3:
        return
    positions = []
    for name in names:
        r = sitk.ImageFileReader()
        r.SetFileName(name)
        try:
            r.ReadImageInformation()
            pos = np.asarray([float(v) for v in r.GetMetaData("0020|0032").split("\\")], dtype=np.float64)
            cosines = np.asarray([float(v) for v in r.GetMetaData("0020|0037").split("\\")], dtype=np.float64)
        except (RuntimeError, ValueError):  # no position tags: nothing to check
            return
        positions.append(float(pos @ np.cross(cosines[:3], cosines[3:6])))
    steps = np.abs(np.diff(np.asarray(positions)))
    step = float(np.median(steps))
    if step <= 0:
        return
    gaps = int(np.sum(steps > 1.5 * step))
    repeats = int(np.sum(steps < 0.5 * step))
    if gaps or repeats:
        missing = int(round(float(np.sum(steps[steps > 1.5 * step])) / step)) - gaps
        warnings.warn(
            f"SimpleITKReader: DICOM series '{folder}' is not evenly spaced: {gaps} gap(s) (about {missing} missing "
            f"slice(s)) and {repeats} repeated position(s) in {len(names)} slices {step:g} mm apart; the volume is "
            "stacked as if evenly spaced, so positions beyond a gap are wrong. Re-export the complete series.",
            stacklevel=4,
        )


def convert_pil_to_grey_or_rgb(image: Any) -> Any:
    """
    Convert PIL modes that do not map to "grey" or "colour channels" directly: palette (``P``), 1-bit (``1``),
    grey+alpha (``LA``), CMYK and YCbCr. Grey (``L``, ``I;16``, ``I``, ``F``), ``RGB`` and ``RGBA`` pass through.

    Args:
        image: a ``PIL.Image.Image``.

    Returns:
        the converted image.
    """
    mode = image.mode
    if mode in ("1", "LA"):
        return image.convert("L")
    if mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if mode in ("CMYK", "YCbCr", "PA", "RGBX", "HSV", "LAB"):
        return image.convert("RGB")
    return image


class XRayPILReader(PILReader):
    """
    :py:class:`monai.data.PILReader` for X-rays: keeps the array in ``(rows, columns)`` order
    (``reverse_indexing=False``, so the first spatial dimension runs top to bottom, as in the picture)
    and converts palette/1-bit/grey-alpha/CMYK images with :py:func:`convert_pil_to_grey_or_rgb`.
    Grey images come out as ``(H, W)``, colour ones as ``(H, W, 3|4)``; 16-bit PNGs stay ``uint16``.

    Args:
        kwargs: passed to ``PIL.Image.open``.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(converter=convert_pil_to_grey_or_rgb, reverse_indexing=False, **kwargs)

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        """
        Extract the array and metadata, with ``spatial_shape`` reported as ``(H, W)`` to match the array.

        Args:
            img: a PIL image or a list of them.

        Returns:
            the ``(H, W[, C])`` array and its metadata dict.
        """
        data, meta = super().get_data(img)
        meta[MetaKeys.SPATIAL_SHAPE] = np.asarray(meta[MetaKeys.SPATIAL_SHAPE])[::-1].copy()
        return data, meta


class XRayDicomReader(PydicomReader):
    """
    :py:class:`monai.data.PydicomReader` for projection X-rays (CR/DX/DR): keeps the array in
    ``(rows, columns)`` order (``swap_ij=False``), does not warn when the patient-orientation tags are
    missing (usual for projection radiographs; the affine is then the identity) and records the photometric
    interpretation under ``meta["PhotometricInterpretation"]`` so that :py:class:`ScaleToUnitd` can invert
    ``MONOCHROME1`` images (where bright means low attenuation).

    Args:
        kwargs: passed to :py:class:`monai.data.PydicomReader` (``swap_ij`` is fixed to ``False``).
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("swap_ij", None)
        super().__init__(swap_ij=False, **kwargs)

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """
        Return whether every file in ``filename`` is ``.dcm``/``.dicom`` or a file with DICOM magic bytes.

        Args:
            filename: file name or a sequence of file names.
        """
        for name in ensure_tuple(filename):
            name = f"{name}"
            if is_supported_format(name, ("dcm", "dicom")):
                continue
            if not (os.path.isfile(name) and pydicom.misc.is_dicom(name)):
                return False
        return True

    def _get_meta_dict(self, img: Any) -> dict:
        """Add the photometric interpretation to PydicomReader's (pruned) metadata."""
        meta = super()._get_meta_dict(img)
        meta[PHOTOMETRIC_KEY] = str(getattr(img, "PhotometricInterpretation", "MONOCHROME2")).strip().upper()
        return meta

    def _get_affine(self, metadata: dict, lps_to_ras: bool = True) -> np.ndarray:
        """Identity when the patient-orientation tags are absent, else PydicomReader's affine."""
        if not ("00200037" in metadata and "00200032" in metadata):
            return np.eye(4)
        return super()._get_affine(metadata, lps_to_ras)
