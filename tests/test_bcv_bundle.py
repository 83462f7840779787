"""End to end: the BCV bundle fine-tunes from a pre-training checkpoint, segments real CTs, passes verify_net_in_out.

(evaluate.yaml, identical in both bundles, is run by tests/test_amos_bundle.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, run_bundle, run_module

pytestmark = pytest.mark.slow

BUNDLE = "bcv_segmentation"
# tiny network and phantoms so that a run takes seconds on a CPU
SMALL = ["--backbone", "tiny", "--feature_size", "8", "--num_workers", "0"]
TRAIN = SMALL + [
    "--roi_size",
    "[32, 32, 8]",
    "--num_samples",
    "2",
    "--demo",
    "{'n_train': 2, 'n_val': 1, 'shape': [48, 48, 16]}",
    "--max_epochs",
    "2",
    "--val_interval",
    "1",
    "--sw_batch_size",
    "8",
]


@pytest.fixture(scope="module")
def single_thread():
    """One OpenMP thread per bundle process: on a shared CPU, spinning threads slow 3D convolutions ~10x."""
    mp = pytest.MonkeyPatch()
    mp.setenv("OMP_NUM_THREADS", "1")
    yield
    mp.undo()


@pytest.fixture(scope="module")
def pretrain_checkpoint(tmp_path_factory, text_encoder) -> Path:
    from unimedi_monai.io.checkpoint import atomic_save
    from unimedi_monai.networks import UniMedI

    path = tmp_path_factory.mktemp("pretrain") / "model.pt"
    atomic_save(UniMedI("tiny", text_encoder=text_encoder).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, pretrain_checkpoint, single_thread):
    root = tmp_path_factory.mktemp("bcv")
    proc = run_bundle(BUNDLE, ["train.yaml"], root, TRAIN + ["--pretrained_path", str(pretrain_checkpoint)])
    return root, proc.stdout + proc.stderr


def test_train_fine_tunes_pretrained_encoder(trained, pretrain_checkpoint):
    from unimedi_monai.networks.unetr_decoder import UniMedIUNETR

    root, log = trained
    assert f"pre-trained student encoder from {pretrain_checkpoint}: " in log and "keys loaded, 0 missing" in log
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert sorted(metrics["organ_dice"]) == sorted(
        json.loads((REPO_ROOT / "bundles" / BUNDLE / "configs" / "metadata.json").read_text())["network_data_format"][
            "outputs"
        ]["pred"]["channel_def"][str(i)]
        for i in range(1, 14)
    )
    assert metrics["epoch"] in (1, 2) and 0.0 <= metrics["mean_dice"] <= 1.0
    net = UniMedIUNETR(14, backbone="tiny", feature_size=8)
    net.load_state_dict(torch.load(root / "models" / "model.pt", weights_only=True))  # strict: a full network
    assert list((root / "logs").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (root / "models").iterdir()) == ["model.pt"]


def test_inference_on_real_ct_keeps_shape_and_affine(trained, shared_data):
    import SimpleITK as sitk

    root, _ = trained
    ts = shared_data / "totalsegmentator"
    nifti, dicom = ts / "example_ct_sm.nii.gz", ts / "example_ct_dicom"
    out_dir = root / "seg"
    run_bundle(
        BUNDLE,
        ["inference.yaml"],
        root,
        SMALL
        + [
            "--pixdim",
            "[4.0, 4.0, 4.0]",
            "--roi_size",
            "[64, 64, 16]",
            "--output_dir",
            str(out_dir),
            "--datalist",
            f"['{nifti}', '{dicom}']",
        ],
    )
    assert sorted(p.name for p in out_dir.iterdir()) == ["example_ct_dicom_seg.nii.gz", "example_ct_sm_seg.nii.gz"]
    ref = nib.load(nifti)
    seg = nib.load(out_dir / "example_ct_sm_seg.nii.gz")
    assert seg.shape == ref.shape and np.allclose(seg.affine, ref.affine, atol=1e-4)
    assert seg.get_data_dtype() == np.uint8 and int(np.asarray(seg.dataobj).max()) <= 13
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(dicom)))
    image = reader.Execute()
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # SimpleITK's LPS -> NIfTI's RAS
    seg = nib.load(out_dir / "example_ct_dicom_seg.nii.gz")
    assert seg.shape == image.GetSize() == (512, 512, 20)
    assert np.allclose(seg.affine, affine, atol=1e-3)


def test_verify_net_in_out(single_thread):
    cfg = REPO_ROOT / "bundles" / BUNDLE / "configs"
    proc = run_module(
        "monai.bundle",
        "verify_net_in_out",
        "network_def",
        "--meta_file",
        cfg / "metadata.json",
        "--config_file",
        cfg / "inference.yaml",
        "--backbone",
        "tiny",
        "--feature_size",
        "8",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "data shape of network is verified with no error" in proc.stdout + proc.stderr
