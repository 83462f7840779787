"""Segmentation data: BCV / AMOS datalist adapters, label fractions, transforms, phantoms, organ tables, I/O."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import segmentation_pipeline

from unimedi_monai.data.fractions import fraction_count
from unimedi_monai.segmentation.datalists import load_segmentation_datalist
from unimedi_monai.segmentation.io import AtomicNibabelWriter, inference_items
from unimedi_monai.segmentation.organs import AMOS_ORGANS, BCV_ORGANS, TOTALSEGMENTATOR_TO_BCV, channel_def
from unimedi_monai.segmentation.phantoms import generate_organ_phantoms
from unimedi_monai.segmentation.remap_labels import RemapLabelsd

REPO = Path(__file__).resolve().parents[1]
SMALL = {"shape": (32, 32, 16), "spacing": (1.5, 1.5, 2.0)}


@pytest.fixture(scope="module")
def bcv_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bcv")
    generate_organ_phantoms(out, "bcv", n_train=10, n_val=2, **SMALL)
    return out


def test_organ_tables_match_bundle_metadata():
    assert len(BCV_ORGANS) == 13 and len(AMOS_ORGANS) == 15
    for bundle, dataset, channels in (("bcv_segmentation", "bcv", 14), ("amos_segmentation", "amos", 16)):
        meta = json.loads((REPO / "bundles" / bundle / "configs" / "metadata.json").read_text())
        pred = meta["network_data_format"]["outputs"]["pred"]
        assert pred["num_channels"] == channels
        assert pred["channel_def"] == channel_def(dataset)
    assert TOTALSEGMENTATOR_TO_BCV[5] == 6 and TOTALSEGMENTATOR_TO_BCV[15] == 5 and len(TOTALSEGMENTATOR_TO_BCV) == 13


def test_bcv_datalist_and_label_fractions(bcv_dir):
    full = load_segmentation_datalist(bcv_dir, "bcv")
    assert len(full["training"]) == 10 and len(full["validation"]) == 2
    assert all(Path(item["image"]).is_absolute() and Path(item["label"]).is_file() for item in full["training"])
    for fraction in (0.2, 0.4, 1.0):
        sub = load_segmentation_datalist(bcv_dir, "bcv", label_fraction=fraction, seed=0)
        assert len(sub["training"]) == fraction_count(10, fraction)
        assert sub["validation"] == full["validation"]  # validation is never cut
        assert all(item in full["training"] for item in sub["training"])
        assert sub == load_segmentation_datalist(bcv_dir, "bcv", label_fraction=fraction, seed=0)  # fixed seed
    draws = {
        tuple(i["image"] for i in load_segmentation_datalist(bcv_dir, "bcv", label_fraction=0.2, seed=s)["training"])
        for s in range(6)
    }
    assert len(draws) > 1  # the seed matters


def test_amos_datalist_keeps_ct_cases(tmp_path):
    generate_organ_phantoms(tmp_path, "amos", n_train=2, n_val=1, **SMALL)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["labels"]["15"] == "prostate/uterus" and meta["modality"] == {"0": "CT"}
    # an MRI case (id > 500) in the training list is dropped
    for sub in ("imagesTr", "labelsTr"):
        shutil.copy(tmp_path / sub / "amos_0001.nii.gz", tmp_path / sub / "amos_0540.nii.gz")
    meta["training"].append({"image": "./imagesTr/amos_0540.nii.gz", "label": "./labelsTr/amos_0540.nii.gz"})
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    data = load_segmentation_datalist(tmp_path, "amos")
    assert [Path(i["image"]).name for i in data["training"]] == ["amos_0001.nii.gz", "amos_0002.nii.gz"]
    assert len(load_segmentation_datalist(tmp_path, "amos", ct_only=False)["training"]) == 3


def test_datalist_errors_name_file_and_entry(tmp_path, bcv_dir):
    with pytest.raises(FileNotFoundError, match="dataset_0.json"):
        load_segmentation_datalist(tmp_path, "bcv")
    bad = tmp_path / "dataset_0.json"
    bad.write_text(
        json.dumps({"training": [{"image": "imagesTr/img9.nii.gz", "label": "labelsTr/l9.nii.gz"}], "validation": []})
    )
    with pytest.raises(FileNotFoundError, match=r"training entry 0 'image' file .*img9.nii.gz' does not exist"):
        load_segmentation_datalist(tmp_path, "bcv")
    bad.write_text(json.dumps({"training": [{"image": "x.nii.gz"}]}))
    with pytest.raises(ValueError, match=r"training entry 0 must have 'image' and 'label'"):
        load_segmentation_datalist(tmp_path, "bcv")
    bad.write_text(json.dumps({"training": []}))
    with pytest.raises(ValueError, match="no 'validation' list"):
        load_segmentation_datalist(tmp_path, "bcv")
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_segmentation_datalist(tmp_path, "bcv")
    with pytest.raises(ValueError, match=r"data_pct / label fraction must be in \(0, 1\]"):
        load_segmentation_datalist(bcv_dir, "bcv", label_fraction=0.0)
    with pytest.raises(ValueError, match="unknown datalist layout"):
        load_segmentation_datalist(bcv_dir, "btcv")


def test_phantoms_are_reused_and_labelled(tmp_path):
    path = generate_organ_phantoms(tmp_path, "bcv", n_train=1, n_val=1, **SMALL)
    stamp = (tmp_path / "imagesTr" / "img0001.nii.gz").stat().st_mtime_ns
    assert generate_organ_phantoms(tmp_path, "bcv", n_train=1, n_val=1, **SMALL) == path
    assert (tmp_path / "imagesTr" / "img0001.nii.gz").stat().st_mtime_ns == stamp
    label = np.asarray(nib.load(tmp_path / "labelsTr" / "label0001.nii.gz").dataobj)
    image = nib.load(tmp_path / "imagesTr" / "img0001.nii.gz")
    assert label.shape == (32, 32, 16) and np.allclose(np.diag(image.affine)[:3], (1.5, 1.5, 2.0))
    assert set(np.unique(label)) == set(range(14))  # every organ present at this size
    hu = np.asarray(image.dataobj).astype(float)
    means = [hu[label == k].mean() for k in range(1, 14)]
    assert np.all(np.diff(means) > 0)  # each organ its own intensity


def test_train_transforms_crop_roi_and_check_labels(bcv_dir, tmp_path):
    item = load_segmentation_datalist(bcv_dir, "bcv")["training"][0]
    crops = segmentation_pipeline("train", roi_size=[32, 32, 8], num_classes=14, num_samples=3)(item)
    assert len(crops) == 3
    for crop in crops:
        assert crop["image"].shape == (1, 32, 32, 8) and crop["label"].shape == (1, 32, 32, 8)
        assert (
            -0.1 <= float(crop["image"].min()) and float(crop["image"].max()) <= 1.1
        )  # window 0..1 plus the random shift
    val = segmentation_pipeline("validate", roi_size=[64, 64, 8], num_classes=14)(item)
    assert val["image"].shape[1:3] == (64, 64)  # padded up to the ROI
    with pytest.raises(
        ValueError,
        match=r"label0001.nii.gz' \(key 'label'\) holds class ids 0..13, but the network predicts classes 0..9",
    ):
        segmentation_pipeline("validate", num_classes=10)(item)


def test_bundle_pipelines_are_the_listed_transforms_and_read_their_keys():
    """train#transforms is preprocessing then augmentation, validation the preprocessing alone, and the
    documented keys reach the transforms that use them."""
    from monai.transforms import RandCropByPosNegLabeld, RandFlipd, RandShiftIntensityd, ScaleIntensityRanged, Spacingd

    keys = {"flip_prob": 0.3, "shift_prob": 0.2, "shift_offset": 0.05, "num_samples": 4, "pixdim": [2.0, 2.0, 3.0]}
    train = segmentation_pipeline("train", hu_window=[-100.0, 200.0], **keys)
    val = segmentation_pipeline("validate", num_classes=14)
    infer = segmentation_pipeline("infer", pixdim=[2.0, 2.0, 3.0])
    assert [type(t) for t in train.transforms[: len(val.transforms)]] == [type(t) for t in val.transforms]
    augment = train.transforms[len(val.transforms) :]
    assert [type(t) for t in augment] == [RandCropByPosNegLabeld] + [RandFlipd] * 3 + [RandShiftIntensityd]
    assert augment[0].cropper.num_samples == 4 and [t.prob for t in augment[1:4]] == [0.3] * 3
    assert augment[4].prob == 0.2 and augment[4].shifter.offsets == (-0.05, 0.05)
    scale = next(t for t in train.transforms if isinstance(t, ScaleIntensityRanged)).scaler
    assert (scale.a_min, scale.a_max) == (-100.0, 200.0)
    for pipeline in (train, infer):
        spacing = next(t for t in pipeline.transforms if isinstance(t, Spacingd)).spacing_transform
        assert tuple(spacing.pixdim) == (2.0, 2.0, 3.0)
    for mode in ("train", "validate", "infer"):  # AMOS lists the same transforms
        amos = segmentation_pipeline(mode, bundle="amos_segmentation").transforms
        assert [type(t) for t in amos] == [type(t) for t in segmentation_pipeline(mode).transforms]


def test_remap_labels():
    seg = torch.tensor([[[[0, 1, 5, 15, 52, 99]]]], dtype=torch.float32)
    out = RemapLabelsd("label", TOTALSEGMENTATOR_TO_BCV)({"label": seg})["label"]
    assert out.flatten().tolist() == [0, 1, 6, 5, 8, 0]


def test_inference_items_and_atomic_writer(tmp_path):
    with pytest.raises(FileNotFoundError, match="config key 'datalist', entry 0: .*absent.nii.gz' does not exist"):
        inference_items(str(tmp_path / "absent.nii.gz"))
    with pytest.raises(ValueError, match="set config key 'datalist'"):
        inference_items(None)
    (tmp_path / "a.nii.gz").write_bytes(b"")
    (tmp_path / "list.txt").write_text("a.nii.gz\n\n")
    assert inference_items(str(tmp_path / "list.txt")) == [{"image": str((tmp_path / "a.nii.gz").resolve())}]
    writer = AtomicNibabelWriter()
    writer.set_data_array(torch.ones(4, 5, 6), channel_dim=None)
    writer.set_metadata(
        {"affine": np.diag([2.0, 2.0, 3.0, 1.0]), "original_affine": np.diag([2.0, 2.0, 3.0, 1.0])}, resample=False
    )
    writer.write(tmp_path / "out" / "seg.nii.gz")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["seg.nii.gz"]  # no temporary file left
    img = nib.load(tmp_path / "out" / "seg.nii.gz")
    assert img.shape == (4, 5, 6) and np.allclose(img.affine, np.diag([2.0, 2.0, 3.0, 1.0]))


def test_phantoms_generate_once_into_their_own_folder(tmp_path):
    out = tmp_path / "phantoms"
    first = generate_organ_phantoms(out, "bcv", n_train=1, n_val=1, **SMALL)
    other = generate_organ_phantoms(out, "bcv", n_train=2, n_val=1, **SMALL)  # other arguments: replaced
    assert other == first and len(json.loads(first.read_text())["training"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["phantoms"]  # no temporary sibling left
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("user file")
    with pytest.raises(FileExistsError, match="holds no phantom dataset_0.json"):
        generate_organ_phantoms(foreign, "bcv", n_train=1, n_val=1, **SMALL)
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]


def test_package_exports_resolve():
    import unimedi_monai.segmentation as seg

    assert all(getattr(seg, name) is not None for name in seg.__all__)
    with pytest.raises(AttributeError):
        seg.not_a_name  # noqa: B018
