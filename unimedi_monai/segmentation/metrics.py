# SPDX-License-Identifier: Apache-2.0
"""Per-organ and mean Dice of a MONAI evaluator, written to ``eval/metrics.json`` (atomically)."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from ignite.engine import Engine, Events

from unimedi_monai.atomic_io import write_json_atomic

__all__ = ["per_organ_dice", "organ_dice_report", "OrganDiceWriter"]

logger = logging.getLogger(__name__)


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
        values = torch.as_tensor(details[metric_name], dtype=torch.float64).reshape(-1, torch.as_tensor(details[metric_name]).shape[-1])
        present = ~torch.isnan(values)
        sums = torch.where(present, values, torch.zeros_like(values)).sum(0)
        counts = present.sum(0)
        return torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, float("nan")))
    if metric_name not in engine.state.metrics:
        raise KeyError(f"the evaluator has no metric '{metric_name}'; add a MeanDice(include_background=False, reduction='mean_batch') under that name to additional_metrics.")
    return torch.as_tensor(engine.state.metrics[metric_name], dtype=torch.float64)


def organ_dice_report(per_organ: torch.Tensor | Sequence[float], organ_names: Sequence[str], **extra: Any) -> dict[str, Any]:
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
        raise ValueError(f"got {len(values)} per-organ Dice values for {len(organ_names)} organ names; check out_channels against the organ list.")
    organ = {name: (None if math.isnan(v) else v) for name, v in zip(organ_names, values)}
    present = [v for v in organ.values() if v is not None]
    report: dict[str, Any] = {"mean_dice": sum(present) / len(present) if present else None, "organ_dice": organ}
    report.update(extra)
    return report


class OrganDiceWriter:
    """At the end of each evaluation, write the per-organ and mean Dice to a JSON file.

    Attach to a ``SupervisedEvaluator`` whose metric ``metric_name`` is a ``MeanDice(include_background=False,
    reduction="mean_batch")`` (one value per organ).

    Args:
        path: the JSON file (e.g. ``eval/metrics.json``), written atomically.
        organ_names: organ names of the labels 1..N.
        metric_name: the evaluator metric holding the per-organ Dice.
        extra: constant entries added to the file (e.g. the checkpoint evaluated).

    Example::

        OrganDiceWriter("eval/metrics.json", BCV_ORGANS).attach(evaluator)
    """

    def __init__(self, path: str | os.PathLike, organ_names: Sequence[str], metric_name: str = "val_organ_dice", extra: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.organ_names = list(organ_names)
        self.metric_name = metric_name
        self.extra = dict(extra or {})
        self.last_report: dict[str, Any] | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        report = organ_dice_report(
            per_organ_dice(engine, self.metric_name), self.organ_names, num_cases=len(engine.data_loader.dataset) if hasattr(engine.data_loader, "dataset") else None, **self.extra
        )
        write_json_atomic(report, self.path)
        self.last_report = report
        logger.info("mean Dice %s over %d organs written to %s", report["mean_dice"], len(self.organ_names), self.path)
