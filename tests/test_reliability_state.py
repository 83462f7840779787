"""State kept between runs: caches keyed by content, one log line per iteration after any kill,
leftover temporaries cleaned, unreadable checkpoints named and never counted as kept."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from PIL import Image
from torch import nn

from unimedi_monai.classification import classification_transforms, extract_features
from unimedi_monai.data import build_pretrain_dataset, xray_transforms
from unimedi_monai.engines import CheckpointHandler, JsonlStatsWriter
from unimedi_monai.engines.checkpoint import list_checkpoints
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
    tf = classification_transforms(32)
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
    tf = xray_transforms(image_size=32, train=False)
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
