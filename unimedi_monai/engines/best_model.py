# SPDX-License-Identifier: Apache-2.0
"""Keep the best network of a MONAI evaluator by its key metric: ignite's ``Checkpoint``, written atomically."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from torch import nn

from unimedi_monai.engines.trainer import unwrap_model
from unimedi_monai.io.checkpoint import atomic_save, non_finite_entries
from unimedi_monai.io.rank import is_rank0

__all__ = ["BestModelSaver"]

logger = logging.getLogger(__name__)


class _AtomicWeightsFile:
    """``Checkpoint`` save handler: the weights to one fixed file, atomically, on rank 0.

    A plain callable, not an ignite ``BaseSaveHandler``, so ``Checkpoint`` never deletes the file it
    replaces: each save renames the new weights over the old ones.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, checkpoint: Mapping[str, Any], filename: str, metadata: Mapping[str, Any] | None = None) -> None:
        if is_rank0():
            atomic_save(checkpoint, self.path)


class BestModelSaver(Checkpoint):
    """After each validation, save the network when the evaluator's key metric beats the best so far.

    ignite's :class:`~ignite.handlers.Checkpoint` keeps the best score: its ``score_function`` reads
    the key metric of the MONAI evaluator it is attached to (``key_val_metric``, higher is better:
    Dice, accuracy, AUC), one file is kept, a tie keeps the earlier network and a
    ``DistributedDataParallel`` wrapper is unwrapped. The file holds the bare state dict, what
    ``$unimedi_monai.io.load_weights(@network, @model_path)`` loads. What ``Checkpoint`` does not do
    is added here:

    - The file is written by :func:`~unimedi_monai.io.atomic_save` (a temporary beside it, fsync,
      rename; the umask's permissions). ignite's ``DiskSaver(atomic=True)`` is not used: for a
      file of the same name ``Checkpoint`` deletes the previous best before writing the new one, so
      a run killed in between would keep no model at all, and its temporaries (``tmpXXXX``) are not
      the ones the bundles' output guard clears.
    - Weights holding NaN or inf are never saved: ``FloatingPointError`` naming the epoch, the file
      on disk stays as it was.
    - A non-finite key metric (e.g. a NaN-skipping mean Dice with no organ in any reference) is
      never the best.
    - Only rank 0 writes, the network file and ``on_save``.

    Args:
        network: the trained network (a DDP wrapper is unwrapped).
        path: the weights file (``models/model.pt``).
        on_save: handlers called with the evaluator after each save, on rank 0 (e.g. an
            ``OrganDiceWriter`` writing that validation's ``eval/metrics.json``), so those files always
            describe the saved network.

    Example::

        evaluator = SupervisedEvaluator(..., key_val_metric={"val_acc": Accuracy()},
                                        val_handlers=[BestModelSaver(net, "models/model.pt")])
    """

    def __init__(
        self, network: nn.Module, path: str | os.PathLike, on_save: Sequence[Callable[[Engine], Any]] = ()
    ) -> None:
        self.network = network
        self.path = Path(path)
        self.on_save = list(on_save)
        super().__init__(
            {"model": network},
            _AtomicWeightsFile(self.path),
            score_function=self.score,
            n_saved=1,
            filename_pattern="{name}.{ext}",
        )

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    @staticmethod
    def score(engine: Engine) -> float:
        """The evaluator's key metric (``engine.state.metrics[engine.state.key_metric_name]``) as a float.

        Raises:
            KeyError: the engine has no key metric (give the evaluator a ``key_val_metric``).
        """
        name = getattr(engine.state, "key_metric_name", None)
        metrics = getattr(engine.state, "metrics", {}) or {}
        if name is None or name not in metrics:
            raise KeyError(
                f"BestModelSaver: the evaluator has no key metric (key_metric_name {name!r}, metrics "
                f"{sorted(metrics)}); set its key_val_metric."
            )
        return float(metrics[name])

    @property
    def best(self) -> float | None:
        """The key metric of the saved network (None before the first save)."""
        return float(self._saved[-1].priority) if self._saved else None

    def __call__(self, engine: Engine, *args: Any, **kwargs: Any) -> None:
        score, name, epoch = self.score(engine), engine.state.key_metric_name, engine.state.epoch
        if not math.isfinite(score):
            logger.warning(
                "epoch %s: %s is %s, never the best; %s kept",
                epoch,
                name,
                score,
                self.path if self._saved else "no model",
            )
            return
        if not (self._check_lt_n_saved() or self._compare_fn(score)):
            logger.info("epoch %s: %s %.4f, best %.4f kept in %s", epoch, name, score, self.best, self.path)
            return
        bad = non_finite_entries(unwrap_model(self.network).state_dict())
        if bad:
            raise FloatingPointError(
                f"network weights are non-finite at epoch {epoch} ({len(bad)} tensors, e.g. {bad[:3]}) although {name} "
                f"is {score:.4f}; nothing was saved, {self.path} keeps the best network so far. Lower the learning "
                "rate or disable fp16 AMP."
            )
        super().__call__(engine, *args, **kwargs)
        if is_rank0():
            for handler in self.on_save:
                handler(engine)
        logger.info("best %s %.4f at epoch %s: saved %s", name, score, epoch, self.path)
