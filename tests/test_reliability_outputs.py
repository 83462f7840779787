"""What a run writes: never an input, one file per input even when inputs share a name, only into folders
it can write, with the umask's permissions; a refused run ends with one line saying why."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import run_bundle

from unimedi_monai.bundle import OutputFolderError, guard_outputs
from unimedi_monai.io.atomic_io import atomic_open, write_json_atomic

SMALL = [
    "--backbone",
    "tiny",
    "--feature_size",
    "8",
    "--num_workers",
    "0",
    "--pixdim",
    "[4.0, 4.0, 4.0]",
    "--roi_size",
    "[32, 32, 8]",
]


def _ct(path: Path, origin: float = 0.0, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).integers(-1000, 1000, size=(40, 40, 12)).astype(np.int16)
    affine = np.diag([2.0, 2.0, 5.0, 1.0])
    affine[0, 3] = origin
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


@pytest.fixture(scope="module")
def seg_root(tmp_path_factory) -> Path:
    """A bcv_segmentation bundle root whose models/model.pt is a tiny, randomly initialised network."""
    import torch

    from unimedi_monai.io.checkpoint import atomic_save
    from unimedi_monai.networks.unetr_decoder import UniMedIUNETR

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("seg")
    atomic_save(UniMedIUNETR(14, backbone="tiny", feature_size=8).state_dict(), root / "models" / "model.pt")
    return root


# ---------------------------------------------------------------------------------------------- helpers


def test_unique_output_stems_name_inputs_sharing_a_name_after_their_folders(tmp_path):
    from unimedi_monai.bundle import per_input_outputs, unique_output_stems

    assert unique_output_stems(["/x/a/ct.nii.gz", "/x/b/ct.nii.gz", "/x/c/other.nrrd"]) == ["a_ct", "b_ct", "other"]
    assert unique_output_stems(["/p/a/s/ct.nii.gz", "/q/a/s/ct.nii.gz"]) == ["p_a_s_ct", "q_a_s_ct"]
    assert unique_output_stems(["/x/ct.nii.gz", "/x/ct.nii"]) == ["ct_0", "ct_1"]
    files = per_input_outputs(["/x/a/ct.nii.gz", "/x/b/ct.nii.gz"], tmp_path, "_seg.nii.gz")
    assert list(files.values()) == [str(tmp_path / "a_ct_seg.nii.gz"), str(tmp_path / "b_ct_seg.nii.gz")]


def test_guard_refuses_an_output_that_is_an_input(tmp_path):
    ct = _ct(tmp_path / "data" / "ct.nii.gz")
    with pytest.raises(
        OutputFolderError, match=r"output '.*data/ct\.nii\.gz' is the input '.*data/ct\.nii\.gz' \(config key 'input'\)"
    ):
        guard_outputs({"output_dir": ct.parent}, inputs={"input": [ct]}, files=[ct], lock=False)
    series = tmp_path / "series"
    series.mkdir()
    with pytest.raises(OutputFolderError, match=r"is inside the input folder"):
        guard_outputs({"output_dir": series}, inputs={"input": series}, files=[series / "x.json"], lock=False)
    with pytest.raises(OutputFolderError, match=r"two outputs of this run would be written to '.*same\.json'"):
        guard_outputs({"output_dir": tmp_path}, files=[tmp_path / "same.json", tmp_path / "same.json"], lock=False)
    # an output folder holding the inputs is fine when the names differ
    guard_outputs({"output_dir": ct.parent}, inputs={"input": [ct]}, files=[ct.parent / "ct_seg.nii.gz"], lock=False)


def test_guard_refuses_an_output_folder_it_cannot_create_or_write(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(
        OutputFolderError, match=r"output folder output_dir '.*a_file/out' is not writable .*--output_dir"
    ):
        guard_outputs({"output_dir": blocker / "out"}, lock=False)
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        with pytest.raises(OutputFolderError, match=r"output folder eval_dir '.*ro' is not writable"):
            guard_outputs({"eval_dir": ro}, lock=False)


def test_write_failures_name_the_config_key_and_the_file(tmp_path):
    from unimedi_monai.io.atomic_io import register_output_folder

    out = tmp_path / "eval"
    guard_outputs({"eval_dir": out}, lock=False)
    register_output_folder(out, "eval_dir")
    with pytest.raises(
        OSError, match=r"cannot write '.*eval/metrics\.json' \(config key 'eval_dir'\): No space left on device"
    ):
        with atomic_open(out / "metrics.json", "w") as f:
            f.write("{")
            raise OSError(28, "No space left on device")
    assert sorted(p.name for p in out.iterdir()) == []  # no temporary left


def test_atomic_writes_get_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_json_atomic({"a": 1}, tmp_path / "x.json")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    finally:
        os.umask(old)


# ---------------------------------------------------------------------------------------------- segmentation bundle


@pytest.mark.slow
def test_segmentation_inference_never_overwrites_its_input(seg_root, tmp_path):
    ct = _ct(tmp_path / "data" / "ct.nii.gz")
    before = ct.read_bytes()
    proc = run_bundle(
        "bcv_segmentation",
        ["inference.yaml"],
        seg_root,
        SMALL + ["--datalist", f"['{ct}']", "--output_dir", str(ct.parent), "--output_postfix", ""],
        check=False,
        timeout=300,
    )
    assert proc.returncode != 0
    assert ct.read_bytes() == before
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("OutputFolderError: output '") and "is the input" in last and "ct.nii.gz" in last, (
        proc.stderr[-2000:]
    )
    assert "Failed to evaluate" not in proc.stderr  # the one-line reason is all the user sees
    assert sorted(p.name for p in ct.parent.iterdir()) == ["ct.nii.gz"]


@pytest.mark.slow
def test_segmentation_inputs_sharing_a_name_get_one_output_each(seg_root, tmp_path):
    a = _ct(tmp_path / "data" / "a" / "ct.nii.gz", origin=0.0, seed=1)
    b = _ct(tmp_path / "data" / "b" / "ct.nii.gz", origin=-300.0, seed=2)
    out = a.parent  # the output folder may hold an input: the names differ
    run_bundle(
        "bcv_segmentation",
        ["inference.yaml"],
        seg_root,
        SMALL + ["--datalist", f"['{a}', '{b}']", "--output_dir", str(out)],
        timeout=300,
    )
    assert sorted(p.name for p in out.iterdir()) == ["a_ct_seg.nii.gz", "b_ct_seg.nii.gz", "ct.nii.gz"]
    for src, name in ((a, "a_ct_seg.nii.gz"), (b, "b_ct_seg.nii.gz")):
        seg = nib.load(out / name)
        assert seg.shape == nib.load(src).shape
        assert np.allclose(seg.affine, nib.load(src).affine, atol=1e-4), name
