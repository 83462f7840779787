# SPDX-License-Identifier: Apache-2.0
"""Keep the best network by validation mean Dice: weights and their metrics, both written atomically."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

from ignite.engine import Engine, Events
from torch import nn

from unimedi_monai.atomic_io import write_json_atomic
from unimedi_monai.engines.checkpoint import atomic_save
from unimedi_monai.segmentation.metrics import organ_dice_report, per_organ_dice

__all__ = ["BestModelSaver"]

logger = logging.getLogger(__name__)


class BestModelSaver:
    """After each validation, save the network when its mean organ Dice beats the best so far.

    The weights go to ``model_path`` (a bare state dict, what ``inference.yaml`` and ``evaluate.yaml``
    load) and the Dice summary of that validation to ``metrics_path``, so both files always describe
    the same, best network. MONAI's ``CheckpointSaver`` is not used as it writes in place.

    Args:
        network: the trained network.
        model_path: weights file (e.g. ``models/model.pt``).
        metrics_path: JSON file (e.g. ``eval/metrics.json``) or None.
        organ_names: organ names of the labels 1..N.
        metric_name: the evaluator metric holding the per-organ Dice (``MeanDice(reduction="mean_batch")``).
        trainer: the trainer, to record its epoch (optional).

    Example::

        BestModelSaver(net, "models/model.pt", "eval/metrics.json", BCV_ORGANS, trainer=trainer).attach(evaluator)
    """

    def __init__(
        self,
        network: nn.Module,
        model_path: str | os.PathLike,
        metrics_path: str | os.PathLike | None,
        organ_names: Sequence[str],
        metric_name: str = "val_organ_dice",
        trainer: Engine | None = None,
    ) -> None:
        self.network = network
        self.model_path = Path(model_path)
        self.metrics_path = Path(metrics_path) if metrics_path is not None else None
        self.organ_names = list(organ_names)
        self.metric_name = metric_name
        self.trainer = trainer
        self.best: float | None = None
        self.best_epoch: int | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        epoch = self.trainer.state.epoch if self.trainer is not None else engine.state.epoch
        report: dict[str, Any] = organ_dice_report(per_organ_dice(engine, self.metric_name), self.organ_names, epoch=epoch, checkpoint=str(self.model_path))
        score = report["mean_dice"]
        if score is None or (self.best is not None and score <= self.best):
            logger.info("epoch %s: mean Dice %s, best %s (epoch %s) kept", epoch, score, self.best, self.best_epoch)
            return
        self.best, self.best_epoch = score, epoch
        module = getattr(self.network, "module", self.network)  # DistributedDataParallel
        atomic_save(module.state_dict(), self.model_path)
        if self.metrics_path is not None:
            write_json_atomic(report, self.metrics_path)
        logger.info("epoch %s: new best mean Dice %.4f, saved %s", epoch, score, self.model_path)
