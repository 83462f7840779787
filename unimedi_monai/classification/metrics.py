# SPDX-License-Identifier: Apache-2.0
"""Classification metrics (accuracy, macro / per-class AUC with MONAI's ROC AUC), the
confusion-matrix picture, the ``eval/metrics.json`` report and an ignite metric for evaluators."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.metrics import Metric

from unimedi_monai.classification.tasks import ClassificationTask
from unimedi_monai.io.atomic_io import atomic_open, write_json_atomic

__all__ = [
    "predict_probabilities",
    "classification_metrics",
    "confusion_matrix",
    "plot_confusion_matrix",
    "write_classification_report",
    "ClassificationMetric",
]


def predict_probabilities(logits: torch.Tensor, task: ClassificationTask) -> torch.Tensor:
    """Softmax (single-label) or sigmoid (multi-label) of ``(N, C)`` logits."""
    return torch.sigmoid(logits) if task.multi_label else torch.softmax(logits, dim=-1)


def _auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """AUC of one class; NaN when only one class is present.

    Computed by :func:`monai.metrics.compute_roc_auc`, the function behind MONAI's ``ROCAUCMetric``,
    called directly because ``ROCAUCMetric`` gathers its buffers across processes: under DDP a
    metric computed by one rank (or on a split every rank holds whole) must not synchronise.
    """
    from monai.metrics import compute_roc_auc

    if labels.numel() == 0 or labels.min() == labels.max():
        return float("nan")
    return float(compute_roc_auc(scores.reshape(-1).float(), labels.reshape(-1).float()))


def confusion_matrix(probs: torch.Tensor, labels: torch.Tensor, task: ClassificationTask) -> np.ndarray:
    """Counts ``(C, C)`` (rows: true class, columns: predicted) or, multi-label, ``(C, 2, 2)`` at 0.5."""
    probs, labels = torch.as_tensor(probs), torch.as_tensor(labels)
    c = task.num_classes
    if not task.multi_label:
        pred = probs.argmax(-1)
        return np.bincount(labels.long().numpy() * c + pred.numpy(), minlength=c * c).reshape(c, c)
    out = np.zeros((c, 2, 2), dtype=np.int64)
    for k in range(c):
        keep = labels[:, k] >= 0
        true, pred = labels[keep, k].long().numpy(), (probs[keep, k] > 0.5).long().numpy()
        out[k] = np.bincount(true * 2 + pred, minlength=4).reshape(2, 2)
    return out


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor, task: ClassificationTask) -> dict[str, Any]:
    """Accuracy and AUC of class probabilities against labels.

    Single-label: ``accuracy`` (argmax), ``auc`` (macro one-vs-rest AUC over the classes present),
    ``auc_<class>`` per class, ``chance_accuracy`` (the largest class share) and ``chance_auc`` (0.5).
    Multi-label (labels ``-1`` are left out): ``auc`` = mean of the per-class AUCs, ``auc_<class>``,
    ``accuracy`` = share of correct labels at threshold 0.5, ``accuracy_<class>``.

    Args:
        probs: ``(N, C)`` probabilities.
        labels: ``(N,)`` class indices or ``(N, C)`` multi-hot labels (``-1`` = ignored).
        task: the task.

    Returns:
        the metrics (floats; an AUC of a class without positives and negatives is NaN, written as null).
    """
    probs, labels = torch.as_tensor(probs).float().cpu(), torch.as_tensor(labels).cpu()
    if probs.ndim != 2 or probs.shape[1] != task.num_classes:
        raise ValueError(f"probabilities must be (N, {task.num_classes}), got {tuple(probs.shape)}.")
    out: dict[str, Any] = {"num_samples": int(probs.shape[0]), "chance_auc": 0.5}
    aucs = []
    if not task.multi_label:
        labels = labels.long().reshape(-1)
        out["accuracy"] = float((probs.argmax(-1) == labels).float().mean()) if len(labels) else float("nan")
        counts = torch.bincount(labels, minlength=task.num_classes)
        out["chance_accuracy"] = int(counts.max()) / max(len(labels), 1)
        for k, name in enumerate(task.class_names):
            out[f"auc_{name}"] = _auc(probs[:, k], (labels == k).long())
            out[f"count_{name}"] = int(counts[k])
        if task.num_classes == 2:
            aucs = [out[f"auc_{task.class_names[1]}"]]
        else:
            aucs = [out[f"auc_{n}"] for n in task.class_names]
    else:
        labels = labels.float()
        correct = total = 0
        for k, name in enumerate(task.class_names):
            keep = labels[:, k] >= 0
            y, p = labels[keep, k], probs[keep, k]
            out[f"auc_{name}"] = _auc(p, y.long())
            hits = int(((p > 0.5).float() == y).sum())
            out[f"accuracy_{name}"] = hits / max(int(keep.sum()), 1)
            correct, total = correct + hits, total + int(keep.sum())
            aucs.append(out[f"auc_{name}"])
        out["accuracy"] = correct / max(total, 1)
    valid = [a for a in aucs if not math.isnan(a)]
    out["auc"] = float(np.mean(valid)) if valid else float("nan")
    return out


def plot_confusion_matrix(
    matrix: np.ndarray, task: ClassificationTask, path: str | os.PathLike, title: str = ""
) -> Path:
    """Write the confusion matrix (or the per-class 2x2 matrices of a multi-label task) as a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mats = (
        [(matrix, list(task.class_names), title)]
        if not task.multi_label
        else [(matrix[k], ["neg", "pos"], name) for k, name in enumerate(task.class_names)]
    )
    fig, axes = plt.subplots(
        1, len(mats), figsize=(max(4.0, 0.9 * task.num_classes + 2) if len(mats) == 1 else 2.6 * len(mats), 3.6)
    )
    axes = np.atleast_1d(axes)
    for ax, (m, names, sub) in zip(axes, mats):
        ax.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, str(int(v)), ha="center", va="center", color="black" if v < m.max() / 2 + 1e-9 else "white")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(sub, fontsize=9)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_classification_report(
    probs: torch.Tensor,
    labels: torch.Tensor,
    task: ClassificationTask,
    output_dir: str | os.PathLike,
    settings: Mapping[str, Any] | None = None,
    prefix: str = "",
) -> dict[str, Any]:
    """Compute :func:`classification_metrics`, write ``<prefix>metrics.json`` (metrics + the run's
    ``settings``) and ``<prefix>confusion_matrix.png`` under ``output_dir``; return the metrics."""
    metrics = classification_metrics(probs, labels, task)
    output_dir = Path(output_dir)
    plot_confusion_matrix(
        confusion_matrix(probs, labels, task), task, output_dir / f"{prefix}confusion_matrix.png", title=task.name
    )
    report = {
        **metrics,
        "task": task.name,
        "classes": list(task.class_names),
        "key_metric": task.key_metric,
        "settings": dict(settings or {}),
    }
    write_json_atomic(_json_safe(report), output_dir / f"{prefix}metrics.json")
    return metrics


class ClassificationMetric(Metric):
    """An ignite metric (for MONAI evaluators' ``key_val_metric``) that gathers logits and labels
    over an epoch and returns one value of :func:`classification_metrics`.

    Args:
        task: the task.
        name: the metric to return (``"auc"``, ``"accuracy"``, ``"auc_<class>"``...).
        output_transform: maps the engine output to ``(logits, labels)``; default reads the
            ``pred`` and ``label`` entries of a (non-decollated) batch output.

    Example::

        evaluator = SupervisedEvaluator(..., decollate=False,
                                        key_val_metric={"val_auc": ClassificationMetric(task, "auc")})
    """

    def __init__(self, task: ClassificationTask, name: str = "auc", output_transform: Callable | None = None) -> None:
        self.task = task
        self.name = name
        self._logits: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        super().__init__(output_transform=output_transform or (lambda out: (out["pred"], out["label"])))

    def reset(self) -> None:
        self._logits, self._labels = [], []

    def update(self, output: tuple[torch.Tensor, torch.Tensor]) -> None:
        logits, labels = output
        self._logits.append(torch.as_tensor(logits).detach().float().cpu())
        self._labels.append(torch.as_tensor(labels).detach().cpu())

    def compute(self) -> float:
        if not self._logits:
            raise RuntimeError(f"ClassificationMetric '{self.name}': no batches were evaluated.")
        probs = predict_probabilities(torch.cat(self._logits), self.task)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = classification_metrics(probs, torch.cat(self._labels), self.task)[self.name]
        return float(value)
