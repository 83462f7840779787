"""The pre-training bundle end to end: monai.bundle run on demo data, evaluation, and 2-process DDP."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import PRETRAIN_SHORT, run_bundle

from unimedi_monai.evaluation import read_jsonl_history

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _bundle(
    args: list[str], bundle_root: Path, configs: list[str], launcher: list[str] | None = None
) -> subprocess.CompletedProcess:
    return run_bundle("pretrain", configs, bundle_root, args, launcher=launcher)


SHORT = PRETRAIN_SHORT


@pytest.fixture(scope="module")
def short_run(pretrained_bundle):
    return pretrained_bundle


def test_short_pretraining_lowers_losses_and_beats_chance(short_run):
    history = read_jsonl_history(short_run / "logs" / "train_log.jsonl")
    # L_vl falls; the total need not in 48 steps: the distillation terms are the teacher targets'
    # entropy plus the KL, and the targets sharpen (and the mask ratio ramps in) at their own pace
    values = [v for _, v in history["loss_vl"]]
    k = max(len(values) // 5, 3)
    first, last = sum(values[:k]) / k, sum(values[-k:]) / k
    assert last < first, f"loss_vl did not fall: first {first:.3f}, last {last:.3f}"
    # the self-distillation carries signal: image-dependent teacher targets the student has not matched yet
    tail = lambda key: sum(v for _, v in history[key][-k:]) / k  # noqa: E731
    assert tail("icl_kl") > 0.05 and tail("icl_distinct_xray") >= 2, (tail("icl_kl"), tail("icl_distinct_xray"))
    assert tail("icl_entropy_xray") < tail("icl_log_k")
    metrics = json.loads((short_run / "eval" / "metrics.json").read_text())
    for direction in ("i2t", "t2i"):
        assert metrics[f"{direction}_R@5"] > metrics["chance_R@5"], (direction, metrics)
    # the slice evaluation ran on held-out CTs with lesions, against the exact random expectation
    assert metrics["num_ct_with_lesion"] > 0 and metrics["slice_k"] == 1
    assert 0.0 <= metrics["slice_hit_rate"] <= 1.0 and 0.0 < metrics["slice_hit_rate_random"] < 1.0
    # and against the position-only baseline: the best fixed slice beats random selection by construction
    assert metrics["slice_hit_rate_position_prior"] >= metrics["slice_hit_rate_random"]
    assert len(metrics["slice_position_prior_slices"]) == 1 and metrics["slice_selected_std"] >= 0.0
    for png in ("training_curves.png", "embeddings.png", "similarity.png", "slice_scores_0.png"):
        assert (short_run / "eval" / png).stat().st_size > 10_000, png
    assert (short_run / "models" / "model.pt").is_file()


def test_rerun_resumes_instead_of_restarting(short_run, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(short_run, root)  # the session's run stays untouched for the downstream bundles
    proc = _bundle(SHORT, root, ["train.yaml"])
    assert "resumed from" in proc.stdout + proc.stderr
    rows = (root / "logs" / "train_log.jsonl").read_text().splitlines()
    iterations = [json.loads(r)["iteration"] for r in rows]
    assert iterations == sorted(set(iterations))  # no duplicated iterations after the resume


@pytest.mark.distributed
def test_two_process_ddp_ends_with_identical_weights(tmp_path):
    dump = tmp_path / "dump.yaml"
    dump.write_text(
        "run:\n"
        '  - "$@train#trainer.run()"\n'
        "  - \"$torch.save(@network.module.state_dict(), @bundle_root + f'/rank{torch.distributed.get_rank()}.pt')\"\n"
    )
    args = [
        "--demo",
        "{'n_xray': 24, 'n_ct': 12, 'seed': 2}",
        "--max_epochs",
        "1",
        "--batch_size",
        "4",
        "--num_workers",
        "0",
        "--backbone",
        "tiny",
    ]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    _bundle(args, tmp_path, ["train.yaml", "multi_gpu_train.yaml", str(dump)], launcher=launcher)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    final = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert a.keys() == b.keys() == final.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)  # student, teacher, centres: bit-identical
        torch.testing.assert_close(a[k], final[k], rtol=0, atol=0, msg=k)  # rank 0 wrote exactly these weights
    history = read_jsonl_history(tmp_path / "logs" / "train_log.jsonl")
    assert len(history["loss"]) >= 2  # rank 0 logged the steps (and only rank 0: no duplicated iterations)
    assert [i for i, _ in history["loss"]] == sorted({i for i, _ in history["loss"]})
