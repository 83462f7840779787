"""End to end: the RSNA segmentation bundle fine-tunes from a pre-training checkpoint on the demo data,
evaluates (Dice, IoU, overlays) and segments X-rays at their own size; its metadata and network pass
MONAI's checks (tests/test_bundle_verify.py covers verify_metadata, verify_net_in_out and the
TorchScript export of every bundle)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_bundle
from PIL import Image

pytestmark = pytest.mark.slow

BUNDLE = "rsna_segmentation"
SMALL = ["--backbone", "tiny", "--decoder_channels", "8", "--image_size", "64", "--num_workers", "0"]
TRAIN = SMALL + [
    "--demo",
    "{'n_train': 8, 'n_val': 2, 'n_test': 3}",
    "--max_epochs",
    "2",
    "--val_interval",
    "1",
    "--batch_size",
    "4",
]


@pytest.fixture(scope="module")
def pretrain_checkpoint(tmp_path_factory, text_encoder) -> Path:
    from unimedi_monai.io.checkpoint import atomic_save
    from unimedi_monai.networks import UniMedI

    path = tmp_path_factory.mktemp("pretrain") / "model.pt"
    atomic_save(UniMedI("tiny", text_encoder=text_encoder).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, pretrain_checkpoint):
    root = tmp_path_factory.mktemp("rsna_seg")
    mp = pytest.MonkeyPatch()
    mp.setenv("OMP_NUM_THREADS", "1")
    try:
        proc = run_bundle(
            BUNDLE,
            ["train.yaml"],
            root,
            TRAIN + ["--pretrained_path", str(pretrain_checkpoint), "--pretrained_source", "teacher"],
        )
        evaluated = run_bundle(BUNDLE, ["train.yaml", "evaluate.yaml"], root, TRAIN)
    finally:
        mp.undo()
    return root, proc.stdout + proc.stderr, evaluated.stdout + evaluated.stderr


def test_train_loads_the_encoder_and_keeps_the_best_model(trained, pretrain_checkpoint):
    from unimedi_monai.networks import UniMedISETRPUP

    root, log, _ = trained
    assert f"pre-trained teacher encoder from {pretrain_checkpoint}: " in log and "keys loaded, 0 missing" in log
    best = json.loads((root / "eval" / "best_validation.json").read_text())
    assert set(best["organ_dice"]) == {"lesion"} and best["epoch"] in (1, 2)
    net = UniMedISETRPUP(2, backbone="tiny", decoder_channels=8)
    net.load_state_dict(
        torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
    )  # a bare, complete state dict
    assert not list((root / "models").glob(".*tmp"))  # written atomically: no temporary left


def test_evaluate_writes_dice_iou_and_overlays(trained):
    root, _, _ = trained
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["num_images"] == 3
    assert 0.0 <= metrics["iou"] <= metrics["dice"] <= 1.0  # IoU <= Dice for every mask
    assert metrics["class_dice"].keys() == {"lesion"} and metrics["checkpoint"].endswith("models/model.pt")
    overlay = np.asarray(Image.open(root / "eval" / "overlays.png"))
    assert overlay.ndim == 3 and overlay.shape[0] == 64 and overlay.shape[1] >= 3 * 64


def test_inference_writes_one_mask_per_input_at_its_size(trained, tmp_path):
    root, _, _ = trained
    inputs = tmp_path / "in"
    inputs.mkdir()
    demo = sorted((root / "demo_data" / "images").glob("*.png"))[:2]
    for i, src in enumerate(demo):  # a non-square crop and a transposed copy of demo X-rays
        array = np.asarray(Image.open(src))
        Image.fromarray(array[20:220] if i == 0 else array[:, 30:].T.copy()).save(inputs / f"cxr{i}.png")
    out = tmp_path / "out"
    run_bundle(BUNDLE, ["inference.yaml"], root, SMALL[:-2] + ["--dataset_dir", str(inputs), "--output_dir", str(out)])
    masks = sorted(p.name for p in out.iterdir())
    assert masks == ["cxr0_seg.png", "cxr1_seg.png"]
    for i in range(2):
        image, mask = np.asarray(Image.open(inputs / f"cxr{i}.png")), np.asarray(Image.open(out / f"cxr{i}_seg.png"))
        assert mask.shape == image.shape and set(np.unique(mask)) <= {0, 255}


def test_inference_never_overwrites_an_input_and_names_shared_names_apart(trained, tmp_path):
    """``--output_dir`` the input folder with no postfix is refused before any work; two inputs named alike
    get one mask each."""
    root, _, _ = trained
    src = sorted((root / "demo_data" / "images").glob("*.png"))[0]
    folder = tmp_path / "in"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    for sub in ("a", "b"):
        (folder / sub / "cxr.png").write_bytes(src.read_bytes())
    before = (folder / "a" / "cxr.png").read_bytes()
    proc = run_bundle(
        BUNDLE,
        ["inference.yaml"],
        root,
        SMALL[:-2]
        + ["--datalist", str(folder / "a" / "cxr.png"), "--output_dir", str(folder / "a"), "--output_postfix", "''"],
        check=False,
    )
    assert proc.returncode != 0 and "input" in proc.stderr.strip().splitlines()[-1]
    assert (folder / "a" / "cxr.png").read_bytes() == before  # the user's image is untouched
    out = tmp_path / "out"
    run_bundle(BUNDLE, ["inference.yaml"], root, SMALL[:-2] + ["--dataset_dir", str(folder), "--output_dir", str(out)])
    masks = sorted(p.name for p in out.glob("*.png"))
    assert len(masks) == 2 and masks[0] != masks[1] and all(m.endswith("cxr_seg.png") for m in masks)


@pytest.mark.parametrize("config", ["train.yaml", "evaluate.yaml", "inference.yaml", "multi_gpu_train.yaml"])
def test_configs_check_overrides_and_guard_outputs(config):
    """Every config runs the override check first; those that write training outputs guard them."""
    from conftest import REPO_ROOT
    from monai.bundle import ConfigParser

    steps = ConfigParser.load_config_file(str(REPO_ROOT / "bundles" / BUNDLE / "configs" / config))["initialize"]
    checks = [i for i, s in enumerate(steps) if "check_overrides()" in s]
    assert checks and all("init_process_group" in s or "import" in s or "set_device" in s for s in steps[: checks[0]])
    if config != "inference.yaml":
        assert any("guard_outputs(" in s and "'dataset_dir': @dataset_dir" in s for s in steps)
    else:
        assert any("guard_outputs(" in s and "files=@output_files" in s for s in steps)
    assert any("check_values(" in s for s in steps)


def test_multi_gpu_train_on_two_cpu_processes(tmp_path, monkeypatch):
    """multi_gpu_train.yaml with two gloo processes: rank 0 generates the demo while rank 1 waits,
    the best model is saved once, unwrapped from DistributedDataParallel."""
    import sys

    from unimedi_monai.networks import UniMedISETRPUP

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541"]
    args = SMALL + [
        "--init",
        "random",
        "--demo",
        "{'n_train': 8, 'n_val': 2, 'n_test': 2}",
        "--max_epochs",
        "1",
        "--val_interval",
        "1",
        "--batch_size",
        "4",
    ]
    run_bundle(BUNDLE, ["train.yaml", "multi_gpu_train.yaml"], tmp_path, args, launcher=launcher)
    net = UniMedISETRPUP(2, backbone="tiny", decoder_channels=8)
    net.load_state_dict(torch.load(tmp_path / "models" / "model.pt", map_location="cpu", weights_only=True))
    assert json.loads((tmp_path / "eval" / "best_validation.json").read_text())["epoch"] == 1
