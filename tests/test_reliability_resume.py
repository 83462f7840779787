"""A pre-training run killed with SIGKILL mid-epoch resumes with the same command and ends with the
same weights as an uninterrupted run; the data folder is never written to."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, bundle_command, bundle_env

from unimedi_monai.data.demo import generate_demo_dataset
from unimedi_monai.io.checkpoint import list_checkpoints, safe_load

pytestmark = pytest.mark.slow


def _args(data: Path) -> list[str]:
    # tiny backbone, small inputs, 2 epochs of 3 iterations (3 X-rays + 1 CT per batch), a checkpoint every 2
    return [
        "--dataset_dir",
        str(data),
        "--backbone",
        "tiny",
        "--max_epochs",
        "2",
        "--batch_size",
        "4",
        "--num_workers",
        "0",
        "--checkpoint_interval",
        "2",
        "--mask_warmup_epochs",
        "1",
        "--text_trainable_layers",
        "1",
        "--image_size",
        "112",
        "--ct_size",
        "[64,64,16]",
    ]


def _command(root: Path, args: list[str]) -> list[str]:
    """The command :func:`conftest.run_bundle` runs (to start it with Popen and kill it)."""
    return bundle_command("pretrain", ["train.yaml"], root, args)


def _env() -> dict:
    # one thread per run: on a shared CPU, thread oversubscription makes each step 10x slower
    return dict(bundle_env(), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def test_sigkill_mid_epoch_then_same_command_matches_uninterrupted_run(tmp_path):
    data = tmp_path / "data"
    generate_demo_dataset(data, n_xray=8, n_ct=4, seed=0, progress=False)
    before = _snapshot(data)
    os.chmod(data, 0o555)  # read-only (root ignores it: the snapshot comparison below is the real check)
    args = _args(data)
    try:
        # a reference run and the same run killed with SIGKILL right after its first (mid-epoch) checkpoint,
        # side by side (to halve the wall time; CPU results do not depend on it)
        reference, killed = tmp_path / "reference", tmp_path / "killed"
        ref_proc = subprocess.Popen(
            _command(reference, args),
            cwd=REPO_ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        proc = subprocess.Popen(
            _command(killed, args), cwd=REPO_ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 400
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                if 2 in [i for i, _ in list_checkpoints(killed / "models")]:  # iteration 2 of the 3 of epoch 1
                    break
                time.sleep(0.01)
            assert proc.poll() is None, "the run ended before it could be killed"
            os.kill(proc.pid, signal.SIGKILL)
            ref_out, _ = ref_proc.communicate(timeout=400)
        finally:
            proc.wait(timeout=60)
            if ref_proc.poll() is None:
                ref_proc.kill()
                ref_proc.wait()
        assert ref_proc.returncode == 0, ref_out[-3000:]
        assert proc.returncode == -signal.SIGKILL
        total = list_checkpoints(reference / "models")[-1][0]
        assert total == 6, total
        interrupted_at = list_checkpoints(killed / "models")[-1][0]
        assert interrupted_at < total and not (killed / "models" / "model.pt").exists()
        assert (killed / "models" / ".unimedi_run.lock").exists()  # left behind by the killed process

        # the same command again: takes over the stale lock, resumes, finishes
        resumed = subprocess.run(
            _command(killed, args),
            cwd=REPO_ROOT,
            env=_env(),
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            timeout=400,
        )
        log = resumed.stdout + resumed.stderr
        assert resumed.returncode == 0, log[-3000:]
        assert "resumed from" in log and f"checkpoint_{interrupted_at:08d}.pt" in log
        assert "stale lock" in log
    finally:
        os.chmod(data, 0o755)

    final_ref = safe_load(reference / "models" / "model.pt")
    final_res = safe_load(killed / "models" / "model.pt")
    assert final_ref.keys() == final_res.keys()
    assert any(k.startswith("teacher") for k in final_ref) and any("center" in k for k in final_ref)
    for k in final_ref:  # student, teacher, loss centres, temperature
        torch.testing.assert_close(final_res[k], final_ref[k], rtol=0, atol=1e-6, msg=k)
    # the optimiser state (Adam moments, step counts) matches too
    ckpt_ref = safe_load(reference / "models" / f"checkpoint_{total:08d}.pt")
    ckpt_res = safe_load(killed / "models" / f"checkpoint_{total:08d}.pt")
    for (pid, a), (_, b) in zip(
        sorted(ckpt_ref["optimizer"]["state"].items()), sorted(ckpt_res["optimizer"]["state"].items())
    ):
        for name in a:
            torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=f"optimizer state {pid}/{name}")
    # the log of the resumed run has every iteration once; the lock is gone; the data folder is untouched
    import json

    rows = [json.loads(line)["iteration"] for line in (killed / "logs" / "train_log.jsonl").read_text().splitlines()]
    assert rows == list(range(1, total + 1))
    assert not (killed / "models" / ".unimedi_run.lock").exists()
    assert _snapshot(data) == before
