# Copyright (c) unimedi-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Tests for unimedi_monai.data.readers and unimedi_monai.data.transforms."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import REPO_ROOT, SHARED_DATA, pretrain_pipeline
from monai.data import MetaTensor, NibabelReader
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd, Randomizable
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from unimedi_monai.data.dataset import build_pretrain_dataset
from unimedi_monai.data.readers import SimpleITKReader, XRayDicomReader, XRayPILReader
from unimedi_monai.data.transforms import (
    CheckFinited,
    CleanReportd,
    ReadImaged,
    ResizeShortestSided,
    ScaleToUnitd,
    ToGreyscaled,
)

pytestmark = pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader:UserWarning")

REAL_DICOM_SERIES = SHARED_DATA / "totalsegmentator" / "example_ct_dicom"


# ---------------------------------------------------------------------------------------------- fixtures


def _xray_pattern(size: int = 256) -> np.ndarray:
    """Grey background (20), a white square top-left (255), a mid-grey bar top-right (128)."""
    a = np.full((size, size), 20, dtype=np.uint8)
    q = size // 4
    a[:q, :q] = 255
    a[:q, 3 * q :] = 128
    return a


def _write_dicom_xray(path: Path, pixels: np.ndarray, photometric: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "DX", "anon"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def _write_dicom_series(folder: Path, volume_zyx: np.ndarray, series_uid: str, spacing=(0.8, 0.8, 2.5)) -> None:
    """Write a CT series with SimpleITK, one file per slice, with position/orientation tags."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(volume_zyx.shape[0]):
        sl = sitk.GetImageFromArray(volume_zyx[z].astype(np.int16))
        sl.SetSpacing(spacing[:2])
        origin = (-50.0, -60.0, 10.0 + z * spacing[2])
        tags = {
            "0008|0060": "CT",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{series_uid}.{z + 1}",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": series_uid,
            "0020|0013": str(z + 1),
            "0020|0032": "\\".join(f"{v:.4f}" for v in origin),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0028|0030": f"{spacing[1]}\\{spacing[0]}",
            "0018|0050": str(spacing[2]),
        }
        for k, v in tags.items():
            sl.SetMetaData(k, v)
        writer.SetFileName(str(folder / f"slice_{series_uid[-3:]}_{z:03d}.dcm"))
        writer.Execute(sl)


def _rotated_affine() -> np.ndarray:
    """A non-trivial RAS affine: rotation about z (30 deg) and x (10 deg), a flip, anisotropic spacing, offset."""
    cz, sz = math.cos(math.radians(30)), math.sin(math.radians(30))
    cx, sx = math.cos(math.radians(10)), math.sin(math.radians(10))
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag([-0.8, 1.2, 2.5])
    affine[:3, 3] = [12.5, -30.25, 41.0]
    return affine


# ----------------------------------------------------------------------------------------- SimpleITKReader


def test_simpleitk_reader_matches_nibabel(tmp_path):
    data = np.random.default_rng(0).integers(-1000, 2000, size=(10, 12, 7)).astype(np.int16)
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(data, _rotated_affine()), str(path))

    def pipeline(reader):
        return Compose(
            [
                LoadImaged(keys="image", reader=reader),
                EnsureChannelFirstd(keys="image"),
                Orientationd(keys="image", axcodes="RAS", labels=None),
            ]
        )

    ours = pipeline(SimpleITKReader())({"image": str(path)})["image"]
    ref = pipeline(NibabelReader())({"image": str(path)})["image"]
    assert ours.shape == ref.shape
    assert not np.array_equal(ref.affine.numpy(), _rotated_affine())  # orientation did reorder the axes
    np.testing.assert_array_equal(ours.numpy(), ref.numpy())
    np.testing.assert_allclose(ours.affine.numpy(), ref.affine.numpy(), atol=1e-5)
    np.testing.assert_allclose(ours.meta["original_affine"], _rotated_affine(), atol=1e-5)

    # raw reader output follows MONAI's conventions
    arr, meta = SimpleITKReader().get_data(SimpleITKReader().read(str(path)))
    np.testing.assert_array_equal(arr, data)  # (x, y, z), same as nibabel's array
    assert list(meta["spatial_shape"]) == [10, 12, 7]
    assert math.isnan(meta["original_channel_dim"])
    np.testing.assert_allclose(meta["spacing"], [0.8, 1.2, 2.5], atol=1e-5)
    assert meta["filename_or_obj"] == str(path)
    assert SimpleITKReader().verify_suffix(["a.nii.gz", "b.nrrd", "c.mha", "d.mhd", str(tmp_path)])
    assert not SimpleITKReader().verify_suffix("cxr.png")


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_simpleitk_reader_nrrd_mha(tmp_path, suffix):
    vol_zyx = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    img = sitk.GetImageFromArray(vol_zyx)
    img.SetSpacing((0.5, 0.7, 2.0))
    img.SetOrigin((10.0, 20.0, 30.0))
    path = tmp_path / f"vol{suffix}"
    sitk.WriteImage(img, str(path))
    reader = SimpleITKReader()
    arr, meta = reader.get_data(reader.read(str(path)))
    np.testing.assert_array_equal(arr, vol_zyx.T)  # (x, y, z)
    assert list(meta["spatial_shape"]) == [6, 5, 4]
    expected = np.diag([-0.5, -0.7, 2.0, 1.0])  # LPS identity direction -> RAS flips x and y
    expected[:3, 3] = [-10.0, -20.0, 30.0]
    np.testing.assert_allclose(meta["affine"], expected)
    np.testing.assert_allclose(meta["original_affine"], expected)
    assert meta["space"] == "RAS"

    out = pretrain_pipeline("ct", ct_size=[16, 16, 8], hu_window=[0.0, 119.0])({"image": str(path)})
    assert out["image"].shape == (1, 16, 16, 8)
    assert 0.0 <= float(out["image"].min()) < 0.1 and 0.9 < float(out["image"].max()) <= 1.0


def test_simpleitk_reader_dicom_series(tmp_path):
    vol = np.random.default_rng(1).integers(-500, 500, size=(5, 16, 12)).astype(np.int16)  # z, y, x
    _write_dicom_series(tmp_path / "one", vol, "1.2.826.0.1.3680043.2.1125.101")
    reader = SimpleITKReader()
    arr, meta = reader.get_data(reader.read(str(tmp_path / "one")))
    assert arr.shape == (12, 16, 5)
    np.testing.assert_array_equal(arr, vol.T)
    np.testing.assert_allclose(meta["spacing"], [0.8, 0.8, 2.5], atol=1e-4)
    np.testing.assert_allclose(meta["affine"][:3, 3], [50.0, 60.0, 10.0], atol=1e-4)  # LPS (-50,-60,10) -> RAS

    # two series in one folder: the one with most files is read, with a warning naming the folder
    mixed = tmp_path / "mixed"
    _write_dicom_series(mixed, vol, "1.2.826.0.1.3680043.2.1125.201")
    _write_dicom_series(mixed, vol[:2], "1.2.826.0.1.3680043.2.1125.202")
    with pytest.warns(UserWarning, match="holds 2 DICOM series"):
        arr2, meta2 = reader.get_data(reader.read(str(mixed)))
    assert arr2.shape == (12, 16, 5)
    assert meta2["series_uid"] == "1.2.826.0.1.3680043.2.1125.201"


@pytest.mark.skipif(not REAL_DICOM_SERIES.is_dir(), reason=f"real DICOM series not found at {REAL_DICOM_SERIES}")
def test_simpleitk_reader_real_dicom_series():
    load = Compose([LoadImaged(keys="image", reader=SimpleITKReader()), EnsureChannelFirstd(keys="image")])
    img = load({"image": str(REAL_DICOM_SERIES)})["image"]
    assert img.shape == (1, 512, 512, 20)
    assert float(img.min()) == pytest.approx(-1024.0)  # rescale intercept applied: HU
    np.testing.assert_allclose(img.meta["spacing"], [0.9766, 0.9766, 2.0], atol=1e-3)


def test_simpleitk_reader_errors_name_the_file(tmp_path):
    reader = SimpleITKReader()
    missing = tmp_path / "missing.nii.gz"
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        reader.read(str(missing))
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"this is not an image" * 10)
    with pytest.raises(ValueError, match="corrupt.nii.gz"):
        reader.read(str(corrupt))
    empty = tmp_path / "empty_series"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="empty_series"):
        reader.read(str(empty))
    tf = pretrain_pipeline("ct")
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        tf({"image": str(missing)})
    with pytest.raises(ValueError, match="corrupt.nii.gz"):
        tf({"image": str(corrupt)})


# ----------------------------------------------------------------------------------------------- X-rays


def _check_xray_output(img: torch.Tensor, bright: float = 1.0, mid: float = 0.0, background: float = -0.84) -> None:
    """Check shape, dtype and the pattern of :func:`_xray_pattern` after (x - 0.5) / 0.5 normalisation."""
    assert type(img) is torch.Tensor
    assert img.shape == (1, 224, 224) and img.dtype == torch.float32
    assert -1.0 - 1e-5 <= float(img.min()) and float(img.max()) <= 1.0 + 1e-5
    assert float(img[0, 5:50, 5:50].mean()) == pytest.approx(bright, abs=0.05)  # white square stays top-left
    assert float(img[0, 5:50, -50:-5].mean()) == pytest.approx(mid, abs=0.05)  # grey bar stays top-right
    assert float(img[0, -50:-5, 5:50].mean()) == pytest.approx(background, abs=0.05)  # not transposed


def test_xray_png_jpeg_formats(tmp_path):
    a = _xray_pattern()
    Image.fromarray(a).save(tmp_path / "grey8.png")
    Image.fromarray(np.stack([a, a, a], axis=-1)).save(tmp_path / "rgb.png")
    Image.fromarray(np.stack([a, a, a, np.full_like(a, 255)], axis=-1)).save(tmp_path / "rgba.png")
    Image.fromarray(a).save(tmp_path / "grey.jpg", quality=98)
    Image.fromarray(a).convert("P").save(tmp_path / "palette.png")
    tf = pretrain_pipeline("xray", image_size=224)
    bg = (20 / 255 - 0.5) / 0.5
    mid = (128 / 255 - 0.5) / 0.5
    for name in ("grey8.png", "rgb.png", "rgba.png", "grey.jpg", "palette.png"):
        out = tf({"image": str(tmp_path / name), "report": "x", "modality": "xray", "finding": "none"})
        _check_xray_output(out["image"], mid=mid, background=bg)
        assert out["modality"] == "xray" and out["finding"] == "none"  # passthrough keys untouched


def test_xray_png_16bit(tmp_path):
    a = _xray_pattern().astype(np.uint16) * 200  # 16-bit values up to 51000
    path = tmp_path / "grey16.png"
    Image.fromarray(a).save(path)
    assert Image.open(path).mode == "I;16"
    raw = ReadImaged(keys="image", readers=[XRayPILReader()], dtype=None)({"image": str(path)})["image"]
    assert raw.dtype == torch.int32 and int(raw.max()) == 51000  # widened, not truncated to 8 bits
    out = pretrain_pipeline("xray")({"image": str(path)})
    # percentile window: background (the 0.5th percentile) -> 0, white (the 99.5th) -> 1
    _check_xray_output(out["image"], mid=(128 - 20) / (255 - 20) * 2 - 1, background=-1.0)


def test_xray_non_square_keeps_rows(tmp_path):
    a = np.zeros((300, 200), dtype=np.uint8)  # portrait: 300 rows, 200 columns
    a[100:200, :100] = 255  # bright block on the left, vertically centred
    path = tmp_path / "portrait.png"
    Image.fromarray(a).save(path)
    img = pretrain_pipeline("xray", image_size=64)({"image": str(path)})["image"]
    assert img.shape == (1, 64, 64)
    # resized to 96x64 (rows x cols), centre-cropped rows 16..80: the block covers rows ~16..48, cols 0..32
    assert float(img[0, 20:44, 2:30].mean()) == pytest.approx(1.0, abs=1e-3)
    assert float(img[0, 20:44, 34:62].mean()) == pytest.approx(-1.0, abs=1e-3)


def test_xray_dicom_monochrome(tmp_path):
    a = _xray_pattern().astype(np.uint16) * 16  # 12-bit values
    _write_dicom_xray(tmp_path / "m2.dcm", a, "MONOCHROME2")
    _write_dicom_xray(tmp_path / "m1.dcm", 4095 - a, "MONOCHROME1")  # same picture, inverted storage
    raw = ReadImaged(keys="image", readers=[XRayDicomReader()], dtype=None)({"image": str(tmp_path / "m1.dcm")})
    assert raw["image"].meta["PhotometricInterpretation"] == "MONOCHROME1"
    assert raw["image"].shape == (256, 256)  # rows, columns
    tf = pretrain_pipeline("xray")
    mid = (128 - 20) / (255 - 20) * 2 - 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "orientation tags missing" warning for X-rays
        out2 = tf({"image": str(tmp_path / "m2.dcm")})["image"]
        out1 = tf({"image": str(tmp_path / "m1.dcm")})["image"]
    _check_xray_output(out2, mid=mid, background=-1.0)
    _check_xray_output(out1, mid=mid, background=-1.0)
    torch.testing.assert_close(out1, out2, atol=1e-4, rtol=0)


def test_xray_train_augmentation_and_parts(tmp_path):
    from unimedi_monai.bundle import bundle_item

    path = tmp_path / "grey8.png"
    Image.fromarray(_xray_pattern()).save(path)
    tf = pretrain_pipeline("xray", train=True)
    tf.set_random_state(seed=0)
    outs = [tf({"image": str(path)})["image"] for _ in range(6)]
    assert all(o.shape == (1, 224, 224) and o.dtype == torch.float32 for o in outs)
    assert any(not torch.equal(outs[0], o) for o in outs[1:])  # augmentation does something
    config = REPO_ROOT / "bundles" / "pretrain" / "configs" / "train.yaml"
    det = bundle_item(config, "xray_preprocessing")
    rnd = bundle_item(config, "xray_augmentation")
    assert len(det) + len(rnd) == len(tf.transforms)
    assert not any(isinstance(t, Randomizable) for t in det)  # the cached part holds no random step
    assert isinstance(rnd[0], Randomizable)
    assert len(pretrain_pipeline("xray").transforms) == len(det)  # evaluation: the pre-processing alone


def test_xray_errors_name_the_file(tmp_path):
    tf = pretrain_pipeline("xray")
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        tf({"image": str(tmp_path / "nowhere.png")})
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="broken.png"):
        tf({"image": str(bad)})
    odd = tmp_path / "scan.tiff"
    odd.write_bytes(b"II*\x00")
    with pytest.raises(ValueError, match="scan.tiff"):
        tf({"image": str(odd)})


# ------------------------------------------------------------------------------------- transform units


def test_to_greyscale_luma_and_passthrough():
    rgb = torch.zeros(3, 2, 2, dtype=torch.uint8)
    rgb[0, 0, 0] = 255  # pure red
    rgb[1, 0, 1] = 255  # pure green
    rgb[2, 1, 0] = 255  # pure blue
    rgb[:, 1, 1] = 200  # grey
    out = ToGreyscaled(keys="image")({"image": rgb})["image"]
    assert out.shape == (1, 2, 2) and out.dtype == torch.uint8
    assert out[0].tolist() == [[76, 150], [29, 200]]
    rgba = torch.cat([rgb.float(), torch.full((1, 2, 2), 7.0)])
    torch.testing.assert_close(ToGreyscaled(keys="image")({"image": rgba})["image"][0, 0, 0], torch.tensor(76.245))
    grey = torch.rand(1, 4, 4)
    assert ToGreyscaled(keys="image")({"image": grey})["image"] is grey
    with pytest.raises(ValueError, match="2 channels"):
        ToGreyscaled(keys="image")({"image": torch.zeros(2, 4, 4)})


def test_scale_to_unit_rules():
    scale = ScaleToUnitd(keys="image")
    u8 = torch.tensor([[[0, 51, 102]]], dtype=torch.uint8)
    torch.testing.assert_close(scale({"image": u8})["image"], torch.tensor([[[0.0, 0.2, 0.4]]]))  # /255, no stretch
    ints = torch.arange(1000, dtype=torch.int32).view(1, 10, 100)
    out = scale({"image": ints})["image"]
    assert out.dtype == torch.float32 and float(out.min()) == 0.0 and float(out.max()) == 1.0
    assert float(out.flatten()[500]) == pytest.approx((500 - 4.995) / (994.005 - 4.995), abs=1e-4)
    floats = torch.tensor([[[-2.0, 0.0, 2.0]]])
    torch.testing.assert_close(scale({"image": floats})["image"], torch.tensor([[[0.0, 0.5, 1.0]]]))
    assert float(scale({"image": torch.full((1, 3, 3), 5.0)})["image"].abs().max()) == 0.0
    mono1 = MetaTensor(u8, meta={"PhotometricInterpretation": "MONOCHROME1"})
    torch.testing.assert_close(scale({"image": mono1})["image"].as_tensor(), torch.tensor([[[1.0, 0.8, 0.6]]]))
    with pytest.raises(ValueError, match="percentiles"):
        ScaleToUnitd(keys="image", percentiles=(50.0, 10.0))


def test_resize_shortest_side():
    img = torch.rand(1, 100, 50)
    out = ResizeShortestSided(keys="image", size=20)({"image": img})["image"]
    assert out.shape == (1, 40, 20)
    out = ResizeShortestSided(keys="image", size=80)({"image": torch.rand(1, 30, 40)})["image"]
    assert out.shape == (1, 80, 107)


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_check_finite_names_file(tmp_path, suffix):
    vol = np.zeros((8, 8, 4), dtype=np.float32)
    vol[2, 3, 1] = np.nan
    vol[4, 4, 2] = np.inf
    path = tmp_path / f"nan_volume{suffix}"
    if suffix == ".nii.gz":  # ITK's NIfTI I/O would zero these; SimpleITKReader keeps them visible
        nib.save(nib.Nifti1Image(vol, np.eye(4)), str(path))
    else:
        sitk.WriteImage(sitk.GetImageFromArray(np.ascontiguousarray(vol.T)), str(path))
    with pytest.raises(ValueError, match=rf"nan_volume{suffix}.*2 NaN/inf"):
        pretrain_pipeline("ct")({"image": str(path)})
    ok = CheckFinited(keys="image")({"image": torch.ones(1, 2, 2)})
    assert torch.equal(ok["image"], torch.ones(1, 2, 2))


def test_clean_report_transform():
    out = CleanReportd(keys="report")({"report": "  Small   nodule\n in ___ lobe. "})
    assert "___" not in out["report"] and "  " not in out["report"] and "\n" not in out["report"]
    assert out["report"].startswith("Small nodule")
    assert CleanReportd(keys="report", allow_empty=True)({"report": None})["report"] == ""
    with pytest.raises(ValueError, match=r"report of image 'a.png' \(key 'report'\) is empty"):
        CleanReportd(keys="report")({"report": None, "image": "a.png"})
    with pytest.raises(ValueError, match="empty after cleaning"):
        CleanReportd(keys="report")({"report": "  ___  "})
    with pytest.raises(TypeError, match="report"):
        CleanReportd(keys="report")({"report": 3})


# ----------------------------------------------------------------------------------------------- CT


def _write_ct_pattern(path: Path) -> None:
    """64x64x40 volume (x, y, z): x<32 is -2000 HU (below the window), x>=32 is 0 HU, a 2000 HU block."""
    vol = np.full((64, 64, 40), -2000, dtype=np.int16)
    vol[32:] = 0
    vol[40:56, 8:24, 10:30] = 2000
    nib.save(nib.Nifti1Image(vol, np.diag([1.5, 1.5, 3.0, 1.0])), str(path))


def test_ct_pipeline_window_and_shape(tmp_path):
    path = tmp_path / "ct.nii.gz"
    _write_ct_pattern(path)
    out = pretrain_pipeline("ct")({"image": str(path), "report": "Lung nodule.", "lesion_slices": [3, 4]})
    img = out["image"]
    assert type(img) is torch.Tensor and img.shape == (1, 128, 128, 32) and img.dtype == torch.float32
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
    assert float(img[0, :60].abs().max()) == pytest.approx(0.0, abs=1e-6)  # -2000 HU clipped to 0
    assert float(img[0, 68:76, 100:120, 2:6].mean()) == pytest.approx(0.5, abs=1e-4)  # 0 HU -> 0.5
    assert float(img[0, 84:108, 20:44, 10:20].mean()) == pytest.approx(1.0, abs=1e-4)  # 2000 HU clipped to 1
    assert out["lesion_slices"] == [3, 4]

    aug = pretrain_pipeline("ct", train=True)
    aug.set_random_state(seed=3)
    outs = [aug({"image": str(path)})["image"] for _ in range(4)]
    assert all(o.shape == (1, 128, 128, 32) for o in outs)
    assert any(not torch.allclose(o, img) for o in outs)


# ------------------------------------------------------------------------------------------- caching


def test_cached_epochs_are_identical(tmp_path):
    Image.fromarray(_xray_pattern(64)).save(tmp_path / "a.png")
    Image.fromarray(_xray_pattern(64)[::-1].copy()).save(tmp_path / "b.png")
    _write_ct_pattern(tmp_path / "ct.nii.gz")
    items = [
        {"image": str(tmp_path / "a.png"), "report": "a", "modality": "xray"},
        {"image": str(tmp_path / "ct.nii.gz"), "report": "c", "modality": "ct", "num_slices": 40},
        {"image": str(tmp_path / "b.png"), "report": "b", "modality": "xray"},
    ]
    xtf = pretrain_pipeline("xray", image_size=32)
    ctf = pretrain_pipeline("ct", ct_size=[16, 16, 8])
    for cache in ("memory", "disk"):
        ds = build_pretrain_dataset(items, xtf, ctf, cache=cache, cache_dir=str(tmp_path / "cache"), progress=False)
        first = [ds[i] for i in range(len(ds))]
        second = [ds[i] for i in range(len(ds))]
        for a, b in zip(first, second):
            assert torch.equal(a["image"], b["image"])
        assert [s["index"] for s in first] == [0, 1, 2]
        assert first[2]["num_slices"] == 40 and first[2]["image"].shape == (1, 16, 16, 8)
        assert not torch.equal(first[0]["image"], first[1]["image"])  # a.png and b.png differ
    assert len(list((tmp_path / "cache" / "xray").glob("*.pt"))) == 2
    assert len(list((tmp_path / "cache" / "ct").glob("*.pt"))) == 1
    # a fresh disk-cached dataset reads the same tensors back
    again = build_pretrain_dataset(items, xtf, ctf, cache="disk", cache_dir=str(tmp_path / "cache"))
    assert torch.equal(again[2]["image"], first[2]["image"])

    # with augmentation, the memory cache holds the deterministic prefix: epochs differ only by the random part
    aug = build_pretrain_dataset(items[:1], pretrain_pipeline("xray", train=True, image_size=32), None, progress=False)
    cached = aug.xray_dataset._cache[0]["image"]
    torch.testing.assert_close(cached, first[0]["image"])
