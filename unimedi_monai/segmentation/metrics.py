# SPDX-License-Identifier: Apache-2.0
"""Per-organ and mean Dice of a MONAI evaluator: the NaN-skipping mean organ Dice as an evaluator metric
(the key metric that picks the best model), and the per-organ summary in ``eval/metrics.json`` (atomically)."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.handlers import IgniteMetricHandler
from monai.metrics import DiceMetric

from unimedi_monai.io.atomic_io import write_json_atomic

__all__ = [
    "nan_mean_per_organ",
    "mean_organ_dice",
    "per_organ_dice",
    "organ_dice_report",
    "OrganMeanDiceMetric",
    "MeanOrganDice",
    "OrganDiceWriter",
]

logger = logging.getLogger(__name__)


def nan_mean_per_organ(values: torch.Tensor | Sequence[Sequence[float]]) -> torch.Tensor:
    """Per-case Dice ``(cases, organs)`` (NaN where the reference lacks the organ) -> Dice per organ:
    the mean over the cases holding the organ, NaN if none does (float64)."""
    values = torch.as_tensor(values, dtype=torch.float64)
    values = values.reshape(-1, values.shape[-1])
    present = ~torch.isnan(values)
    sums = torch.where(present, values, torch.zeros_like(values)).sum(0)
    counts = present.sum(0)
    return torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, float("nan")))


def mean_organ_dice(per_organ: torch.Tensor | Sequence[float]) -> float:
    """The mean over the organs with a Dice value (NaN-skipping); NaN when no organ has one."""
    present = [v for v in torch.as_tensor(per_organ, dtype=torch.float64).flatten().tolist() if not math.isnan(v)]
    return sum(present) / len(present) if present else float("nan")


def per_organ_dice(engine: Engine, metric_name: str) -> torch.Tensor:
    """Dice per organ of an evaluation: the mean over the cases whose reference holds the organ, NaN if none does.

    Reads the per-case values ``engine.state.metric_details[metric_name]`` (``(cases, organs)``, NaN
    where the reference lacks the organ) that MONAI's ``MeanDice`` keeps with ``save_details=True``;
    MONAI's own reduction would turn an organ absent from every case into 0. Falls back to
    ``engine.state.metrics[metric_name]`` without details.

    Raises:
        KeyError: the evaluator has no such metric.
    """
    details = getattr(engine.state, "metric_details", {}) or {}
    if metric_name in details:
        return nan_mean_per_organ(details[metric_name])
    if metric_name not in engine.state.metrics:
        raise KeyError(
            f"the evaluator has no metric '{metric_name}'; add a MeanDice(include_background=False, "
            "reduction='mean_batch') under that name to additional_metrics."
        )
    return torch.as_tensor(engine.state.metrics[metric_name], dtype=torch.float64)


def organ_dice_report(
    per_organ: torch.Tensor | Sequence[float], organ_names: Sequence[str], **extra: Any
) -> dict[str, Any]:
    """A JSON-ready Dice summary: ``{"mean_dice": m, "organ_dice": {name: dice or None}, **extra}``.

    Args:
        per_organ: Dice per organ (labels 1..N; background excluded), NaN for organs absent from every
            reference label map (MONAI's ``DiceMetric(ignore_empty=True)``), reported as ``null``.
        organ_names: the N organ names.
        extra: further entries (epoch, number of cases, checkpoint, ...).

    Returns:
        the summary; ``mean_dice`` is the mean over the organs with a value (NaN-skipping), None if none.

    Raises:
        ValueError: the number of values and names differ.
    """
    values = [float(v) for v in torch.as_tensor(per_organ, dtype=torch.float64).flatten().tolist()]
    if len(values) != len(organ_names):
        raise ValueError(
            f"got {len(values)} per-organ Dice values for {len(organ_names)} organ names; check out_channels against "
            "the organ list."
        )
    organ = {name: (None if math.isnan(v) else v) for name, v in zip(organ_names, values)}
    mean = mean_organ_dice(values)
    report: dict[str, Any] = {"mean_dice": None if math.isnan(mean) else mean, "organ_dice": organ}
    report.update(extra)
    return report


class OrganMeanDiceMetric(DiceMetric):
    """MONAI's ``DiceMetric`` (per case and organ, NaN where the reference lacks the organ) whose
    :meth:`aggregate` is the mean organ Dice of :func:`organ_dice_report`: each organ's Dice averaged
    over the cases holding it, then the mean over the organs with a value (NaN if none).

    MONAI's own ``"mean"`` reduction averages each case's mean organ Dice over the cases instead (an
    organ present in few cases then weighs less than the others), and its ``"mean_batch"`` turns an
    organ absent from every case into 0.

    Args:
        include_background: score the background channel too (False for organ Dice).
        num_classes: number of classes including the background (None: from the prediction's channels).
    """

    def __init__(self, include_background: bool = False, num_classes: int | None = None) -> None:
        super().__init__(
            include_background=include_background, reduction="none", ignore_empty=True, num_classes=num_classes
        )

    def aggregate(self, reduction: Any = None) -> torch.Tensor:  # type: ignore[override]
        """The mean organ Dice of the cases seen so far, a 0-d float64 tensor (NaN when no organ is in any
        reference)."""
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("OrganMeanDiceMetric: no Dice values buffered yet (call it on a batch first).")
        return torch.tensor(mean_organ_dice(nan_mean_per_organ(data)), dtype=torch.float64)


class MeanOrganDice(IgniteMetricHandler):
    """Evaluator metric: the NaN-skipping mean organ Dice (:class:`OrganMeanDiceMetric`), the segmentation
    bundles' ``key_val_metric`` that :class:`~unimedi_monai.engines.BestModelSaver` keeps the best network by.

    Its value equals the ``mean_dice`` that :class:`OrganDiceWriter` writes for the same validation.

    Args:
        include_background: score the background channel too (False for organ Dice).
        num_classes: number of classes including the background (None: from the prediction's channels).
        output_transform: ``engine.state.output`` -> ``(y_pred, y)``, one-hot (e.g. ``from_engine(["pred", "label"])``).
        save_details: keep the per-case, per-organ Dice in ``engine.state.metric_details``.

    Example::

        SupervisedEvaluator(
            ..., key_val_metric={"val_mean_dice": MeanOrganDice(output_transform=from_engine(["pred", "label"]))}
        )
    """

    def __init__(
        self,
        include_background: bool = False,
        num_classes: int | None = None,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        super().__init__(
            metric_fn=OrganMeanDiceMetric(include_background, num_classes),
            output_transform=output_transform,
            save_details=save_details,
        )


class OrganDiceWriter:
    """At the end of each evaluation, write the per-organ and mean Dice to a JSON file.

    Attach to a ``SupervisedEvaluator`` whose metric ``metric_name`` is a ``MeanDice(include_background=False,
    reduction="mean_batch")`` (one value per organ).

    Args:
        path: the JSON file (e.g. ``eval/metrics.json``), written atomically.
        organ_names: organ names of the labels 1..N.
        metric_name: the evaluator metric holding the per-organ Dice.
        extra: constant entries added to the file (e.g. the checkpoint evaluated).
        record_epoch: add the evaluator's ``epoch`` (the training epoch of a validation run by
            ``ValidationHandler``), e.g. as the ``on_save`` of a ``BestModelSaver``.

    Example::

        OrganDiceWriter("eval/metrics.json", BCV_ORGANS).attach(evaluator)
        BestModelSaver(
            net, "models/model.pt", on_save=[OrganDiceWriter("eval/metrics.json", BCV_ORGANS, record_epoch=True)]
        )
    """

    def __init__(
        self,
        path: str | os.PathLike,
        organ_names: Sequence[str],
        metric_name: str = "val_organ_dice",
        extra: Mapping[str, Any] | None = None,
        record_epoch: bool = False,
    ) -> None:
        self.path = Path(path)
        self.organ_names = list(organ_names)
        self.metric_name = metric_name
        self.extra = dict(extra or {})
        self.record_epoch = bool(record_epoch)
        self.last_report: dict[str, Any] | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        extra = {"epoch": engine.state.epoch, **self.extra} if self.record_epoch else self.extra
        report = organ_dice_report(
            per_organ_dice(engine, self.metric_name),
            self.organ_names,
            num_cases=len(engine.data_loader.dataset) if hasattr(engine.data_loader, "dataset") else None,
            **extra,
        )
        write_json_atomic(report, self.path)
        self.last_report = report
        logger.info("mean Dice %s over %d organs written to %s", report["mean_dice"], len(self.organ_names), self.path)
