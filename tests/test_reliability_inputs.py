"""Inputs that used to pass silently: truncated NIfTI files and implausible headers (every reader path),
NaN/inf CTs in segmentation, image/label pairs on different grids, 4D or 2D "CTs", one-slice CTs,
DICOM series with missing slices, zero voxel sizes."""

from __future__ import annotations

import gzip
import logging
import struct
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import pretrain_pipeline, segmentation_pipeline, slice_selection_pipeline

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _ct(path: Path, shape=(40, 40, 24), affine=None, dtype=np.int16, values=None) -> Path:
    rng = np.random.default_rng(0)
    data = values if values is not None else rng.integers(-1000, 1000, size=shape).astype(dtype)
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 2.0, 1.0]) if affine is None else affine), path)
    return path


def _cut_in_half(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _huge_header(path: Path, shape=(1000, 1000, 400)) -> Path:
    """A 480-byte-ish ``.nii.gz`` whose header declares ``shape`` float32 voxels and holds none of them."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header.set_zooms((1.0, 1.0, 1.0))
    raw = header.binaryblock + b"\x00" * 4  # the 348-byte header and its 4-byte extension flag
    path.write_bytes(gzip.compress(raw))
    return path


def _readers():
    """Every reader path of the package that reads a CT: pre-training (read-time resampling), slice
    selection (full resolution), segmentation (training and inference)."""
    return {
        "pre-training": lambda p: pretrain_pipeline("ct", ct_size=[16, 16, 8])({"image": str(p)}),
        "slice selection": lambda p: slice_selection_pipeline(ct_size=[16, 16, 8])({"image": str(p)}),
        "segmentation inference": lambda p: segmentation_pipeline("infer", roi_size=[16, 16, 8])({"image": str(p)}),
        "segmentation training": lambda p: segmentation_pipeline("validate", roi_size=[16, 16, 8], num_classes=None)(
            {"image": str(p), "label": str(p)}
        ),
    }


@pytest.mark.parametrize("path_name", sorted(_readers()))
def test_truncated_nifti_is_refused_by_every_reader(tmp_path, path_name):
    read = _readers()[path_name]
    good = _ct(tmp_path / "good.nii.gz")
    read(good)  # the complete file reads
    cut = _cut_in_half(_ct(tmp_path / "cut.nii.gz"))
    with pytest.raises(
        ValueError,
        match=r"cut\.nii\.gz' is truncated: its header declares 40x40x24 voxels of int16 .* holds [\d,]+ bytes",
    ):
        read(cut)
    plain = _ct(tmp_path / "plain.nii")
    plain.write_bytes(plain.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"plain\.nii' is truncated"):
        read(plain)


def test_header_declaring_a_huge_volume_is_refused_before_reading(tmp_path, monkeypatch):
    from unimedi_monai.data.integrity import check_nifti_file

    path = _huge_header(tmp_path / "huge.nii.gz")
    assert path.stat().st_size < 600
    for _name, read in _readers().items():
        with pytest.raises(ValueError, match=r"huge\.nii\.gz' is truncated: its header declares 1000x1000x400 voxels"):
            read(path)
    monkeypatch.setenv("UNIMEDI_MAX_VOXELS", "1000000")
    with pytest.raises(
        ValueError,
        match=r"huge\.nii\.gz' declares 1000x1000x400 = 400,000,000 voxels, more than the limit of 1,000,000",
    ):
        check_nifti_file(path)


def test_gzip_trailer_is_not_trusted_when_it_disagrees(tmp_path):
    from unimedi_monai.data.integrity import check_nifti_file

    good = _ct(tmp_path / "good.nii.gz")
    info = check_nifti_file(good)
    assert info["shape"] == (40, 40, 24) and info["dtype"] == "int16"
    # a second gzip member appended: the trailer no longer gives the size, the stream is counted instead
    two = tmp_path / "two.nii.gz"
    raw = gzip.decompress(good.read_bytes())
    two.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    assert struct.unpack("<I", two.read_bytes()[-4:])[0] != len(raw)
    check_nifti_file(two)
    assert nib.load(two).get_fdata().shape == (40, 40, 24)


def test_zero_voxel_size_is_warned_about_with_the_file_name(tmp_path, caplog):
    from unimedi_monai.data.integrity import check_nifti_file

    path = _ct(tmp_path / "flat.nii.gz")
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[76 + 4 * 3 : 76 + 4 * 4] = struct.pack("<f", 0.0)  # pixdim[3] (nibabel would repair it when saving)
    path.write_bytes(gzip.compress(bytes(raw)))
    with caplog.at_level(logging.WARNING, logger="unimedi_monai.data.integrity"):
        check_nifti_file(path)
    assert any("flat.nii.gz" in r.getMessage() and "pixdim" in r.getMessage() for r in caplog.records)


def test_segmentation_refuses_nan_ct(tmp_path):
    values = np.random.default_rng(0).normal(0, 300, size=(40, 40, 24)).astype(np.float32)
    values[3, 4, 5] = np.nan
    values[10, 4, 5] = np.inf
    path = _ct(tmp_path / "nan.nii.gz", values=values)
    with pytest.raises(ValueError, match=r"nan\.nii\.gz' \(key 'image'\) holds 2 NaN/inf values"):
        segmentation_pipeline("infer", roi_size=[16, 16, 8])({"image": str(path)})
    label = _ct(tmp_path / "label.nii.gz", values=np.zeros((40, 40, 24), np.uint8))
    with pytest.raises(ValueError, match=r"holds 2 NaN/inf values"):
        segmentation_pipeline("validate", roi_size=[16, 16, 8], num_classes=None)(
            {"image": str(path), "label": str(label)}
        )


@pytest.mark.parametrize(
    ("label_affine", "label_shape", "problem"),
    [
        (np.diag([1.5, 1.5, 2.0, 1.0]), (40, 40, 20), r"shape \(40, 40, 24\) vs \(40, 40, 20\)"),
        (np.diag([3.0, 3.0, 2.0, 1.0]), (40, 40, 24), r"spacing"),
        (np.array([[1.5, 0, 0, 100.0], [0, 1.5, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]]), (40, 40, 24), r"origin .* mm"),
        (np.diag([-1.5, 1.5, 2.0, 1.0]), (40, 40, 24), r"direction|origin"),
    ],
    ids=["other shape", "other spacing", "shifted 100 mm", "flipped"],
)
def test_segmentation_training_refuses_a_label_on_another_grid(tmp_path, label_affine, label_shape, problem):
    image = _ct(tmp_path / "img0001.nii.gz")
    label = _ct(tmp_path / "label0001.nii.gz", affine=label_affine, values=np.zeros(label_shape, np.uint8))
    for mode in ("train", "validate"):
        with pytest.raises(
            ValueError,
            match=rf"image '.*img0001\.nii\.gz' and label '.*label0001\.nii\.gz' are not on the same voxel grid "
            rf"\({problem}",
        ):
            segmentation_pipeline(mode, roi_size=[16, 16, 8], num_classes=2)({"image": str(image), "label": str(label)})
    same = _ct(tmp_path / "label_ok.nii.gz", values=np.zeros((40, 40, 24), np.uint8))
    out = segmentation_pipeline("validate", roi_size=[16, 16, 8], num_classes=2)(
        {"image": str(image), "label": str(same)}
    )
    assert out["image"].shape == out["label"].shape


def test_grid_mismatch_tolerates_rounding():
    from unimedi_monai.data.integrity import grid_mismatch

    a = np.diag([1.5, 1.5, 2.0, 1.0])
    b = a.copy()
    b[0, 3] = 0.01  # well under a tenth of a voxel
    b[0, 0] = 1.5 * (1 + 1e-5)
    assert grid_mismatch((4, 4, 4), a, (4, 4, 4), b) is None
    b[0, 3] = 1.0
    assert "origin" in grid_mismatch((4, 4, 4), a, (4, 4, 4), b)


@pytest.mark.parametrize("shape", [(40, 40, 24, 3), (40, 40)], ids=["4D", "2D"])
def test_inference_readers_refuse_a_4d_or_2d_ct_naming_the_file(tmp_path, shape):
    path = _ct(tmp_path / "odd.nii.gz", values=np.zeros(shape, np.int16))
    for _name, read in _readers().items():
        with pytest.raises(ValueError, match=r"odd\.nii\.gz'.* is a \dD image"):
            read(path)


def test_one_slice_ct_is_refused_by_slice_selection(tmp_path):
    path = _ct(tmp_path / "one.nii.gz", values=np.zeros((40, 40, 1), np.int16))
    with pytest.raises(ValueError, match=r"one\.nii\.gz'.* volume of a single slice"):
        slice_selection_pipeline(ct_size=[16, 16, 8])({"image": str(path)})


def test_dicom_series_with_a_missing_slice_is_warned_about(tmp_path):
    from test_data_transforms import _write_dicom_series

    from unimedi_monai.data import SimpleITKReader

    vol = np.random.default_rng(1).integers(-500, 500, size=(8, 16, 12)).astype(np.int16)
    _write_dicom_series(tmp_path / "full", vol, "1.2.826.0.1.3680043.2.1125.301")
    reader = SimpleITKReader()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete series reads without a word
        reader.get_data(reader.read(str(tmp_path / "full")))
    gap = tmp_path / "gap"
    _write_dicom_series(gap, vol, "1.2.826.0.1.3680043.2.1125.302")
    sorted(gap.iterdir())[4].unlink()
    with pytest.warns(
        UserWarning, match=r"DICOM series '.*gap' is not evenly spaced: 1 gap\(s\) \(about 1 missing slice"
    ):
        reader.get_data(reader.read(str(gap)))


def test_empty_datalist_section_is_named(tmp_path):
    import json

    from unimedi_monai.data import load_datalist

    (tmp_path / "datalist.json").write_text(json.dumps({"training": [], "validation": []}))
    with pytest.raises(ValueError, match=r"datalist .*datalist\.json: section 'training' has no entries"):
        load_datalist(tmp_path, sections=["training"])
    assert load_datalist(tmp_path, sections=["validation"]) == {"validation": []}


# ---------------------------------------------------------------------------------------------- paths


def _png(path: Path, value: int = 100, size: int = 32) -> Path:
    from PIL import Image

    img = np.full((size, size), value, np.uint8)
    img[: size // 2] = 255 - value
    Image.fromarray(img).save(path)
    return path


def test_report_that_names_a_non_txt_file_is_refused(tmp_path):
    import json

    from unimedi_monai.data import load_datalist
    from unimedi_monai.slice_selection import read_query

    _png(tmp_path / "a.png")
    (tmp_path / "a.md").write_text("No acute findings.")
    (tmp_path / "datalist.json").write_text(
        json.dumps({"training": [{"image": "a.png", "report": "reports/a.md", "modality": "xray"}]})
    )
    with pytest.raises(
        ValueError,
        match=r"section 'training', entry 0: key 'report' is 'reports/a\.md', which looks like a file path but is "
        r"not a \.txt file",
    ):
        load_datalist(tmp_path, sections=["training"])
    with pytest.raises(ValueError, match=r"'/data/report\.rtf', which looks like a file path"):
        read_query("/data/report.rtf")
    assert read_query("Nodule in the right upper lobe.") == "Nodule in the right upper lobe."


def test_datalist_paths_leaving_dataset_dir_are_logged_or_refused(tmp_path, caplog):
    import json

    from unimedi_monai.data import load_datalist

    data = tmp_path / "data"
    data.mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    _png(outside / "o1.png")
    _png(outside / "o2.png")
    (data / "link.png").symlink_to(outside / "o2.png")
    _png(data / "in.png")
    rows = [
        {"image": "in.png", "report": "inside", "modality": "xray"},
        {"image": "../elsewhere/o1.png", "report": "dot-dot", "modality": "xray"},
        {"image": str(outside / "o1.png"), "report": "absolute", "modality": "xray"},
        {"image": "link.png", "report": "symlink", "modality": "xray"},
    ]
    (data / "datalist.json").write_text(json.dumps({"training": rows}))
    with caplog.at_level(logging.INFO, logger="unimedi_monai.data.datalist"):
        items = load_datalist(data, sections=["training"])["training"]
    assert len(items) == 4
    infos = [r.getMessage() for r in caplog.records if "outside dataset_dir" in r.getMessage()]
    assert sum("entry" in m for m in infos) == 3  # each one logged...
    assert any("3 paths lead outside dataset_dir" in m for m in infos)  # ...and counted
    with pytest.raises(
        ValueError,
        match=r"section 'training', entry 1, key 'image': .* outside dataset_dir .*allow_outside_dataset_dir is false",
    ):
        load_datalist(data, sections=["training"], allow_outside_dataset_dir=False)


# ---------------------------------------------------------------------------------------------- labels and classes


def test_fractional_label_values_are_named_as_such(tmp_path):
    image = _ct(tmp_path / "img.nii.gz")
    values = np.zeros((40, 40, 24), np.float32)
    values[10:20, 10:20, 5:10] = 1.5
    label = _ct(tmp_path / "lab.nii.gz", values=values)
    with pytest.raises(
        ValueError,
        match=r"lab\.nii\.gz' \(key 'label'\) holds \d+ non-integer values \(e\.g\. 1\.5\): a label map holds "
        r"integer class ids",
    ):
        segmentation_pipeline("validate", roi_size=[16, 16, 8], num_classes=3)(
            {"image": str(image), "label": str(label)}
        )


def test_duplicates_empty_classes_and_constant_images_are_warned_about(tmp_path, caplog):
    import json

    from unimedi_monai.classification.tasks import get_task, warn_empty_classes
    from unimedi_monai.data import load_datalist

    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    rows = [{"image": "a.png", "report": "r", "modality": "xray"}] * 2 + [
        {"image": "b.png", "report": "r", "modality": "xray"}
    ]
    (tmp_path / "datalist.json").write_text(
        json.dumps({"training": rows, "validation": [{"image": "b.png", "report": "r", "modality": "xray"}]})
    )
    with caplog.at_level(logging.WARNING):
        load_datalist(tmp_path)
    assert any(
        "1 images are listed twice within a section and 1 in two sections" in r.getMessage() for r in caplog.records
    )

    task = get_task("covidx", "3class")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        counts = warn_empty_classes(task, [{"label": 0}, {"label": 0}, {"label": 1}], "covidx data")
    assert counts == dict(zip(task.class_names, [2, 1, 0]))
    assert any("1 of 3 classes have no training image" in r.getMessage() for r in caplog.records)

    from PIL import Image

    Image.fromarray(np.full((64, 64), 7, np.uint8)).save(tmp_path / "flat.png")
    Image.fromarray(np.array([[9]], np.uint8)).save(tmp_path / "dot.png")
    caplog.clear()
    tf = pretrain_pipeline("xray", image_size=32)
    with caplog.at_level(logging.WARNING, logger="unimedi_monai.data.transforms"):
        tf({"image": str(tmp_path / "flat.png")})
        tf({"image": str(tmp_path / "dot.png")})
    messages = [r.getMessage() for r in caplog.records]
    assert any("flat.png' is constant (every pixel 7" in m for m in messages)
    assert any("dot.png' is only 1x1 pixels" in m for m in messages)
