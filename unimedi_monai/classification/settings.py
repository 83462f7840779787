# SPDX-License-Identifier: Apache-2.0
"""Checks of the classification bundle's switches and the settings recorded in ``eval/metrics.json``."""

from __future__ import annotations

import os
from typing import Any

from unimedi_monai.classification.metrics import ClassificationMetric
from unimedi_monai.classification.tasks import ClassificationTask
from unimedi_monai.io.checkpoint import INIT_MODES

__all__ = ["MODES", "INITS", "run_settings", "validation_metrics"]

MODES = ("linear_probe", "finetune")
"""Values of the ``mode`` key."""

INITS = INIT_MODES
"""Values of the ``init`` key (those of :func:`unimedi_monai.io.load_weights`)."""


def run_settings(
    task: ClassificationTask,
    mode: str,
    init: str,
    data_pct: float,
    pretrained_path: str | os.PathLike | None,
    backbone: Any,
    seed: int,
    dataset_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Validate the bundle's switches and return them as the ``settings`` of ``metrics.json``.

    Raises:
        ValueError: ``mode``, ``init`` or ``data_pct`` out of range (naming the key and the choices).
        FileNotFoundError: ``init`` is ``pretrained`` and ``pretrained_path`` does not exist.
    """
    if mode not in MODES:
        raise ValueError(f"config key 'mode' must be one of {list(MODES)}, got {mode!r}.")
    if init not in INITS:
        raise ValueError(f"config key 'init' must be one of {list(INITS)}, got {init!r}.")
    if not 0.0 < float(data_pct) <= 1.0:
        raise ValueError(f"config key 'data_pct' must be in (0, 1] (0.01, 0.1 or 1.0 in the paper), got {data_pct}.")
    checkpoint = None
    if init == "pretrained":
        if not pretrained_path or not os.path.isfile(pretrained_path):
            raise FileNotFoundError(
                f"config key 'pretrained_path': {pretrained_path} does not exist; run the pretrain bundle first, "
                "point pretrained_path at its models/model.pt, or set init to random."
            )
        checkpoint = os.path.abspath(pretrained_path)
    return {
        "dataset": task.name,
        "mode": mode,
        "init": init,
        "data_pct": float(data_pct),
        "checkpoint": checkpoint,
        "backbone": backbone if isinstance(backbone, (str, dict)) else str(backbone),
        "seed": int(seed),
        "dataset_dir": None if dataset_dir is None else os.path.abspath(dataset_dir),
    }


def validation_metrics(task: ClassificationTask, key: bool = True) -> dict[str, ClassificationMetric]:
    """Ignite metrics for a MONAI evaluator: ``{"val_<key metric>": ...}`` (``key=True``) or the other
    of ``accuracy`` / ``auc`` (``key=False``, for ``additional_metrics``)."""
    names = [task.key_metric] if key else [m for m in ("accuracy", "auc") if m != task.key_metric]
    return {f"val_{m}": ClassificationMetric(task, m) for m in names}
