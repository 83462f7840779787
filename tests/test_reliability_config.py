"""Config errors, output-folder guards, checkpoints that do not fit, and non-finite weights."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, run_bundle
from ignite.engine import Engine
from torch import nn

from unimedi_monai.bundle import (
    LOCK_FILENAME,
    ConfigKeyError,
    OutputFolderError,
    acquire_lock,
    check_overrides,
    config_keys,
    guard_outputs,
    parse_overrides,
    release_locks,
)
from unimedi_monai.engines import CheckpointHandler
from unimedi_monai.io.checkpoint import CheckpointMismatchError, atomic_save, load_weights

TRAIN = str(REPO_ROOT / "bundles" / "pretrain" / "configs" / "train.yaml")
EVALUATE = str(REPO_ROOT / "bundles" / "pretrain" / "configs" / "evaluate.yaml")
MULTI = str(REPO_ROOT / "bundles" / "pretrain" / "configs" / "multi_gpu_train.yaml")


# ---------------------------------------------------------------------------------------------- overrides


def test_config_keys_are_nested_paths():
    keys = config_keys({"a": 1, "train": {"dataloader": {"num_workers": 2}, "handlers": [{"x": 1}]}})
    assert {"a", "train#dataloader#num_workers", "train#handlers#0#x"} <= keys


def test_parse_overrides_splits_run_arguments():
    files, overrides = parse_overrides(
        [
            "--config_file",
            f"['{TRAIN}','{EVALUATE}']",
            "--bundle_root",
            "/x",
            "--meta_file",
            "m.json",
            "--max_epochs=3",
            "--amp",
        ]
    )
    assert files == [TRAIN, EVALUATE]
    assert overrides == {"bundle_root": "/x", "max_epochs": "3", "amp": "True"}


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (
            ["--max_epoch", "3"],
            r"unknown config key 'max_epoch' \(command line --max_epoch\); did you mean 'max_epochs'\?",
        ),
        (
            ["--train#dataloader#num_worker", "8"],
            r"unknown config key 'train#dataloader#num_worker'.*did you mean 'train#dataloader#num_workers'",
        ),
        (["--dataset_dri", "/data"], r"did you mean 'dataset_dir'"),
    ],
)
def test_mistyped_override_is_refused_with_a_suggestion(argv, pattern):
    with pytest.raises(ConfigKeyError, match=pattern) as info:
        check_overrides(["--config_file", TRAIN, "--bundle_root", "/tmp/x"] + argv)
    assert "\n" not in str(info.value)


def test_declared_overrides_pass():
    check_overrides(
        ["--config_file", TRAIN, "--max_epochs", "3", "--train#dataloader#num_workers", "0", "--demo#n_xray", "4"]
    )
    # keys declared only by a later config file are known when that file is named
    check_overrides(["--config_file", f"['{TRAIN}','{EVALUATE}']", "--eval_slice_k", "2"])
    with pytest.raises(ConfigKeyError, match="eval_slice_k"):
        check_overrides(["--config_file", TRAIN, "--eval_slice_k", "2"])
    check_overrides(["--config_file", f"['{TRAIN}','{MULTI}']", "--train#sampler#num_replicas", "2"])
    # a new argument of a `_target_` component is allowed; a new key elsewhere is not
    check_overrides(["--config_file", TRAIN, "--train#dataloader#pin_memory", "true"])
    with pytest.raises(ConfigKeyError, match="unknown config key 'demo#pin_memory'"):
        check_overrides(["--config_file", TRAIN, "--demo#pin_memory", "true"])


def test_args_file_keys_are_checked(tmp_path):
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"config_file": TRAIN, "max_epocs": 2}))
    with pytest.raises(ConfigKeyError, match="max_epocs.*max_epochs"):
        check_overrides(["--args_file", str(args)])


@pytest.mark.slow
def test_bundle_run_stops_on_a_mistyped_key_and_a_missing_dataset_dir(tmp_path):
    proc = run_bundle("pretrain", ["train.yaml"], tmp_path, ["--max_epoch", "3"], check=False)
    assert proc.returncode != 0
    assert "unknown config key 'max_epoch' (command line --max_epoch); did you mean 'max_epochs'?" in proc.stderr
    assert not (tmp_path / "models").exists() and not (tmp_path / "demo_data").exists()  # stopped before any work
    proc = run_bundle("pretrain", ["train.yaml"], tmp_path, ["--dataset_dir", str(tmp_path / "nowhere")], check=False)
    assert proc.returncode != 0
    assert f"dataset_dir '{tmp_path / 'nowhere'}' does not exist or is not a folder; pass --dataset_dir" in proc.stderr


# ---------------------------------------------------------------------------------------------- outputs


def test_outputs_inside_the_data_folder_are_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(OutputFolderError, match=r"output folder ckpt_dir '.*data/run/models' is inside dataset_dir"):
        guard_outputs({"ckpt_dir": data / "run" / "models"}, {"dataset_dir": data}, lock=False)
    with pytest.raises(FileNotFoundError, match=r"dataset_dir '.*missing' does not exist"):
        guard_outputs({"ckpt_dir": tmp_path / "models"}, {"dataset_dir": tmp_path / "missing"}, lock=False)
    guard_outputs({"ckpt_dir": tmp_path / "models"}, {"dataset_dir": data, "other": None}, lock=False)
    assert not list(data.iterdir())


def _hold(folder: Path) -> subprocess.Popen:
    """A process that holds the run lock of ``folder`` (through guard_outputs) until killed."""
    code = (
        "import sys, time; from unimedi_monai.bundle import guard_outputs; "
        f"guard_outputs({{'ckpt_dir': {str(folder)!r}}}); print('locked', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_run_on_the_same_outputs_is_refused(tmp_path, caplog):
    out = tmp_path / "models"
    holder = _hold(out)
    try:
        with pytest.raises(OutputFolderError, match=rf"in use by another run \(PID {holder.pid} "):
            guard_outputs({"log_dir": tmp_path / "logs", "ckpt_dir": out})
        assert not (tmp_path / "logs" / LOCK_FILENAME).exists()  # all or nothing
    finally:
        holder.kill()  # SIGKILL: its lock file stays, the kernel lock dies with it
        holder.wait()
    assert (out / LOCK_FILENAME).exists()
    # the holder is gone: its lock is stale and taken over
    with caplog.at_level("WARNING", logger="unimedi_monai.bundle"):
        guard_outputs({"ckpt_dir": out, "log_dir": tmp_path / "logs"})
    assert any("stale lock" in r.getMessage() and str(holder.pid) in r.getMessage() for r in caplog.records)
    assert json.loads((out / LOCK_FILENAME).read_text())["pid"] == os.getpid()
    assert acquire_lock(out) == out / LOCK_FILENAME  # the same process may ask again
    release_locks()
    assert not (out / LOCK_FILENAME).exists() and not (tmp_path / "logs" / LOCK_FILENAME).exists()


def _contend(folder: str, start: float, results, done) -> None:
    """One contender of the race below: wait for the common start time, try the lock; a winner holds it
    until every contender has tried (on a loaded machine a late one may start after a fixed hold)."""
    while time.time() < start:
        pass
    try:
        acquire_lock(folder)
        results.put("got")
        done.wait(60)
    except OutputFolderError:
        results.put("refused")


def test_taking_over_a_stale_lock_is_atomic(tmp_path):
    """Many processes find the same stale lock at the same moment: exactly one of them gets it (a
    read-check-unlink-create takeover let two or more through in most trials)."""
    ctx = multiprocessing.get_context("fork")
    doubles = []
    for trial in range(16):
        folder = tmp_path / f"t{trial}"
        folder.mkdir()
        (folder / LOCK_FILENAME).write_text(
            json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname()})
        )  # a dead PID
        results = ctx.Queue()
        start = time.time() + 0.3
        done = ctx.Event()
        procs = [ctx.Process(target=_contend, args=(str(folder), start, results, done)) for _ in range(8)]
        for p in procs:
            p.start()
        outcome = [results.get(timeout=60) for _ in procs]
        done.set()
        for p in procs:
            p.join(timeout=30)
        if outcome.count("got") != 1:
            doubles.append((trial, outcome.count("got")))
    assert not doubles, f"trials where not exactly one process got the lock (trial, winners): {doubles}"


def test_two_live_processes_cannot_hold_one_folder(tmp_path):
    holder = _hold(tmp_path)
    try:
        with pytest.raises(OutputFolderError, match=f"PID {holder.pid}"):
            acquire_lock(tmp_path)
    finally:
        holder.terminate()
        holder.wait()


# ---------------------------------------------------------------------------------------------- checkpoints


class _Net(nn.Module):
    def __init__(self, width: int = 4, extra: bool = False) -> None:
        super().__init__()
        self.a = nn.Linear(width, 3)
        if extra:
            self.b = nn.Linear(3, 2)


def test_checkpoint_that_does_not_fit_is_refused_in_one_line(tmp_path):
    path = tmp_path / "model.pt"
    atomic_save(_Net(extra=True).state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match=r"2 unexpected keys \[b.weight, b.bias\].*strict=False") as info:
        load_weights(_Net(), path)
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointMismatchError, match=r"2 missing keys \[b.weight, b.bias\]"):
        atomic_save(_Net().state_dict(), path)
        load_weights(_Net(extra=True), path)
    atomic_save(_Net(width=5).state_dict(), path)
    with pytest.raises(
        CheckpointMismatchError,
        match=r"shape mismatch \[a.weight \(3, 5\) in the checkpoint vs \(3, 4\) in the network\].*backbone preset",
    ):
        load_weights(_Net(), path, strict=False)  # shapes are refused even when not strict
    report = load_weights(_Net(extra=True), _save(tmp_path, _Net()), strict=False).load_report
    assert report["missing"] == ["b.weight", "b.bias"] and set(report["loaded"]) == {"a.weight", "a.bias"}


def _save(folder: Path, net: nn.Module) -> Path:
    return atomic_save(net.state_dict(), folder / "small.pt")


def _engine(iteration: int) -> Engine:
    engine = Engine(lambda e, b: None)
    engine.state.iteration, engine.state.epoch_length, engine.state.max_epochs = iteration, 4, 2
    return engine


def test_resume_from_a_checkpoint_of_another_network_says_what_to_change(tmp_path):
    CheckpointHandler(tmp_path, {"network": _Net(width=5)}, interval=1).save(_engine(3))
    handler = CheckpointHandler(tmp_path, {"network": _Net()}, interval=1)
    with pytest.raises(
        CheckpointMismatchError,
        match=r"checkpoint_00000003.pt' entry 'network' does not fit this run: 1 shape mismatch "
        r".*another --bundle_root",
    ):
        handler.load(_engine(0))


def test_non_finite_weights_are_never_saved(tmp_path):
    net = _Net()
    handler = CheckpointHandler(tmp_path, {"network": net}, interval=1)
    handler.save(_engine(2))
    with torch.no_grad():
        net.a.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"non-finite by iteration 3 .*checkpoint_00000002.pt"):
        handler.save(_engine(3))
    with pytest.raises(FloatingPointError, match="iteration 4"):
        handler.save_final(_engine(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_00000002.pt"]


# ---------------------------------------------------------------------------------------------- values and messages


def test_numeric_keys_are_checked_by_name():
    from unimedi_monai.bundle import check_values

    for values, pattern in [
        (
            {"batch_size": "abc"},
            r"config key 'batch_size' must be an integer >= 1, got 'abc' \(command line --batch_size\)",
        ),
        ({"max_epochs": -1}, r"'max_epochs' must be an integer >= 1, got -1"),
        ({"checkpoint_interval": -5}, r"'checkpoint_interval' must be an integer >= 0, got -5"),
        ({"lr": 0.0}, r"'lr' must be a number > 0"),
        ({"overlap": 1.0}, r"'overlap' must be a number >= 0 and < 1"),
        ({"label_fraction": float("nan")}, r"'label_fraction' must be a number > 0 and <= 1"),
        ({"linear_probe#epochs": 2.5}, r"'linear_probe#epochs' must be an integer"),
        ({"norm_std": 0.0}, r"'norm_std' must be a number > 0, got 0.0"),
        ({"image_size": 0}, r"'image_size' must be an integer >= 1, got 0"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            check_values(values)
    check_values(
        {"batch_size": 2, "lr": 1e-4, "top_k": None, "checkpoint_interval": 0, "label_fraction": 1.0, "grad_clip": None}
    )


def test_spatial_keys_are_checked_by_name():
    from unimedi_monai.bundle import check_spatial_values

    for values, pattern in [
        (
            {"pixdim": [1.5, 0.0, 2.0]},
            r"config key 'pixdim' must be 3 positive numbers, got \[1.5, 0.0, 2.0\] \(command line --pixdim\)",
        ),
        ({"pixdim": [1.5, 1.5]}, r"'pixdim' must be 3 positive numbers"),
        ({"roi_size": [32, 32, 8.5]}, r"'roi_size' must be 3 positive integers, got \[32, 32, 8.5\]"),
        ({"roi_size": "abc"}, r"'roi_size' must be 3 positive integers, got 'abc'"),
        ({"hu_window": [250.0, -175.0]}, r"'hu_window' must be \(low, high\) with low < high"),
        ({"hu_window": [0.0, float("inf")]}, r"'hu_window' must be \(low, high\)"),
        ({"ct_size": [128, 128, 0]}, r"'ct_size' must be 3 positive integers, got \[128, 128, 0\]"),
        ({"ct_size": [128, 128]}, r"'ct_size' must be 3 positive integers"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            check_spatial_values(values)
    with pytest.raises(KeyError, match="no shape is declared for config key 'spacing'"):
        check_spatial_values({"spacing": [1, 1, 1]})
    check_spatial_values(
        {"pixdim": [4, 4, 4.0], "roi_size": [32, 32, 8], "hu_window": [-175, 250.0], "ct_size": [128, 128, 32]}
    )


def test_bundle_item_parses_one_id_with_overrides(tmp_path):
    from unimedi_monai.bundle import bundle_item

    config = tmp_path / "c.yaml"
    config.write_text(
        "size: 3\nitem: {_target_: monai.transforms.SpatialPadd, keys: image, spatial_size: '$[@size] * 3'}\n"
    )
    pad = bundle_item(config, "item", {"size": 5})
    assert tuple(pad(dict(image=torch.zeros(1, 2, 2, 2)))["image"].shape) == (1, 5, 5, 5)
    with pytest.raises(KeyError, match=r"no config id 'items' in .*c\.yaml"):
        bundle_item(config, "items")
    with pytest.raises(FileNotFoundError, match=r"config file '.*missing\.yaml' does not exist"):
        bundle_item(tmp_path / "missing.yaml", "item")


def test_root_error_unwraps_monai_wrappers():
    from unimedi_monai.bundle import root_error

    inner = ValueError("config key 'max_epochs' must be an integer >= 1, got -1")
    try:
        try:
            try:
                raise inner
            except ValueError as e:
                raise RuntimeError("applying transform <x>") from e
        except RuntimeError as e:
            raise RuntimeError("Failed to evaluate ConfigExpression: ...") from e
    except RuntimeError as outer:
        assert root_error(outer) is inner
    plain = RuntimeError("something else")
    assert root_error(plain) is plain


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "last"),
    [
        (["--batch_size", "abc"], "ValueError: config key 'batch_size' must be an integer >= 1, got 'abc'"),
        (["--max_epochs", "-1"], "ValueError: config key 'max_epochs' must be an integer >= 1, got -1"),
        (
            ["--checkpoint_interval", "-5"],
            "ValueError: config key 'checkpoint_interval' must be an integer >= 0, got -5",
        ),
        (
            ["--hu_window", "[100.0,-100.0]"],
            "ValueError: config key 'hu_window' must be (low, high) with low < high, got [100.0, -100.0]",
        ),
    ],
    ids=["batch_size abc", "max_epochs -1", "checkpoint_interval -5", "hu_window reversed"],
)
def test_a_refused_bundle_run_ends_with_one_clear_line(tmp_path, args, last):
    proc = run_bundle("pretrain", ["train.yaml"], tmp_path, args, check=False, timeout=300)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(last), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Failed to evaluate" not in proc.stderr
    assert not (tmp_path / "models").exists()  # refused before any work


def test_excepthook_prints_one_line_or_the_full_traceback(capsys, monkeypatch):
    from unimedi_monai.bundle import FULL_TRACEBACK_ENV, _excepthook

    try:
        try:
            raise FileNotFoundError("datalist file not found: looked for /x/datalist.json")
        except FileNotFoundError as e:
            raise RuntimeError('Failed to evaluate ConfigExpression: "$unimedi_monai.data.load_datalist(...)"') from e
    except RuntimeError as err:
        error = err
    monkeypatch.delenv(FULL_TRACEBACK_ENV, raising=False)
    _excepthook(type(error), error, error.__traceback__)
    assert capsys.readouterr().err == "FileNotFoundError: datalist file not found: looked for /x/datalist.json\n"
    monkeypatch.setenv(FULL_TRACEBACK_ENV, "1")
    _excepthook(type(error), error, error.__traceback__)
    err = capsys.readouterr().err
    assert "Traceback" in err and "Failed to evaluate" in err and "datalist file not found" in err
    monkeypatch.delenv(FULL_TRACEBACK_ENV)
    bug = AttributeError("'NoneType' object has no attribute 'x'")  # not a refusal: keeps its traceback
    _excepthook(AttributeError, bug, None)
    assert "AttributeError" in capsys.readouterr().err
