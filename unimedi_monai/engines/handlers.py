# SPDX-License-Identifier: Apache-2.0
"""Ignite handlers: the training checkpoint with resume, the best model of a MONAI evaluator, and logs."""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.handlers import TensorBoardStatsHandler

from unimedi_monai.io.checkpoint import (
    CheckpointMismatchError,
    atomic_save,
    describe_mismatch,
    list_checkpoints,
    load_latest_checkpoint,
    non_finite_entries,
)
from unimedi_monai.io.rank import is_rank0

__all__ = [
    "CheckpointHandler",
    "JsonlStatsWriter",
    "ProgressBarHandler",
    "ResumableTensorBoardStatsHandler",
    "rng_states",
    "set_rng_states",
    "rank_handlers",
]

logger = logging.getLogger(__name__)


def rng_states() -> dict[str, Any]:
    """The global random states (python ``random``, numpy, torch CPU, and CUDA when present) as a
    dict that ``torch.load(weights_only=True)`` can read back (numpy's key array as a tensor)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    """Restore the states written by :func:`rng_states` (entries absent from ``states`` are left as they are)."""
    if "python" in states:
        version, internal, gauss_next = states["python"]
        random.setstate((version, tuple(internal), gauss_next))
    if "numpy" in states:
        n = states["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class CheckpointHandler:
    """Save the training state atomically every N iterations and at the end; resume from the latest.

    Files in ``save_dir``: ``checkpoint_<iteration>.pt`` (every entry of ``save_dict`` by its
    ``state_dict()``, plus the engine state; the newest ``keep`` are kept) and, when the run
    completes, ``final_filename`` holding the network's weights alone (what downstream bundles
    load). With ``resume`` (default), at start the newest readable checkpoint is loaded (a truncated
    one is skipped with a warning) and training continues from its iteration: the sampler of the
    engine's data loader is moved to the next unseen batch. Only rank 0 writes.

    A checkpoint holds everything the rest of the run depends on: each ``save_dict`` entry (the
    network with its teacher, loss centres and temperature; the optimiser), the iteration (from which
    the schedules and the sampler position follow), the grad scaler and the python / numpy / torch
    random states, so a run killed at any point and started again with the same command ends with
    the same weights as an uninterrupted one (deterministic CPU runs: bit for bit).

    Never saved: weights holding NaN or inf. Such a state raises ``FloatingPointError`` naming the
    iteration; the checkpoints on disk (and no ``final_filename``) stay as they were.

    Example::

        handler = CheckpointHandler("runs/models", {"network": model, "optimizer": opt}, interval=50)
        trainer = UniMedITrainer(..., train_handlers=[handler])

    Args:
        save_dir: folder of the training checkpoints.
        save_dict: objects to save, e.g. ``{"network": model, "optimizer": opt}``; must hold ``network``.
        interval: save every ``interval`` iterations (0: only at the end).
        keep: number of interval checkpoints kept.
        final_filename: path of the final weights file (relative to ``save_dir`` or absolute).
        resume: load the newest checkpoint at start.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_dict: Mapping[str, Any],
        interval: int = 100,
        keep: int = 2,
        final_filename: str | os.PathLike = "model.pt",
        resume: bool = True,
    ) -> None:
        if "network" not in save_dict:
            raise ValueError("CheckpointHandler save_dict must contain a 'network' entry.")
        self.save_dir = Path(save_dir)
        self.save_dict = dict(save_dict)
        self.interval = int(interval)
        self.keep = max(int(keep), 1)
        final = Path(final_filename)
        self.final_path = final if final.is_absolute() else self.save_dir / final
        self.resume = resume
        self.resumed_from: Path | None = None
        self._save_attached: set[int] = set()

    def attach(self, engine: Engine) -> None:
        if self.resume:
            engine.add_event_handler(Events.STARTED, self.load)
        if self.interval > 0:
            engine.add_event_handler(Events.STARTED, self._attach_save)
        engine.add_event_handler(Events.COMPLETED, self.save_final)

    def _attach_save(self, engine: Engine) -> None:
        """Register the interval save when the run starts, after every handler attached before then.

        Ignite calls an event's handlers in the order they were added, so the iteration's checkpoint
        is written after its log line (:class:`JsonlStatsWriter`, TensorBoard...), wherever this handler
        sits in ``train_handlers``: a kill right after the checkpoint's rename loses no log line, and a
        kill before it only repeats the iteration, whose line the resumed run's log writer replaces.
        """
        if id(engine) in self._save_attached:
            return
        self._save_attached.add(id(engine))
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self.save)

    def _state(self, engine: Engine) -> dict[str, Any]:
        state = {k: v.state_dict() for k, v in self.save_dict.items()}
        state["engine"] = {
            "iteration": engine.state.iteration,
            "epoch_length": engine.state.epoch_length,
            "max_epochs": engine.state.max_epochs,
        }
        state["rng"] = rng_states()
        scaler = getattr(engine, "grad_scaler", None)
        if scaler is not None and scaler.is_enabled():
            state["grad_scaler"] = scaler.state_dict()
        return state

    def _check_finite(self, engine: Engine) -> None:
        bad = non_finite_entries(self.save_dict["network"].state_dict())
        if bad:
            last = list_checkpoints(self.save_dir)
            raise FloatingPointError(
                f"network weights became non-finite by iteration {engine.state.iteration} ({len(bad)} tensors, e.g. "
                f"{bad[:3]}); nothing was saved, the last good checkpoint is {last[-1][1] if last else 'none'}. "
                "Lower the learning rate or disable fp16 AMP and resume."
            )

    def save(self, engine: Engine) -> None:
        """Write ``checkpoint_<iteration>.pt`` and prune old ones (rank 0); refuses non-finite weights."""
        if not is_rank0():
            return
        self._check_finite(engine)
        atomic_save(self._state(engine), self.save_dir / f"checkpoint_{engine.state.iteration:08d}.pt")
        for _, old in list_checkpoints(self.save_dir)[: -self.keep]:
            old.unlink(missing_ok=True)

    def save_final(self, engine: Engine) -> None:
        """At completion: a last training checkpoint, then the network weights to ``final_path`` (rank 0)."""
        if not is_rank0():
            return
        if self.interval > 0 and engine.state.iteration % self.interval != 0:
            self.save(engine)
        self._check_finite(engine)
        atomic_save(self.save_dict["network"].state_dict(), self.final_path)
        logger.info("final network weights written to %s", self.final_path)

    def load(self, engine: Engine) -> None:
        """Restore the newest readable checkpoint, if any, into ``save_dict`` and the engine."""
        found = load_latest_checkpoint(self.save_dir)
        if found is None:
            return
        state, path = found
        for k, obj in self.save_dict.items():
            if k not in state:
                raise RuntimeError(f"checkpoint '{path}' has no '{k}' entry; it was not written by this configuration.")
            try:
                obj.load_state_dict(state[k])
            except (RuntimeError, ValueError, KeyError) as err:
                detail = (
                    describe_mismatch(obj, state[k]) if isinstance(obj, torch.nn.Module) else str(err).splitlines()[0]
                )
                raise CheckpointMismatchError(
                    f"checkpoint '{path}' entry '{k}' does not fit this run: {detail}; resume with the configuration "
                    f"that wrote it (backbone, text model, ...) or start afresh with another --bundle_root."
                ) from err
        saved = state["engine"]
        if saved["epoch_length"] != engine.state.epoch_length:
            raise RuntimeError(
                f"checkpoint '{path}' was written with epoch_length {saved['epoch_length']} but this run has "
                f"{engine.state.epoch_length}; resume with the same data and batch size, or use a new checkpoint "
                "folder."
            )
        iteration = int(saved["iteration"])
        engine.state.iteration = iteration
        engine.state.epoch = iteration // engine.state.epoch_length
        if "grad_scaler" in state and getattr(engine, "grad_scaler", None) is not None:
            engine.grad_scaler.load_state_dict(state["grad_scaler"])
        if "rng" in state:
            set_rng_states(state["rng"])
        sampler = getattr(getattr(engine, "data_loader", None), "batch_sampler", None)
        if sampler is not None and hasattr(sampler, "load_state_dict"):
            sampler.load_state_dict({"epoch": engine.state.epoch, "position": iteration % engine.state.epoch_length})
        self.resumed_from = path
        logger.info("resumed from %s at iteration %d", path, iteration)


class JsonlStatsWriter:
    """Append the trainer's scalar outputs to a JSON-lines file each iteration (rank 0).

    Each line: ``{"iteration": i, "epoch": e, <scalar>: value, ...}``; read it back with
    :func:`unimedi_monai.evaluation.training_curves.read_jsonl_history`. On a resumed run the lines
    after the resume point are appended (earlier lines beyond it are dropped first), so the file
    always describes one consistent run.

    Args:
        path: the ``.jsonl`` file.
        output_transform: maps ``engine.state.output`` to a dict of floats.
        every: write every N iterations.
    """

    def __init__(
        self, path: str | os.PathLike, output_transform: Callable[[Any], Mapping[str, float]], every: int = 1
    ) -> None:
        self.path = Path(path)
        self.output_transform = output_transform
        self.every = max(int(every), 1)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._trim)
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.every), self._write)

    def _trim(self, engine: Engine) -> None:
        if not is_rank0() or not self.path.is_file():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # the last line of a killed run may be cut short
                continue
            if isinstance(row, dict) and row.get("iteration", 0) <= engine.state.iteration:
                keep.append(line)
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
        os.replace(tmp, self.path)

    def _write(self, engine: Engine) -> None:
        if not is_rank0():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        row = {"iteration": engine.state.iteration, "epoch": engine.state.epoch}
        row.update({k: float(v) for k, v in self.output_transform(engine.state.output).items()})
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


class ResumableTensorBoardStatsHandler(TensorBoardStatsHandler):
    """MONAI's ``TensorBoardStatsHandler`` that, on a resumed run, purges the events a killed run wrote after
    its last checkpoint, so TensorBoard shows every step once.

    At start (after :class:`CheckpointHandler` restored the iteration: attach this handler after it), when
    the run resumes at iteration ``i > 0``, its event writer is replaced by one with ``purge_step=i + 1``:
    TensorBoard then drops the earlier events of steps ``>= i + 1`` from the log folder.

    Args:
        log_dir: the TensorBoard folder.
        kwargs: the other ``monai.handlers.TensorBoardStatsHandler`` arguments (``tag_name``, ``output_transform``...).
    """

    def __init__(self, log_dir: str = "./runs", **kwargs: Any) -> None:
        super().__init__(log_dir=log_dir, **kwargs)
        self.log_dir = log_dir

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._purge_after_resume)
        super().attach(engine)

    def _purge_after_resume(self, engine: Engine) -> None:
        if engine.state.iteration > 0 and self.internal_writer and is_rank0():
            from torch.utils.tensorboard import SummaryWriter

            self._writer.close()
            self._writer = SummaryWriter(log_dir=self.log_dir, purge_step=engine.state.iteration + 1)


class ProgressBarHandler:
    """An ignite ``ProgressBar`` that MONAI engines can attach (they call ``attach(engine)`` only).

    Args:
        output_transform: maps ``engine.state.output`` to the dict of values shown on the bar.
        persist: keep the finished bar of each epoch on screen.
        disable: hide the bar (for logs and CI).
    """

    def __init__(
        self,
        output_transform: Callable[[Any], Mapping[str, float]] | None = None,
        persist: bool = True,
        disable: bool = False,
    ) -> None:
        self.output_transform = output_transform
        self.persist = persist
        self.disable = disable

    def attach(self, engine: Engine) -> None:
        if self.disable or not is_rank0():
            return
        from ignite.handlers import ProgressBar

        kwargs = {} if self.output_transform is None else {"output_transform": self.output_transform}
        ProgressBar(persist=self.persist).attach(engine, **kwargs)


def rank_handlers(handlers: Sequence[Any], rank0_only: Sequence[str]) -> list[Any]:
    """The handlers this process attaches in a distributed run: all of them on rank 0 (or without
    ``torch.distributed``), on the other ranks those whose class (or a base class) is not named in
    ``rank0_only``, so that one process logs and saves.

    Args:
        handlers: the handler list of the single-process config (``train#handlers``, ``validate#handlers``).
        rank0_only: class names of the handlers only rank 0 runs, e.g. ``["StatsHandler",
            "TensorBoardStatsHandler"]`` (a subclass such as ``ResumableTensorBoardStatsHandler`` matches its base).

    Raises:
        ValueError: a name in ``rank0_only`` matches no handler of the list (a renamed or removed handler
            would otherwise run on every rank unnoticed).
    """

    def names(handler: Any) -> set[str]:
        return {cls.__name__ for cls in type(handler).__mro__}

    unknown = [n for n in rank0_only if not any(n in names(h) for h in handlers)]
    if unknown:
        present = sorted({type(h).__name__ for h in handlers})
        raise ValueError(f"rank0_only names {unknown}, which match no handler of the list {present}.")
    if is_rank0():
        return list(handlers)
    return [h for h in handlers if not names(h) & set(rank0_only)]
