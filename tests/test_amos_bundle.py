"""End to end: the AMOS bundle evaluates a network on AMOS-layout CT phantoms and passes verify_net_in_out."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO_ROOT, run_bundle

pytestmark = pytest.mark.slow

BUNDLE = "amos_segmentation"


def test_evaluate_names_the_15_amos_organs(tmp_path, monkeypatch):
    from unimedi_monai.io.checkpoint import atomic_save
    from unimedi_monai.networks.unetr_decoder import UniMedIUNETR
    from unimedi_monai.segmentation.organs import AMOS_ORGANS

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # spinning OpenMP threads slow 3D convolutions on a shared CPU
    atomic_save(UniMedIUNETR(16, backbone="tiny", feature_size=8).state_dict(), tmp_path / "models" / "model.pt")
    run_bundle(
        BUNDLE,
        ["train.yaml", "evaluate.yaml"],
        tmp_path,
        [
            "--backbone",
            "tiny",
            "--feature_size",
            "8",
            "--num_workers",
            "0",
            "--roi_size",
            "[32, 32, 8]",
            "--sw_batch_size",
            "8",
            "--demo",
            "{'n_train': 1, 'n_val': 2, 'shape': [48, 48, 16]}",
        ],
    )
    datalist = json.loads((tmp_path / "demo_data" / "dataset.json").read_text())
    assert datalist["labels"]["15"] == "prostate/uterus"  # the phantoms follow AMOS's dataset.json layout
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert list(metrics["organ_dice"]) == sorted(AMOS_ORGANS) and metrics["num_cases"] == 2
    assert metrics["mean_dice"] is not None and 0.0 <= metrics["mean_dice"] < 0.5  # an untrained network


def test_verify_net_in_out_and_channel_def():
    from monai.bundle import verify_net_in_out

    cfg = REPO_ROOT / "bundles" / BUNDLE / "configs"
    meta = json.loads((cfg / "metadata.json").read_text())
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 16
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"]["15"] == "prostate/uterus"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # in-process (the BCV test runs the command line); raises on a shape or channel mismatch
        verify_net_in_out(
            net_id="network_def",
            meta_file=str(cfg / "metadata.json"),
            config_file=str(cfg / "inference.yaml"),
            backbone="tiny",
            feature_size=8,
        )
    finally:
        torch.set_num_threads(threads)
