# Copyright (c) unimedi-monai contributors
# Licensed under the Apache License, Version 2.0
"""Tests for the synthetic demo dataset generator (unimedi_monai.data.demo)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from unimedi_monai.data import demo
from unimedi_monai.data.demo import generate as demo_generate
from unimedi_monai.data.demo import generate_demo_dataset, make_report, synth_ct, synth_xray
from unimedi_monai.data.demo.plan import _plan_modality, _validation_patients
from unimedi_monai.data.slice_grid import lesion_slices_resampled

REPO_ROOT = Path(__file__).resolve().parents[1]
ITEM_KEYS = {"image", "report", "modality", "finding", "side", "zone", "size_mm", "patient_id"}
CT_KEYS = ITEM_KEYS | {"num_slices", "lesion_slices", "lesion_centre_voxel"}
LESION_WORDS = ("nodule", "mass", "consolidation", "effusion")


def _items(datalist_path: Path) -> list[dict]:
    datalist = json.loads(datalist_path.read_text())
    return datalist["training"] + datalist["validation"]


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _inner_body() -> np.ndarray:
    """In-plane ellipse safely inside the CT body (excludes the air around it)."""
    ii, jj = np.mgrid[0 : demo.CT_SHAPE[0], 0 : demo.CT_SHAPE[1]]
    return ((ii - 63.5) / 50.0) ** 2 + ((jj - 63.5) / 34.0) ** 2 < 1.0


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> Path:
    return generate_demo_dataset(tmp_path_factory.mktemp("demo") / "data", n_xray=12, n_ct=6, seed=7, progress=False)


def test_layout_keys_and_files(small_demo):
    root = small_demo.parent
    datalist = json.loads(small_demo.read_text())
    assert datalist["name"] == "unimedi-demo" and isinstance(datalist["description"], str)
    items = datalist["training"] + datalist["validation"]
    assert Counter(i["modality"] for i in items) == {"xray": 12, "ct": 6}
    assert datalist["numTraining"] == len(datalist["training"])
    assert datalist["numValidation"] == len(datalist["validation"])
    assert {i["finding"] for i in items if i["modality"] == "xray"} == set(demo.FINDINGS)
    assert sorted(p.name for p in root.iterdir()) == ["ct", "datalist.json", "demo_manifest.json", "reports", "xray"]
    for item in items:
        assert set(item) == (CT_KEYS if item["modality"] == "ct" else ITEM_KEYS)
        stem = Path(item["image"]).name.split(".")[0]
        assert item["report"] == f"reports/{stem}.txt" and (root / item["report"]).is_file()
        if item["finding"] == "normal":
            assert (item["side"], item["zone"], item["size_mm"]) == ("none", "none", 0.0)
        else:
            lo, hi = demo.SIZE_RANGES_MM[item["modality"]][item["finding"]]
            assert item["side"] in demo.SIDES and item["zone"] in demo.ZONES and lo <= item["size_mm"] <= hi
            assert item["finding"] != "effusion" or item["zone"] == "lower"
        if item["modality"] == "xray":
            assert re.fullmatch(r"xray/xr_\d{4}\.png", item["image"])
            with Image.open(root / item["image"]) as img:
                assert img.format == "PNG" and img.mode == "L" and img.size == (256, 256)
        else:
            assert re.fullmatch(r"ct/ct_\d{4}\.nii\.gz", item["image"])
            nii = nib.load(root / item["image"])
            assert nii.shape == (128, 128, 48) and nii.get_data_dtype() == np.int16
            assert nib.aff2axcodes(nii.affine) == ("R", "A", "S")
            np.testing.assert_allclose(nii.header.get_zooms(), (2.5, 2.5, 5.0))
            assert item["num_slices"] == 48
            assert item["lesion_slices"] == sorted(set(item["lesion_slices"]))
            assert all(0 <= k < 48 for k in item["lesion_slices"])
            if item["finding"] == "normal":
                assert item["lesion_slices"] == [] and item["lesion_centre_voxel"] is None
            else:
                assert item["lesion_centre_voxel"][2] in item["lesion_slices"]
            if item["finding"] == "nodule":
                assert 2 <= len(item["lesion_slices"]) <= 4


def test_ct_hu_ranges(small_demo):
    root = small_demo.parent
    for item in (i for i in _items(small_demo) if i["modality"] == "ct"):
        vol = np.asarray(nib.load(root / item["image"]).dataobj)
        assert vol.min() >= -1024 and vol.max() <= 3071
        assert -1010 < vol[:4, :4, :].mean() < -990  # air outside the body
        assert -880 < np.median(vol[(vol < -500) & _inner_body()[:, :, None]]) < -820  # lung cavities
        assert 650 < np.median(vol[62:66, 29:33, :]) < 750  # vertebral body
        assert 20 < np.median(vol[60:68, 85:95, :]) < 60  # mediastinal soft tissue


def test_ct_lesions_match_their_keys(small_demo):
    """The stated lung is denser exactly in ``lesion_slices``; centre side and z-third match the keys."""
    root = small_demo.parent
    inner = _inner_body()[:, :, None]
    checked = 0
    for item in (i for i in _items(small_demo) if i["modality"] == "ct"):
        vol = np.asarray(nib.load(root / item["image"]).dataobj).astype(np.float32)
        lung_slices = np.nonzero(((vol < -500) & inner).sum(axis=(0, 1)) > 20)[0]
        z0, z1 = int(lung_slices.min()), int(lung_slices.max())
        assert z0 < 8 and z1 > 40  # lungs span most of the z-range
        if item["finding"] == "normal":
            # mirror-symmetric anatomy: no dense voxel where the mirrored side is lung
            assert not ((vol > -700) & (vol[::-1] < -500) & inner).any()
            continue
        checked += 1
        half = np.zeros(vol.shape, dtype=bool)
        half[64:] = item["side"] == "right"  # RAS+: first axis points to the patient's right
        half[:64] = item["side"] == "left"
        region = half & inner & (vol[::-1] < -500)  # the stated lung, as seen in the healthy mirror image
        lesion = np.zeros(48, dtype=bool)
        lesion[item["lesion_slices"]] = True
        hot = ((vol > -700) & region).sum(axis=(0, 1))
        assert hot[lesion].sum() > 0 and hot[~lesion].sum() == 0
        in_lung = np.arange(48)[region.any(axis=(0, 1))]
        means = {k: vol[:, :, k][region[:, :, k]].mean() for k in in_lung}
        assert np.mean([means[k] for k in in_lung if lesion[k]]) > np.mean([means[k] for k in in_lung if not lesion[k]])
        i, _, k = item["lesion_centre_voxel"]
        assert (i > 63.5) == (item["side"] == "right")
        third = min(int(3 * (k + 0.5 - z0) / (z1 + 1 - z0)), 2)
        assert ("lower", "middle", "upper")[third] == item["zone"]
    assert checked >= 4


def test_xray_lesion_on_stated_image_side(small_demo):
    """Anatomy is mirror-symmetric, so image minus its mirror shows the lesion; patient's left = image right."""
    root = small_demo.parent
    for item in (i for i in _items(small_demo) if i["modality"] == "xray"):
        img = np.asarray(Image.open(root / item["image"]), dtype=np.int16)
        bright = (img - img[:, ::-1]) > 50
        image_right, image_left = int(bright[:, 128:].sum()), int(bright[:, :128].sum())
        if item["finding"] == "normal":
            assert image_right == image_left == 0
        elif item["side"] == "left":
            assert image_right >= 5 and image_left == 0
        else:
            assert image_left >= 5 and image_right == 0


@pytest.mark.parametrize("finding", ["nodule", "mass", "consolidation", "effusion"])
def test_synth_xray_places_lesion_in_side_and_zone(finding):
    lo, hi = demo.SIZE_RANGES_MM["xray"][finding]
    zones = ["lower"] if finding == "effusion" else list(demo.ZONES)
    for n, (side, zone, size) in enumerate((s, z, sz) for s in demo.SIDES for z in zones for sz in (lo, hi)):
        image, mask = synth_xray(finding, side, zone, size, np.random.default_rng(n))
        assert image.shape == (256, 256) and image.dtype == np.uint8 and mask.any()
        rows, cols = np.nonzero(mask)
        assert (cols.mean() > 127.5) == (side == "left")
        bright = image > 100  # dark lung pixels lie between bright body / mediastinum, below the body's top
        enclosed = (
            np.maximum.accumulate(bright, axis=1)
            & np.maximum.accumulate(bright[:, ::-1], axis=1)[:, ::-1]
            & np.maximum.accumulate(bright, axis=0)
        )
        lung_rows = np.nonzero(((image < 90) & enclosed & ~mask).sum(axis=1) > 40)[0]
        third = min(int(3 * (rows.mean() - lung_rows.min()) / (lung_rows.max() - lung_rows.min() + 1)), 2)
        assert demo.ZONES[third] == zone
        assert image[mask].mean() > image[:, ::-1][mask].mean() + 40  # clearly brighter than the mirror lung


def _otsu(image: np.ndarray) -> float:
    """Grey level that best splits ``image`` into two classes (Otsu)."""
    hist = np.bincount(image.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256)
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * levels)
    w1, m1 = w0[-1] - w0, m0[-1] - m0
    between = np.where((w0 > 0) & (w1 > 0), (m0 * w1 - m1 * w0) ** 2 / np.maximum(w0 * w1, 1.0), 0.0)
    return float(np.argmax(between))


@pytest.mark.parametrize("finding", ["nodule", "mass", "consolidation", "effusion"])
def test_patient_variation_xray_lesion_in_side_and_zone(finding):
    """With per-patient variation (framing, exposure, markers) the lesion is the only difference from the same
    patient's normal twin; it lies in the twin's dark lung field, on the stated side (patient's left = image
    right) and in the stated third of the lung field."""
    from unimedi_monai.data.demo.xray import XRAY_VARIATIONS, _xray_anatomy

    lo, hi = demo.SIZE_RANGES_MM["xray"][finding]
    zones = ["lower"] if finding == "effusion" else list(demo.ZONES)
    for n, (side, zone, size) in enumerate((s, z, sz) for s in demo.SIDES for z in zones for sz in (lo, hi)):
        image, mask = synth_xray(finding, side, zone, size, np.random.default_rng(n), "patient")
        twin, twin_mask = synth_xray("normal", "none", "none", 0, np.random.default_rng(n), "patient")
        assert image.shape == (256, 256) and image.dtype == np.uint8 and mask.any() and not twin_mask.any()
        changed = image.astype(np.int16) != twin
        rows, cols = np.nonzero(mask)
        near = (np.abs(np.nonzero(changed)[0][:, None] - rows[None]) <= 8) & (
            np.abs(np.nonzero(changed)[1][:, None] - cols[None]) <= 8
        )
        assert near.any(axis=1).all()  # nothing changed away from the lesion
        assert image[mask].mean() > twin[mask].mean() + 30  # clearly brighter than the same lung without it
        assert (twin[mask] < _otsu(twin)).mean() > 0.8  # inside the (dark) lung field
        assert (cols.mean() > 127.5) == (side == "left")
        anat = _xray_anatomy(np.random.default_rng(n).spawn(3)[0], XRAY_VARIATIONS["patient"])
        top, height = anat.lung_row - anat.lung_ry, 2.0 * anat.lung_ry
        third = min(int(3 * (anat.rows[mask].mean() - top) / height), 2)
        assert demo.ZONES[third] == zone


def test_synth_ct_sizes_and_validation():
    volume, mask = synth_ct("mass", "left", "middle", 50, np.random.default_rng(3))
    assert volume.shape == demo.CT_SHAPE and volume.dtype == np.int16
    extent_mm = (np.ptp(np.nonzero(mask)[2]) + 1) * demo.CT_SPACING_MM[2]
    assert 40 <= extent_mm <= 65
    _, small = synth_ct("nodule", "right", "lower", 6, np.random.default_rng(4))
    assert small.any(axis=(0, 1)).sum() == 2 and small.sum() < 30  # 6 mm spans two 5 mm slices
    normal, nothing = synth_ct("normal", "none", "none", 0, np.random.default_rng(5))
    assert not nothing.any()
    assert np.array_equal(normal, synth_ct("normal", "none", "none", 0, np.random.default_rng(5))[0])
    with pytest.raises(ValueError, match="zone must be 'lower'"):
        synth_ct("effusion", "left", "upper", 20, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"size_mm for a ct nodule must be in \[6, 20\]"):
        synth_ct("nodule", "left", "upper", 40, np.random.default_rng(0))
    with pytest.raises(ValueError, match="side='none'"):
        synth_xray("normal", "left", "none", 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="finding must be one of"):
        synth_xray("tumour", "left", "upper", 10, np.random.default_rng(0))


def test_reports_state_what_is_drawn(small_demo):
    root = small_demo.parent
    for item in _items(small_demo):
        text = (root / item["report"]).read_text()
        assert text.endswith("\n") and len(text.split()) < 60
        lower = text.lower()
        assert ("chest radiograph" in lower) if item["modality"] == "xray" else ("ct chest" in lower)
        if item["finding"] == "normal":
            assert not any(w in lower for w in LESION_WORDS) and " left " not in lower and " right " not in lower
            continue
        assert item["finding"] in lower and item["side"] in lower
        assert f"{round(item['size_mm'])} mm" in text
        other = "right" if item["side"] == "left" else "left"
        assert other not in lower
        zone_words = {"upper": ("upper",), "middle": ("middle", "mid "), "lower": ("lower", "base")}[item["zone"]]
        assert any(w in lower for w in zone_words)


def test_make_report_variety_and_placeholders():
    texts = [make_report("ct", "nodule", "right", "upper", 8.0, np.random.default_rng(s)) for s in range(200)]
    assert 0.1 < np.mean(["___" in t for t in texts]) < 0.45  # de-identification placeholders, sometimes
    assert len({t.replace("___", "") for t in texts}) >= 4
    assert any("an 8 mm" in t.lower() for t in texts) and not any(re.search(r"\ba 8 mm", t, re.I) for t in texts)
    assert all("right upper lobe" in t for t in texts)
    left_mid = make_report("xray", "mass", "left", "middle", 42, np.random.default_rng(0))
    assert "left mid zone" in left_mid and "42 mm" in left_mid
    with pytest.raises(ValueError, match="modality must be"):
        make_report("mri", "normal", "none", "none", 0, np.random.default_rng(0))


def test_split_by_patient_and_stratified(small_demo):
    datalist = json.loads(small_demo.read_text())
    train_pids = {i["patient_id"] for i in datalist["training"]}
    val_pids = {i["patient_id"] for i in datalist["validation"]}
    assert train_pids and val_pids and not train_pids & val_pids
    assert {i["modality"] for i in datalist["validation"]} == {"xray", "ct"}
    # default size (planning only, no rendering): validation holds several of each finding per modality
    master = np.random.default_rng(0)
    cases = _plan_modality("xray", 240, master) + _plan_modality("ct", 120, master)
    val = _validation_patients(cases, 0.2, master)
    counts = Counter((c.modality, c.finding) for c in cases if c.patient_id in val)
    assert all(counts[(m, f)] >= 3 for m in ("xray", "ct") for f in demo.FINDINGS)
    assert 0.15 < sum(counts.values()) / len(cases) < 0.25
    assert 0.17 < sum(c.finding == "normal" for c in cases) / len(cases) < 0.23
    assert len({c.patient_id for c in cases}) < len(cases)  # some patients have a follow-up study


def test_deterministic_and_seed_dependent(tmp_path):
    a = generate_demo_dataset(tmp_path / "a", n_xray=4, n_ct=2, seed=11, progress=False)
    b = generate_demo_dataset(tmp_path / "b", n_xray=4, n_ct=2, seed=11, progress=False)
    c = generate_demo_dataset(tmp_path / "c", n_xray=4, n_ct=2, seed=12, progress=False)
    tree_a, tree_b, tree_c = _tree(a.parent), _tree(b.parent), _tree(c.parent)
    assert tree_a == tree_b
    assert set(tree_a) == set(tree_c)
    assert tree_a["xray/xr_0000.png"] != tree_c["xray/xr_0000.png"]
    assert tree_a["datalist.json"] != tree_c["datalist.json"]


def test_idempotent_refusals_and_force(tmp_path):
    out = tmp_path / "demo"
    path = generate_demo_dataset(out, n_xray=3, n_ct=1, seed=1, progress=False)
    assert path == out.absolute() / "datalist.json"
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert generate_demo_dataset(out, n_xray=3, n_ct=1, seed=1, progress=False) == path
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == mtimes
    with pytest.raises(FileExistsError, match=r"generated with .*'seed': 1.*force=True"):
        generate_demo_dataset(out, n_xray=3, n_ct=1, seed=2, progress=False)
    assert json.loads((out / "demo_manifest.json").read_text())["arguments"]["seed"] == 1
    generate_demo_dataset(out, n_xray=3, n_ct=1, seed=2, force=True, progress=False)
    assert json.loads((out / "demo_manifest.json").read_text())["arguments"]["seed"] == 2
    assert len(list(out.rglob("*.png"))) == 3
    # a removed file makes the folder incomplete: refused, not silently reused
    (out / "xray" / "xr_0000.png").unlink()
    with pytest.raises(FileExistsError, match="missing"):
        generate_demo_dataset(out, n_xray=3, n_ct=1, seed=2, progress=False)


def test_outdated_demo_is_regenerated_and_future_one_refused(tmp_path):
    """A demo this generator wrote with an older format is drawn again (it is our own output); a newer or unknown
    format is refused with the version named, since this code cannot know what it holds."""
    out = tmp_path / "demo"
    generate_demo_dataset(out, n_xray=2, n_ct=1, seed=3, progress=False)
    current = _tree(out)
    manifest_path = out / "demo_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = demo.FORMAT_VERSION - 1
    manifest_path.write_text(json.dumps(manifest))
    (out / "xray" / "xr_0000.png").write_bytes(b"stale")
    generate_demo_dataset(out, n_xray=2, n_ct=1, seed=3, progress=False)
    assert _tree(out) == current
    manifest["format_version"] = demo.FORMAT_VERSION + 1
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(FileExistsError, match=f"format version {demo.FORMAT_VERSION + 1}"):
        generate_demo_dataset(out, n_xray=2, n_ct=1, seed=3, progress=False)


def test_refuses_foreign_folder_and_accepts_empty(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"mine.*demo_manifest.json.*force=True"):
        generate_demo_dataset(foreign, n_xray=1, n_ct=0, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me" and len(list(foreign.iterdir())) == 1
    as_file = tmp_path / "file"
    as_file.write_text("x")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        generate_demo_dataset(as_file, n_xray=1, n_ct=0, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert generate_demo_dataset(empty, n_xray=1, n_ct=1, progress=False).is_file()


def test_build_folder_keeps_old_contents_on_failure_and_a_concurrent_copy(tmp_path):
    from unimedi_monai.data.demo.cache import build_folder

    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")

    def failing(folder: Path) -> None:
        (folder / "half.txt").write_text("half")
        raise RuntimeError("simulated failure")

    with pytest.raises(RuntimeError, match="simulated failure"):
        build_folder(out, failing, lambda folder: False, replace=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and [p.name for p in out.iterdir()] == ["old.txt"]
    # another writer finished the same result meanwhile: its copy is kept, ours discarded
    build_folder(
        out, lambda folder: (folder / "new.txt").write_text("new"), lambda folder: (folder / "old.txt").is_file()
    )
    assert [p.name for p in out.iterdir()] == ["old.txt"] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    build_folder(out, lambda folder: (folder / "new.txt").write_text("new"), lambda folder: False, replace=True)
    assert [p.name for p in out.iterdir()] == ["new.txt"] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_write_leaves_no_partial_dataset(tmp_path, monkeypatch):
    parent = tmp_path / "parent"
    generate_demo_dataset(parent / "ok", n_xray=2, n_ct=1, progress=False)
    assert [p.name for p in parent.iterdir()] == ["ok"]  # no temporary sibling left
    calls = []
    original = demo_generate._render_case

    def failing(root, case, xray_variation):
        calls.append(case.case_id)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated interruption")
        return original(root, case, xray_variation)

    monkeypatch.setattr(demo_generate, "_render_case", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_demo_dataset(parent / "broken", n_xray=4, n_ct=0, progress=False)
    assert sorted(p.name for p in parent.iterdir()) == ["ok"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_xray": -1}, "n_xray must be a non-negative integer"),
        ({"n_xray": 0, "n_ct": 0}, "at least 1"),
        ({"seed": -3}, "seed must be"),
        ({"val_fraction": 1.0}, r"val_fraction must be a number in \[0, 1\)"),
        ({"xray_variation": "real"}, r"xray_variation must be one of \['patient', 'template'\], got 'real'"),
    ],
)
def test_invalid_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_demo_dataset(tmp_path / "x", progress=False, **kwargs)
    assert not (tmp_path / "x").exists()


def test_lesion_slices_resampled():
    assert lesion_slices_resampled([0], 48, 32) == [0]
    assert lesion_slices_resampled([1], 48, 32) == [0, 1]
    assert lesion_slices_resampled([2], 48, 32) == [1]
    assert lesion_slices_resampled([3, 4, 5], 48) == [2, 3]
    assert lesion_slices_resampled([47], 48, 32) == [31]
    assert lesion_slices_resampled(list(range(48)), 48, 32) == list(range(32))
    assert lesion_slices_resampled([5, 3, 5], 32, 32) == [3, 5]  # identity, sorted unique
    assert lesion_slices_resampled([0, 15], 16, 32) == [0, 1, 30, 31]  # upsampling
    assert lesion_slices_resampled(np.array([10, 11]), 48, 16) == [3]
    assert lesion_slices_resampled([], 48) == []
    with pytest.raises(ValueError, match=r"lesion_slices\[1\] = 48 is not a slice index in \[0, 48\)"):
        lesion_slices_resampled([3, 48], 48)
    with pytest.raises(ValueError, match="must be >= 1"):
        lesion_slices_resampled([0], 0)


def test_resampled_slices_follow_resize_semantics():
    """A one-hot slice profile resized to T slices is non-zero exactly at the mapped target slices."""
    import torch

    interpolate = torch.nn.functional.interpolate
    for d, t, kwargs in (
        (48, 32, {"mode": "area"}),
        (40, 32, {"mode": "area"}),
        (20, 32, {"mode": "area"}),
        (48, 32, {"mode": "linear", "align_corners": False}),
    ):
        for z in range(d):
            profile = torch.zeros(1, 1, d, dtype=torch.float64)
            profile[..., z] = 1.0
            resized = interpolate(profile, size=t, **kwargs)[0, 0]
            assert torch.nonzero(resized > 1e-9).flatten().tolist() == lesion_slices_resampled([z], d, t), (d, t, z)


def test_cli(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "unimedi_monai.data.demo", str(tmp_path / "cli"), "--n-xray", "2", "--n-ct", "1"]
    done = subprocess.run([*cmd, "--seed", "3", "--quiet"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == tmp_path / "cli" / "datalist.json"
    assert len(_items(tmp_path / "cli" / "datalist.json")) == 3
    again = subprocess.run([*cmd, "--seed", "4"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr and "error:" in again.stderr
    varied = subprocess.run(
        [*cmd, "--seed", "3", "--xray-variation", "patient", "--force", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert varied.returncode == 0, varied.stderr
    manifest = json.loads((tmp_path / "cli" / "demo_manifest.json").read_text())
    assert manifest["arguments"]["xray_variation"] == "patient"
