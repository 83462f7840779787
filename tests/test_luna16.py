"""LUNA16 annotations: world-to-voxel mapping against SimpleITK, CSV validation, case discovery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from unimedi_monai.data.adapters.luna16 import luna16_cases, read_luna16_annotations, world_to_voxel


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _image(size=(40, 36, 30), spacing=(0.7, 0.8, 2.5), origin=(-120.5, 33.0, -210.0), direction=None) -> sitk.Image:
    image = sitk.Image(list(size), sitk.sitkInt16)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(tuple(np.asarray(direction, dtype=float).reshape(-1)))
    return image


def test_world_to_voxel_matches_simpleitk_non_identity_direction():
    # an oblique, left-handed direction (rotation times a flip of the last axis)
    direction = _rotation(0.3, -0.5, 1.1) @ np.diag([1.0, 1.0, -1.0])
    image = _image(direction=direction)
    rng = np.random.default_rng(0)
    index = rng.uniform([0, 0, 0], [39, 35, 29], size=(200, 3))
    points = np.array([image.TransformContinuousIndexToPhysicalPoint(tuple(i)) for i in index])
    expected = np.array([image.TransformPhysicalPointToIndex(tuple(p)) for p in points])
    expected_continuous = np.array([image.TransformPhysicalPointToContinuousIndex(tuple(p)) for p in points])
    got = world_to_voxel(points, image.GetOrigin(), image.GetSpacing(), image.GetDirection())
    assert got.dtype == np.int64 and got.shape == (200, 3)
    np.testing.assert_array_equal(got, expected)
    cont = world_to_voxel(points, image.GetOrigin(), image.GetSpacing(), image.GetDirection(), round_index=False)
    np.testing.assert_allclose(cont, expected_continuous, atol=1e-6)
    # a single point gives a (3,) index
    single = world_to_voxel(points[0], image.GetOrigin(), image.GetSpacing(), np.asarray(direction))
    np.testing.assert_array_equal(single, expected[0])


def test_world_to_voxel_rejects_bad_spacing():
    with pytest.raises(ValueError, match="spacing must be positive"):
        world_to_voxel([0.0, 0.0, 0.0], (0, 0, 0), (1.0, 0.0, 1.0), np.eye(3))


def _write_luna(root: Path) -> dict[str, sitk.Image]:
    images = {
        "1.2.3.100": _image(direction=np.diag([1.0, -1.0, -1.0])),
        "1.2.3.200": _image(size=(32, 32, 50), spacing=(0.6, 0.6, 1.25), origin=(-150.0, -160.0, -300.0)),
    }
    for sub, (uid, image) in zip(("subset0", "subset3"), images.items()):
        (root / sub).mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(root / sub / f"{uid}.mhd"))
    return images


def test_luna16_cases_maps_nodules_and_filters(tmp_path):
    images = _write_luna(tmp_path)
    rows = []
    targets = {"1.2.3.100": [(10, 20, 7), (30, 5, 25)], "1.2.3.200": [(16, 16, 40)]}
    for uid, voxels in targets.items():
        for v in voxels:
            x, y, z = images[uid].TransformIndexToPhysicalPoint(v)
            rows.append(f"{uid},{x},{y},{z},6.5")
    x, y, z = images["1.2.3.200"].TransformIndexToPhysicalPoint((3, 3, 3))
    rows.append(f"1.2.3.200,{x},{y},{z},2.0")  # below 3 mm: ignored
    rows.append("1.2.3.999,0,0,0,10.0")  # its subset is not there: skipped
    (tmp_path / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n" + "\n".join(rows) + "\n")
    cases = luna16_cases(tmp_path)
    assert [c["id"] for c in cases] == ["1.2.3.100", "1.2.3.200"]
    assert cases[0]["nodules_voxel"] == [list(v) for v in targets["1.2.3.100"]]
    assert cases[1]["nodules_voxel"] == [[16, 16, 40]] and cases[1]["num_slices"] == 50
    assert cases[1]["image"].endswith("subset3/1.2.3.200.mhd")
    assert len(luna16_cases(tmp_path, min_diameter_mm=0.0)[1]["nodules_voxel"]) == 2
    with pytest.raises(ValueError, match="no CT under"):
        luna16_cases(tmp_path, min_diameter_mm=50.0)


def test_annotations_errors_name_file_and_row(tmp_path):
    bad = tmp_path / "annotations.csv"
    bad.write_text("seriesuid,coordX,coordY,coordZ\n1,0,0,0\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['diameter_mm'\]"):
        read_luna16_annotations(bad)
    bad.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n1,0,0,0,4\n2,abc,0,0,4\n")
    with pytest.raises(ValueError, match=r"annotations.csv: row 3: column 'coordX' is 'abc'"):
        read_luna16_annotations(bad)
    with pytest.raises(FileNotFoundError, match="set `annotations`"):
        read_luna16_annotations(tmp_path / "absent.csv")
    bad.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n1,0,0,0,4\n")
    with pytest.raises(FileNotFoundError, match="no LUNA16 images"):
        luna16_cases(tmp_path, annotations="annotations.csv")
