"""Slice selection: index mapping back to the file's slices, readers, the network, JSON/PNG output, evaluation."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import slice_selection_pipeline
from PIL import Image
from torch import nn

from unimedi_monai.data.slice_grid import grid_to_original, slice_axis_of
from unimedi_monai.evaluation.slice_hits import poisson_binomial_tail, random_hit_probability
from unimedi_monai.slice_selection import (
    SliceSelectionNet,
    SliceSelector,
    evaluate_slice_selection,
    output_stem,
    read_query,
)


class SliceBrightness(nn.Module):
    """A stand-in scorer whose score is known: the mean intensity of each resampled slice."""

    mode = "attention"

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        return volume.mean(dim=(1, 2, 3))


def _volume_with_hot_slice(n: int, hot: int, shape=(40, 36)) -> np.ndarray:
    """``(n, y, x)`` SimpleITK-order HU array: air with a body, and slices hot-1..hot+1 bright."""
    arr = np.full((n, shape[1], shape[0]), -1000, dtype=np.int16)
    arr[:, 8:28, 8:32] = 0
    arr[max(0, hot - 1) : hot + 2, 8:28, 8:32] = 900
    arr[hot, 8:28, 8:32] = 1000
    return arr


def _sitk_volume(n: int, hot: int, direction=None) -> sitk.Image:
    image = sitk.GetImageFromArray(_volume_with_hot_slice(n, hot))
    image.SetSpacing((0.9, 0.9, 2.0))
    image.SetOrigin((-20.0, 15.0, 100.0))
    if direction is not None:
        image.SetDirection(tuple(float(v) for v in np.asarray(direction).reshape(-1)))
    return image


def _write_dicom_series(image: sitk.Image, folder: Path, head_first: bool) -> None:
    """One CT DICOM file per slice; ``head_first`` stores the most superior slice as instance 1."""
    folder.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    n = image.GetDepth()
    order = list(range(n))[::-1] if head_first else list(range(n))
    direction = image.GetDirection()
    for number, k in enumerate(order, start=1):
        piece = image[:, :, k]
        for tag, value in {
            "0008|0060": "CT",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": "1.2.826.0.1.3680043.2.1125.1.2",
            "0020|0013": str(number),
            "0020|0032": "\\".join(f"{v:.4f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
            "0020|0037": "\\".join(
                f"{v:.6f}"
                for v in direction[0:1]
                + direction[3:4]
                + direction[6:7]
                + direction[1:2]
                + direction[4:5]
                + direction[7:8]
            ),
            "0018|0050": "2.0",
        }.items():
            piece.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice_{number:03d}.dcm"))
        writer.Execute(piece)


@pytest.fixture(scope="module")
def selector() -> SliceSelector:
    return SliceSelector(SliceBrightness(), slice_selection_pipeline(), top_k=1)


# ----------------------------------------------------------------------------- mapping
def test_slice_axis_of_follows_monai_orientation():
    assert slice_axis_of(np.diag([1.0, 1.0, 1.0, 1.0])) == (2, False)
    assert slice_axis_of(np.diag([-1.0, -1.0, 1.0, 1.0])) == (2, False)  # LPS-stored axial
    assert slice_axis_of(np.diag([1.0, 1.0, -2.5, 1.0])) == (2, True)  # head-first slice order
    coronal = np.array([[1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1]])  # j runs inferior
    assert slice_axis_of(coronal) == (1, True)
    with pytest.raises(ValueError, match=r"\(4, 4\) affine"):
        slice_axis_of(np.eye(3))


def test_grid_to_original_identity_flip_and_resampling():
    grid = np.arange(32, dtype=float)
    np.testing.assert_allclose(grid_to_original(grid, 32), grid)
    np.testing.assert_allclose(grid_to_original(grid, 32, flipped=True), grid[::-1])
    # 64 -> 32: original slices 2t and 2t+1 lie at t -/+ 0.25 (align_corners=False), ends held
    mapped = grid_to_original(grid, 64)
    np.testing.assert_allclose(mapped[2:-2:2], np.arange(1, 31) - 0.25)
    np.testing.assert_allclose(mapped[[0, 1, -1]], [0.0, 0.25, 31.0])
    # the mapping inverts a linear resize: resample a ramp 50 -> 32 as MONAI does, map back
    ramp = torch.arange(50, dtype=torch.float32).view(1, 1, 50)
    resized = torch.nn.functional.interpolate(ramp, size=32, mode="linear", align_corners=False)[0, 0].numpy()
    back = grid_to_original(resized, 50)
    np.testing.assert_allclose(back[2:-2], np.arange(50)[2:-2], atol=1e-4)


# ----------------------------------------------------------------------------- selector on files
@pytest.mark.parametrize(
    "suffix, direction",
    [
        (".nii.gz", np.diag([1.0, 1.0, -1.0])),  # flipped slice order
        (".nrrd", None),
        (".mha", np.diag([-1.0, 1.0, -1.0])),
        (".mhd", None),  # .mhd + .raw
    ],
)
def test_hot_slice_found_in_file_numbering(tmp_path, selector, suffix, direction):
    n, hot = 50, 37
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(_sitk_volume(n, hot, direction), str(path))
    result = selector(path)
    assert result.num_slices == n and result.scores.shape == (n,) and result.grid_scores.shape == (32,)
    assert result.slice_axis == 2 and result.flipped == (direction is not None)
    assert result.top_k == [hot]
    # a flipped file puts the hot slice low on the RAS grid, an unflipped one high
    grid_hot = int(np.argmax(result.grid_scores))
    assert abs(grid_hot - ((n - 1 - hot) if result.flipped else hot) * 32 / n) <= 1.0


def test_dicom_series_both_storage_orders(tmp_path, selector):
    n, hot = 40, 9
    image = _sitk_volume(n, hot)
    for head_first in (False, True):
        folder = tmp_path / f"series_{head_first}"
        _write_dicom_series(image, folder, head_first)
        result = selector(folder)
        # the reader sorts the series by position: slice k of SimpleITK's index
        assert result.num_slices == n
        reread = sitk.GetArrayFromImage(sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))))
        expected = int(np.argmax(reread.mean(axis=(1, 2))))
        assert result.top_k == [expected]


def test_real_dicom_series(shared_data, selector, tmp_path):
    folder = shared_data / "totalsegmentator" / "example_ct_dicom"
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))
    result = selector(folder)
    assert result.num_slices == len(files) and result.slice_axis == 2
    # brightness scores mapped back follow the file's own slices
    reread = sitk.GetArrayFromImage(sitk.ReadImage(files)).astype(float)
    per_slice = np.clip(reread, -1000, 1000).mean(axis=(1, 2))
    assert np.corrcoef(per_slice, result.scores)[0, 1] > 0.9
    paths = result.save(tmp_path)
    assert Path(paths["png"]).name == "example_ct_dicom_slices.png"


def test_json_and_png_written(tmp_path):
    path = tmp_path / "case.nii.gz"
    sitk.WriteImage(_sitk_volume(45, 20), str(path))
    sel = SliceSelector(SliceBrightness(), slice_selection_pipeline(), top_k=None, top_fraction=0.2)
    result = sel(path)
    paths = result.save(tmp_path / "out")
    data = json.loads(Path(paths["json"]).read_text())
    assert data["k"] == 9 and len(data["top_k"]) == 9 and 20 in data["top_k"]
    assert data["top_k_by_score"][0] == 20 and sorted(data["top_k_by_score"]) == data["top_k"]
    assert len(data["scores"]) == 45 and len(data["grid_scores"]) == 32 and data["mode"] == "attention"
    png = Image.open(paths["png"])
    assert png.format == "PNG" and png.size[0] > 400
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["case_slices.json", "case_slices.png"]


def test_input_errors(tmp_path, selector):
    with pytest.raises(ValueError, match="set the config key `datalist`"):
        selector(None)
    with pytest.raises(FileNotFoundError, match="absent.nii.gz"):
        selector(tmp_path / "absent.nii.gz")
    with pytest.raises(ValueError, match="no Orientationd"):
        SliceSelector(SliceBrightness(), lambda d: d)
    with pytest.raises(ValueError, match="top_k must be a positive"):
        SliceSelector(SliceBrightness(), slice_selection_pipeline(), top_k=0)
    assert output_stem("/a/b/ct_01.nii.gz") == "ct_01" and output_stem("/a/series/") == "series"
    (tmp_path / "r.txt").write_text("Nodule in the\n right upper lobe. ")
    assert read_query(str(tmp_path / "r.txt")) == "Nodule in the right upper lobe."
    with pytest.raises(FileNotFoundError, match="set `report`"):
        read_query(str(tmp_path / "none.txt"))


# ----------------------------------------------------------------------------- network
def test_slice_selection_net_modes_and_trace(text_encoder):
    net = SliceSelectionNet(backbone="tiny", text_encoder=text_encoder).eval()
    volume = torch.rand(2, 1, 128, 128, 32)
    with torch.no_grad():
        scores = net(volume)
        assert scores.shape == (2, 32)
        _, reference = net.select_slices(volume)  # UniMedI's own attentive selection
        torch.testing.assert_close(scores, reference)
        traced = torch.jit.trace(net, volume[:1])
        torch.testing.assert_close(traced(volume[1:]), scores[1:], rtol=1e-4, atol=1e-6)
        net.mode, net.query = "text", "nodule in the right upper lobe"
        sims = net(volume)
        assert sims.shape == (2, 32) and float(sims.abs().max()) <= 1.0 + 1e-5
        # slice 5 of sample 1 embedded alone as a 2D image gives the same similarity
        emb, _ = net.encode_image(volume[1:, :, :, :, 5])
        text = net.encode_text([net.query])
        torch.testing.assert_close(sims[1, 5], (emb @ text.T)[0, 0], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="mode must be one of"):
        net.mode = "random"
    net.query = ""
    with pytest.raises(ValueError, match="config key `query`"):
        net(volume)


# ----------------------------------------------------------------------------- evaluation
def test_random_hit_probability_and_tail_exact():
    n, k, tol, centres = 12, 3, 1, [2, 9]
    near = {s for s in range(n) if any(abs(s - c) <= tol for c in centres)}
    combos = list(itertools.combinations(range(n), k))
    brute = sum(any(s in near for s in c) for c in combos) / len(combos)
    assert math.isclose(random_hit_probability(centres, n, k, tol), brute)
    probs = [0.2, 0.5, 0.7]
    brute_tail = sum(
        np.prod([p if o else 1 - p for p, o in zip(probs, outcome)])
        for outcome in itertools.product((0, 1), repeat=3)
        if sum(outcome) >= 2
    )
    assert math.isclose(poisson_binomial_tail(probs, 2), brute_tail)


def test_evaluate_counts_hits(tmp_path):
    cases = []
    for i, (hot, centre) in enumerate([(30, 31), (10, 40), (25, 22)]):
        path = tmp_path / f"c{i}.nii.gz"
        sitk.WriteImage(_sitk_volume(48, hot), str(path))
        cases.append({"id": f"c{i}", "image": str(path), "nodules_voxel": [[5, 5, centre]]})
    sel = SliceSelector(SliceBrightness(), slice_selection_pipeline(), top_k=1)
    metrics = evaluate_slice_selection(sel, cases, tmp_path / "eval", tolerance=3, num_plots=1, progress=False)
    assert metrics["num_cases"] == 3 and metrics["hits"] == 2  # |30-31| <= 3, |25-22| <= 3, |10-40| > 3
    assert math.isclose(metrics["accuracy"], 2 / 3)
    assert math.isclose(metrics["accuracy_random_expected"], 7 / 48)  # 7 slices within 3 of a centre
    per_case = json.loads((tmp_path / "eval" / "cases.json").read_text())["cases"]
    assert [c["hit"] for c in per_case] == [True, False, True] and per_case[1]["selected"] == [10]
    assert (tmp_path / "eval" / "slices" / "c0.png").is_file() and not (
        tmp_path / "eval" / "slices" / "c1.png"
    ).exists()
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["accuracy_random"] in (0.0, 1 / 3, 2 / 3, 1.0) and saved["tolerance"] == 3
    bad = [{"id": "x", "image": cases[0]["image"], "nodules_voxel": [[0, 0, 60]]}]
    with pytest.raises(ValueError, match="outside the image's 48 slices"):
        evaluate_slice_selection(sel, bad, tmp_path / "bad", progress=False)


def test_window_scores_only_its_slices(tmp_path, selector):
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(_sitk_volume(50, 37, np.diag([1.0, 1.0, -1.0])), str(path))
    result = selector(path, window=(10, 42))  # 32 slices: no resampling along z
    assert result.window == [10, 42] and result.top_k == [37]
    assert np.isnan(result.scores[:10]).all() and np.isnan(result.scores[42:]).all()
    assert np.isfinite(result.scores[10:42]).all()
    data = result.to_dict()
    assert data["scores"][9] is None and data["scores"][10] is not None and data["window"] == [10, 42]
    assert result.ranked()[0] == 37 and len(result.ranked()) == 32
    assert Path(result.save(tmp_path)["png"]).is_file()
    with pytest.raises(ValueError, match=r"slice window \(40, 60\) is not a range inside the file's 50 slices"):
        selector(path, window=lambda n, axis: (40, 60))


def test_evaluate_nodule_windows(tmp_path):
    cases = []
    for i, centre in enumerate([3, 24, 45]):
        path = tmp_path / f"w{i}.nii.gz"
        sitk.WriteImage(_sitk_volume(48, centre), str(path))
        cases.append({"id": f"w{i}", "image": str(path), "nodules_voxel": [[5, 5, centre]]})
    sel = SliceSelector(SliceBrightness(), slice_selection_pipeline(), top_k=None, top_fraction=0.2)
    metrics = evaluate_slice_selection(sel, cases, tmp_path / "eval", window_slices=32, num_plots=0, progress=False)
    records = json.loads((tmp_path / "eval" / "cases.json").read_text())["cases"]
    for record in records:
        start, stop = record["window"]
        assert stop - start == 32 and start <= record["centres"][0] < stop and record["k"] == 6
        assert all(start <= s < stop for s in record["selected"] + record["random_selected"])
        assert record["hit"]  # the bright slab is the nodule
    expected = np.mean([random_hit_probability(r["centres"], 32, 6, 3, r["window"][0]) for r in records])
    assert metrics["accuracy"] == 1.0 and math.isclose(metrics["accuracy_random_expected"], expected)
    assert metrics["window_slices"] == 32 and metrics["mean_scored_per_ct"] == 32.0
    evaluate_slice_selection(sel, cases, tmp_path / "again", window_slices=32, num_plots=0, progress=False)
    assert json.loads((tmp_path / "again" / "cases.json").read_text())["cases"] == records  # seeded
