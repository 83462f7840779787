"""State kept between runs: caches keyed by content, one log line per iteration after any kill,
leftover temporaries cleaned, unreadable checkpoints named and never counted as kept."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import classification_pipeline, pretrain_pipeline
from ignite.engine import Engine, Events
from PIL import Image
from torch import nn

from unimedi_monai.classification import extract_features
from unimedi_monai.data import build_pretrain_dataset
from unimedi_monai.engines import CheckpointHandler, JsonlStatsWriter
from unimedi_monai.io.checkpoint import list_checkpoints
from unimedi_monai.networks.classifier import UniMedIClassifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _png(path: Path, value: int) -> Path:
    img = np.zeros((48, 48), np.uint8)
    img[: 4 + value] = 200
    Image.fromarray(img).save(path)
    return path


def _replace(path: Path, data: bytes) -> None:
    """Rewrite a file in place, keeping its modification time (a copy tool with ``-p``, a restore)."""
    st = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


# ---------------------------------------------------------------------------------------------- caches


def test_feature_cache_is_not_reused_after_the_images_change(tmp_path):
    items = [{"image": str(_png(tmp_path / f"x{i}.png", 4 * i)), "label": i % 2} for i in range(4)]
    net = UniMedIClassifier(2, "tiny", xray_size=32, patch_size_2d=8)
    tf = classification_pipeline(image_size=32)
    first = extract_features(net, items, tf, tmp_path / "cache", {"image_size": 32}, progress=False)
    again = extract_features(net, items, tf, tmp_path / "cache", {"image_size": 32}, progress=False)
    assert torch.equal(first, again)
    # replace two images by other pictures (same names, same size, same mtime): new features
    for i in (0, 1):
        other = tmp_path / "other.png"
        _png(other, 40 - 4 * i)
        _replace(Path(items[i]["image"]), other.read_bytes())
    changed = extract_features(net, items, tf, tmp_path / "cache", {"image_size": 32}, progress=False)
    assert not torch.equal(changed[:2], first[:2]) and torch.equal(changed[2:], first[2:])
    # emptied files: no cached features are served, reading them fails naming the file
    Path(items[3]["image"]).write_bytes(b"")
    with pytest.raises(ValueError, match=r"x3\.png"):
        extract_features(net, items, tf, tmp_path / "cache", {"image_size": 32}, progress=False)


def test_pretraining_disk_cache_is_not_stale(tmp_path):
    a = _png(tmp_path / "a.png", 4)
    items = [{"image": str(a), "report": "a", "modality": "xray"}]
    tf = pretrain_pipeline("xray", image_size=32)
    first = build_pretrain_dataset(items, tf, None, cache="disk", cache_dir=str(tmp_path / "cache"))[0]["image"]
    other = tmp_path / "other.png"
    _png(other, 30)
    _replace(a, other.read_bytes())
    again = build_pretrain_dataset(items, tf, None, cache="disk", cache_dir=str(tmp_path / "cache"))[0]["image"]
    fresh = build_pretrain_dataset(items, tf, None, cache="none")[0]["image"]
    assert torch.equal(again, fresh) and not torch.equal(again, first)


# ---------------------------------------------------------------------------------------------- kill after a checkpoint


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(2, 2)


class _Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs."""


def _run(tmp_path: Path, kill_at: int | None = None) -> Engine:
    engine = Engine(lambda e, b: {"loss": float(e.state.iteration)})
    # the order of the pre-training bundle's train_handlers: checkpoints first, then the log
    CheckpointHandler(tmp_path / "models", {"network": _Net()}, interval=2).attach(engine)
    JsonlStatsWriter(tmp_path / "logs" / "train_log.jsonl", lambda out: out).attach(engine)
    engine.run(range(4), max_epochs=2)
    return engine


def test_a_kill_right_after_a_checkpoint_loses_no_log_line(tmp_path, monkeypatch):
    import unimedi_monai.engines.handlers as handlers

    save = handlers.atomic_save

    def save_then_die(obj, path):
        out = save(obj, path)
        if Path(path).name == "checkpoint_00000002.pt":
            raise _Killed()  # right after the rename
        return out

    monkeypatch.setattr(handlers, "atomic_save", save_then_die)
    with pytest.raises(_Killed):
        _run(tmp_path)
    assert [i for i, _ in list_checkpoints(tmp_path / "models")] == [2]
    log = tmp_path / "logs" / "train_log.jsonl"
    assert [json.loads(line)["iteration"] for line in log.read_text().splitlines()] == [1, 2]
    monkeypatch.setattr(handlers, "atomic_save", save)
    engine = _run(tmp_path)  # the same command again: resumes at iteration 2
    assert engine.state.iteration == 8
    assert [json.loads(line)["iteration"] for line in log.read_text().splitlines()] == list(range(1, 9))


# ---------------------------------------------------------------------------------------------- leftovers


def test_temporaries_of_a_killed_write_are_removed_on_the_next_start(tmp_path, caplog):
    from unimedi_monai.bundle import guard_outputs, release_locks

    models = tmp_path / "models"
    models.mkdir()
    left = [models / ".checkpoint_00000004.pt.k2j4_x9a.tmp", models / ".model.pt.abcd1234.tmp"]
    for p in left:
        p.write_bytes(b"\0" * 1000)
    keep = [models / ".hidden_user_file.tmp", models / "notes.tmp", models / "checkpoint_00000002.pt"]
    for p in keep:
        p.write_bytes(b"x")
    with caplog.at_level(logging.WARNING):
        guard_outputs({"ckpt_dir": models})
    release_locks()
    assert not any(p.exists() for p in left) and all(p.exists() for p in keep)
    assert sum("left by an interrupted write" in r.getMessage() for r in caplog.records) == 2


def test_unreadable_newest_checkpoint_is_named_and_never_kept(tmp_path, caplog):
    engine = Engine(lambda e, b: {"loss": 0.0})
    net = _Net()
    handler = CheckpointHandler(tmp_path, {"network": net}, interval=2, keep=2)
    for it in (2, 4, 6):
        engine.state.iteration, engine.state.epoch_length, engine.state.max_epochs = it, 4, 2
        handler.save(engine)
    newest = tmp_path / "checkpoint_00000006.pt"
    newest.write_bytes(newest.read_bytes()[:100])  # cut short
    fresh = Engine(lambda e, b: {"loss": 0.0})
    fresh.state.epoch_length, fresh.state.max_epochs = 4, 2
    with caplog.at_level(logging.WARNING):
        CheckpointHandler(tmp_path, {"network": _Net()}, interval=2, keep=2).load(fresh)
    assert fresh.state.iteration == 4
    assert any("checkpoint_00000006.pt" in r.getMessage() and "set aside" in r.getMessage() for r in caplog.records)
    assert [i for i, _ in list_checkpoints(tmp_path)] == [4]  # the cut one no longer counts...
    fresh.state.iteration = 6
    handler.save(fresh)
    assert [i for i, _ in list_checkpoints(tmp_path)] == [4, 6]  # ...so two good ones are kept
    assert (tmp_path / "checkpoint_00000006.pt.unreadable").exists()


def test_tensorboard_steps_appear_once_after_a_resume(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from unimedi_monai.engines import ResumableTensorBoardStatsHandler

    def run(kill_at=None):
        engine = Engine(lambda e, b: float(e.state.iteration))
        CheckpointHandler(tmp_path / "models", {"network": _Net()}, interval=2).attach(engine)
        ResumableTensorBoardStatsHandler(
            log_dir=str(tmp_path / "logs"), tag_name="loss", output_transform=lambda x: x
        ).attach(engine)
        if kill_at is not None:

            @engine.on(Events.ITERATION_COMPLETED(once=kill_at))
            def _die(e):
                raise _Killed()

        engine.run(range(4), max_epochs=2)

    with pytest.raises(_Killed):
        run(kill_at=3)  # a checkpoint at 2, TensorBoard already has 1..3
    run()
    acc = EventAccumulator(str(tmp_path / "logs"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("loss")]
    assert steps == list(range(1, 9)), steps
