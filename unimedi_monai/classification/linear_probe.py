# SPDX-License-Identifier: Apache-2.0
"""Linear probe: one linear layer trained on cached frozen-encoder features."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from unimedi_monai.classification.features import extract_features
from unimedi_monai.classification.metrics import (
    classification_metrics,
    predict_probabilities,
    write_classification_report,
)
from unimedi_monai.classification.tasks import ClassificationTask, fraction_indices
from unimedi_monai.io.checkpoint import atomic_save

__all__ = ["LinearProbeResult", "train_linear_probe", "labels_tensor", "run_linear_probe"]

logger = logging.getLogger(__name__)


@dataclass
class LinearProbeResult:
    """A trained linear layer on raw features: ``logits = features @ weight.T + bias``.

    Attributes:
        weight: ``(C, F)``.
        bias: ``(C,)``.
        best_epoch: epoch of the best validation key metric (the last epoch without validation data).
        best_metric: that metric's value (NaN without validation data).
        history: ``{"epoch", "loss", "val_<key metric>"}`` rows, one per validation.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    best_epoch: int
    best_metric: float
    history: list[dict[str, float]] = field(default_factory=list)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return features.float() @ self.weight.T + self.bias


def labels_tensor(items: Sequence[Mapping], task: ClassificationTask) -> torch.Tensor:
    """Labels of items: ``(N,)`` long (single-label) or ``(N, C)`` float with ``-1`` = ignored."""
    if task.multi_label:
        return torch.tensor([list(map(float, i["label"])) for i in items], dtype=torch.float32).reshape(
            -1, task.num_classes
        )
    return torch.tensor([int(i["label"]) for i in items], dtype=torch.long)


def train_linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    task: ClassificationTask,
    val_x: torch.Tensor | None = None,
    val_y: torch.Tensor | None = None,
    epochs: int = 300,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    batch_size: int | None = None,
    val_interval: int = 10,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> LinearProbeResult:
    """Train a linear layer on features with AdamW; keep the weights of the best validation key metric.

    Features are standardised with the training mean / std (the standardisation is folded into the
    returned weights, so they apply to raw features).

    Args:
        train_x: ``(N, F)`` features; ``train_y``: labels from :func:`labels_tensor`.
        task: the task (loss and key metric).
        val_x / val_y: validation features and labels (None: keep the last epoch).
        epochs: passes over the training features.
        lr / weight_decay: AdamW settings.
        batch_size: mini-batch size, None for full-batch steps.
        val_interval: epochs between validations.
        seed: seed of the initialisation and mini-batch order.
        device: where to train.
    """
    if train_x.ndim != 2 or train_x.shape[0] != train_y.shape[0] or train_x.shape[0] == 0:
        raise ValueError(
            f"linear probe: features {tuple(train_x.shape)} and labels {tuple(train_y.shape)} do not match."
        )
    gen = torch.Generator().manual_seed(seed)
    x = train_x.float().to(device)
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp(min=1e-6)
    x = (x - mean) / std
    y = train_y.to(device)
    layer = nn.Linear(x.shape[1], task.num_classes).to(device)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.01)
        layer.bias.zero_()
    loss_fn = task.loss()
    opt = torch.optim.AdamW(layer.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    n = x.shape[0]
    bs = n if not batch_size or batch_size >= n else int(batch_size)
    best_state, best_epoch, best_metric, history = None, epochs, float("nan"), []
    has_val = val_x is not None and val_y is not None and len(val_y) > 0
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n, generator=gen).to(device) if bs < n else None
        for start in range(0, n, bs):
            idx = order[start : start + bs] if order is not None else slice(None)
            loss = loss_fn(layer(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        if has_val and (epoch % val_interval == 0 or epoch == epochs):
            with torch.no_grad():
                probs = predict_probabilities(layer((val_x.float().to(device) - mean) / std), task).cpu()
            value = classification_metrics(probs, val_y.cpu(), task)[task.key_metric]
            history.append({"epoch": epoch, "loss": float(loss.detach()), f"val_{task.key_metric}": value})
            if best_state is None or value > best_metric:
                best_state, best_epoch, best_metric = copy.deepcopy(layer.state_dict()), epoch, value
    if best_state is not None:
        layer.load_state_dict(best_state)
    weight = (layer.weight.detach() / std).cpu()
    bias = (layer.bias.detach() - (layer.weight.detach() / std) @ mean).cpu()
    return LinearProbeResult(weight, bias, best_epoch, best_metric, history)


def run_linear_probe(
    network: nn.Module,
    task: ClassificationTask,
    splits: Mapping[str, Sequence[Mapping]],
    transform: Callable,
    data_pct: float,
    output_dir: str | os.PathLike,
    model_path: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    transform_settings: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    seed: int = 0,
    epochs: int = 300,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    batch_size: int | None = None,
    val_interval: int = 10,
    feature_batch_size: int = 32,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """The bundle's linear-probe protocol on one label fraction.

    1. Features of the whole training split, the validation and the test split (cached; the
       fraction is taken from the cached training features, so 1% / 10% / 100% share one cache).
    2. :func:`train_linear_probe` on the ``data_pct`` fraction
       (:func:`~unimedi_monai.classification.tasks.fraction_indices`), best epoch by the validation key metric.
    3. The head is copied into ``network.head``; the whole classifier is saved to ``model_path``
       (atomically) for inference; test metrics go to ``output_dir/metrics.json`` with a
       confusion-matrix PNG.

    Returns:
        the test metrics.
    """

    def feats(section: str) -> torch.Tensor:
        return extract_features(
            network,
            splits[section],
            transform,
            cache_dir,
            transform_settings,
            device,
            feature_batch_size,
            num_workers,
            progress,
        )

    train_all, val_x, test_x = feats("training"), feats("validation") if splits["validation"] else None, feats("test")
    keep = fraction_indices(task, splits["training"], data_pct, seed)
    train_y = labels_tensor(splits["training"], task)[keep]
    val_y = labels_tensor(splits["validation"], task) if val_x is not None else None
    logger.info("linear probe: %d of %d training images (data_pct %s)", len(keep), len(splits["training"]), data_pct)
    result = train_linear_probe(
        train_all[keep], train_y, task, val_x, val_y, epochs, lr, weight_decay, batch_size, val_interval, seed, device
    )
    with torch.no_grad():
        network.head.weight.copy_(result.weight.to(network.head.weight.device))
        network.head.bias.copy_(result.bias.to(network.head.bias.device))
    atomic_save(network.state_dict(), model_path)
    probs = predict_probabilities(result.logits(test_x), task)
    run_settings = {
        **dict(settings or {}),
        "num_train": len(keep),
        "best_epoch": result.best_epoch,
        f"best_val_{task.key_metric}": result.best_metric,
    }
    metrics = write_classification_report(probs, labels_tensor(splits["test"], task), task, output_dir, run_settings)
    logger.info("linear probe test: accuracy %.4f, auc %.4f", metrics["accuracy"], metrics["auc"])
    return metrics
