"""End-to-end runs of bundles/covidx_classification on the demo data, from a short demo pre-training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO_ROOT, run_bundle, run_module

BUNDLE = "covidx_classification"
CONFIGS = REPO_ROOT / "bundles" / BUNDLE / "configs"
PRETRAIN_DEMO = "{'n_xray': 64, 'n_ct': 32, 'seed': 1}"  # the pretrained_bundle fixture's demo data
PROBE_DEMO = "{'n_xray': 200, 'n_ct': 8, 'seed': 7}"


def _args(pretrained: Path) -> list[str]:
    return [
        "--demo",
        PRETRAIN_DEMO,
        "--demo_dir",
        str(pretrained / "demo_data"),
        "--pretrained_path",
        str(pretrained / "models" / "model.pt"),
        "--num_workers",
        "0",
    ]


@pytest.fixture(scope="module")
def probe_root(pretrained_bundle, tmp_path_factory) -> Path:
    """A 100% linear probe of the pre-trained demo encoder."""
    root = tmp_path_factory.mktemp("covidx_probe")
    # a larger demo set of its own (unseen by the pre-training) so the test split holds ~40 X-rays
    args = _args(pretrained_bundle)
    args[args.index("--demo") + 1] = PROBE_DEMO
    args[args.index("--demo_dir") + 1] = str(root / "probe_demo")
    # mean of the patch tokens: after the fixture's ~50 pre-training steps the [CLS] feature is still
    # weak (AUC ~0.53 on this split, against ~0.74 for the mean pool and 0.84 for [CLS] after 432 steps)
    run_bundle(BUNDLE, ["train.yaml"], root, args + ["--pool", "mean"])
    return root


@pytest.mark.slow
def test_linear_probe_writes_metrics_model_and_cache(probe_root, pretrained_bundle):
    metrics = json.loads((probe_root / "eval" / "metrics.json").read_text())
    assert metrics["task"] == "demo" and metrics["num_samples"] >= 30
    assert metrics["settings"]["mode"] == "linear_probe" and metrics["settings"]["init"] == "pretrained"
    assert metrics["settings"]["checkpoint"] == str((pretrained_bundle / "models" / "model.pt").resolve())
    assert 0.0 <= metrics["auc"] <= 1.0 and 0.0 <= metrics["accuracy"] <= 1.0
    assert (probe_root / "eval" / "confusion_matrix.png").stat().st_size > 1000
    assert (probe_root / "models" / "model.pt").is_file()
    assert (
        len(list((probe_root / "cache").glob("features_*.pt"))) == 3
    )  # training, validation, test: reused by other data_pct


@pytest.mark.slow
def test_linear_probe_beats_chance(probe_root):
    metrics = json.loads((probe_root / "eval" / "metrics.json").read_text())
    # chance: AUC 0.5, accuracy 1/5 (5 balanced finding classes; the test split holds about 40 X-rays)
    assert metrics["auc"] > 0.62 and metrics["accuracy"] > 0.2 + 0.1, metrics


@pytest.mark.slow
def test_inference_json_and_verify_net_in_out(probe_root, pretrained_bundle):
    images = sorted((pretrained_bundle / "demo_data" / "xray").glob("*.png"))[:3]
    run_bundle(
        BUNDLE,
        ["inference.yaml"],
        probe_root,
        ["--dataset", "demo", "--backbone", "demo", "--pool", "mean", "--datalist", str([str(p) for p in images])],
    )
    outputs = sorted((probe_root / "eval").glob("*.png.json"))  # next to train.yaml's metrics.json
    assert [p.name for p in outputs] == [f"{p.name}.json" for p in images]
    out = json.loads(outputs[0].read_text())
    assert set(out["probabilities"]) == {"normal", "nodule", "mass", "consolidation", "effusion"}
    assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)

    proc = run_module(
        "monai.bundle",
        "verify_net_in_out",
        "network_def",
        "--meta_file",
        CONFIGS / "metadata.json",
        "--config_file",
        CONFIGS / "inference.yaml",
        "--bundle_root",
        probe_root,
        "--backbone",
        "tiny",
        timeout=300,
    )
    assert proc.returncode == 0 and "verified with no error" in proc.stdout + proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_finetune_runs_and_saves_best(pretrained_bundle, tmp_path):
    run_bundle(
        BUNDLE,
        ["train.yaml"],
        tmp_path,
        _args(pretrained_bundle)
        + ["--mode", "finetune", "--max_epochs", "1", "--batch_size", "8", "--data_pct", "0.1"],
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert (
        metrics["settings"]["mode"] == "finetune"
        and metrics["settings"]["data_pct"] == 0.1
        and 0.0 <= metrics["accuracy"] <= 1.0
        and "auc" in metrics
    )
    assert (tmp_path / "models" / "model.pt").is_file() and list((tmp_path / "logs").glob("events.out.tfevents.*"))
    # evaluate.yaml reproduces the test metrics of the saved best model
    run_bundle(
        BUNDLE, ["train.yaml", "evaluate.yaml"], tmp_path, _args(pretrained_bundle) + ["--eval_prefix", "again_"]
    )
    again = json.loads((tmp_path / "eval" / "again_metrics.json").read_text())
    assert again["accuracy"] == pytest.approx(metrics["accuracy"]) and again["auc"] == pytest.approx(
        metrics["auc"], nan_ok=True
    )


@pytest.mark.slow
def test_zero_shot_on_xrays_and_cts(pretrained_bundle, tmp_path):
    run_bundle(BUNDLE, ["train.yaml", "zero_shot.yaml"], tmp_path, _args(pretrained_bundle))
    for modality in ("xray", "ct"):
        metrics = json.loads((tmp_path / "eval" / f"zero_shot_{modality}_metrics.json").read_text())
        assert metrics["settings"]["mode"] == "zero_shot" and metrics["settings"]["modality"] == modality
        assert metrics["num_samples"] > 0 and 0.0 <= metrics["accuracy"] <= 1.0
        assert metrics["chance_auc"] == 0.5 and "auc_normal" in metrics
