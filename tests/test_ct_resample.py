"""The one-pass SimpleITK resampling (resampled_grid + resample_array, behind SimpleITKReader(spatial_size=...)) against
MONAI's Orientation + Resize, and the two CT pipelines built on them: the pre-training's (read-time resampling) and
the slice selection's (Orientationd + Resized)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import pretrain_pipeline, slice_selection_pipeline
from monai.data import MetaTensor
from monai.transforms import Orientation, Resize

from unimedi_monai.data.ct_resample import resample_array, resampled_grid

# (affine, input shape, output size): axis-aligned RAS, permuted and flipped axes, LPS-like flips, an oblique
# affine, and a grid that is upsampled along one axis (30 -> 32 slices) and kept along others.
_OBLIQUE = np.array(
    [
        [0.7 * np.cos(0.3), -0.7 * np.sin(0.3), 0.0, 12.0],
        [0.7 * np.sin(0.3), 0.7 * np.cos(0.3), 0.0, -4.0],
        [0.0, 0.0, 2.5, 30.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
CASES = [
    (np.diag([0.8, 0.8, 2.5, 1.0]), (40, 36, 30), (16, 12, 32)),
    (np.array([[0, -1.0, 0, 10], [0, 0, -2.0, 5], [1.5, 0, 0, -3], [0, 0, 0, 1]]), (30, 40, 20), (16, 16, 8)),
    (np.diag([-0.7, -0.7, 3.0, 1.0]), (48, 48, 37), (48, 24, 37)),
    (_OBLIQUE, (32, 32, 12), (16, 16, 32)),
]


def _resample(img: MetaTensor, size, mode: str = "linear") -> MetaTensor:
    """Channel-first ``img`` resampled with the reader's functions (float32 for linear, the input dtype for
    nearest), with the new grid's affine."""
    index_map, out_affine = resampled_grid(img.affine.numpy(), img.shape[1:], size)
    out = np.stack([resample_array(c, index_map, size, mode) for c in img.numpy()])
    return MetaTensor(torch.from_numpy(out), meta={**img.meta, "affine": torch.as_tensor(out_affine)})


def _volume(shape: tuple[int, ...], affine: np.ndarray, dtype=np.int16) -> MetaTensor:
    rng = np.random.default_rng(sum(shape))
    values = rng.integers(-1200, 1500, size=shape).astype(dtype)
    return MetaTensor(torch.from_numpy(values)[None], meta={"affine": torch.as_tensor(affine), "filename_or_obj": "v"})


@pytest.mark.parametrize("affine,shape,size", CASES)
def test_matches_monai_orientation_and_resize(affine, shape, size):
    img = _volume(shape, affine)
    ref = Resize(size, mode="trilinear")(Orientation(axcodes="RAS", labels=None)(img.to(torch.float32)))
    out = _resample(img, size)
    assert isinstance(out, MetaTensor) and out.dtype == torch.float32
    assert tuple(out.shape) == (1, *size)
    np.testing.assert_array_equal(out.affine.numpy(), ref.affine.numpy())  # the same grid, exactly
    assert nib.aff2axcodes(out.affine.numpy()) == ("R", "A", "S")
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=0, atol=1e-3)  # HU values up to 1500
    assert out.meta["filename_or_obj"] == "v"
    _, grid_affine = resampled_grid(affine, shape, size)
    np.testing.assert_array_equal(out.affine.numpy(), grid_affine)


def test_nearest_keeps_labels_and_dtype():
    labels = np.zeros((20, 20, 10), dtype=np.uint8)
    labels[5:15, 4:9, 2:8] = 3
    labels[10:18, 12:19, 1:4] = 7
    img = MetaTensor(torch.from_numpy(labels)[None], meta={"affine": torch.as_tensor(np.diag([-1.0, 1.0, 2.0, 1.0]))})
    out = _resample(img, (10, 10, 20), mode="nearest")
    ref = Resize((10, 10, 20), mode="nearest")(Orientation(axcodes="RAS", labels=None)(img))
    assert out.dtype == torch.uint8
    assert set(np.unique(out.numpy())) == {0, 3, 7}
    # SimpleITK rounds half-way sample positions up, torch's "nearest" rounds them down: allow a boundary layer.
    assert float((out.numpy() == ref.numpy()).mean()) > 0.9


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="mode must be one of"):
        resample_array(np.zeros((4, 4, 4)), np.eye(4), (8, 8, 8), mode="cubic")
    with pytest.raises(ValueError, match=r"expects an \(X, Y, Z\) array, got shape \(4, 4\)"):
        resample_array(np.zeros((4, 4)), np.eye(4), (8, 8, 8))
    with pytest.raises(ValueError, match="expects a \\(4, 4\\) affine and 3 spatial dimensions"):
        resampled_grid(np.eye(3), (4, 4, 4), (8, 8, 8))


def test_ct_pipelines_resamplers_agree(tmp_path):
    affine = np.diag([-0.8, -0.8, 2.0, 1.0])  # an LPS-stored volume: both paths flip it to RAS
    rng = np.random.default_rng(0)
    x, y, z = np.meshgrid(np.linspace(-1, 1, 96), np.linspace(-1, 1, 80), np.linspace(-1, 1, 40), indexing="ij")
    hu = 1400 * np.exp(-((x - 0.3) ** 2 + y**2 + (z + 0.5) ** 2) * 3) - 1100 + rng.normal(0, 20, x.shape)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(hu.astype(np.int16), affine), str(path))
    item = {"image": str(path), "report": "Nodule.  "}
    new = pretrain_pipeline("ct", ct_size=[32, 32, 16])(item)
    old = slice_selection_pipeline(ct_size=[32, 32, 16])(item)
    assert new["image"].shape == old["image"].shape == (1, 32, 32, 16)
    assert new["image"].dtype == torch.float32 and 0.0 <= float(new["image"].min()) <= float(new["image"].max()) <= 1.0
    diff = (new["image"] - old["image"]).abs()
    # the HU window is clipped after (new) or before (old) the interpolation: only voxels next to values
    # outside [-1000, 1000] HU can differ, by at most the interpolated excess (here < 0.06)
    assert float(diff.max()) < 0.06 and float(diff.mean()) < 0.005
    assert new["report"] == old["report"] == "Nodule."


def test_real_ct_both_paths(shared_data):
    root = shared_data / "totalsegmentator"
    for name in ("example_ct_sm.nii.gz", "example_ct_dicom"):
        item = {"image": str(root / name)}
        new = pretrain_pipeline("ct")(item)["image"]
        old = slice_selection_pipeline()(item)["image"]
        assert new.shape == old.shape == (1, 128, 128, 32)
        assert float((new - old).abs().mean()) < 0.005, name
        # the body is brighter than the air around it in both, at the same place
        assert float(torch.corrcoef(torch.stack([new.flatten(), old.flatten()]))[0, 1]) > 0.995, name


@pytest.mark.parametrize("lps_to_ras", [True, False])
def test_reader_resamples_like_monai_at_read_time(tmp_path, lps_to_ras):
    from monai.transforms import EnsureChannelFirst, LoadImage

    from unimedi_monai.data.readers import ORIGINAL_SPATIAL_SHAPE_KEY, SimpleITKReader

    affine = np.array([[0, -0.9, 0, 10], [0, 0, -2.0, 5], [1.2, 0, 0, -3], [0, 0, 0, 1]])  # permuted and flipped
    values = np.random.default_rng(1).integers(-1000, 1000, size=(24, 40, 30)).astype(np.int16)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(values, affine), str(path))
    size = (16, 20, 32)
    full = EnsureChannelFirst()(LoadImage(reader=SimpleITKReader(affine_lps_to_ras=lps_to_ras), image_only=True)(path))
    ref = Resize(size, mode="trilinear")(Orientation(axcodes="RAS", labels=None)(full.to(torch.float32)))
    reader = SimpleITKReader(affine_lps_to_ras=lps_to_ras, spatial_size=size)
    out = EnsureChannelFirst()(LoadImage(reader=reader, image_only=True)(path))
    assert tuple(out.shape) == (1, *size) and out.dtype == torch.float32
    np.testing.assert_allclose(out.affine.numpy(), ref.affine.numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=0, atol=1e-3)
    np.testing.assert_array_equal(out.meta[ORIGINAL_SPATIAL_SHAPE_KEY], [24, 40, 30])
    np.testing.assert_allclose(out.meta["original_affine"], full.meta["original_affine"])
    np.testing.assert_allclose(out.meta["spacing"], np.linalg.norm(ref.affine.numpy()[:3, :3], axis=0))
    with pytest.raises(ValueError, match="spatial_size must be 3"):
        SimpleITKReader(spatial_size=(4, 4))
