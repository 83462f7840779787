# SPDX-License-Identifier: Apache-2.0
"""Evaluate a trained classifier on a split: probabilities, metrics.json and the confusion matrix."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from unimedi_monai.classification.linear_probe import labels_tensor
from unimedi_monai.classification.metrics import predict_probabilities, write_classification_report
from unimedi_monai.classification.tasks import ClassificationTask
from unimedi_monai.io.checkpoint import load_weights

__all__ = ["predict_logits", "evaluate_classifier"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def predict_logits(
    network: nn.Module,
    items: Sequence[Mapping],
    transform: Callable,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    num_workers: int = 0,
    progress: bool = True,
) -> torch.Tensor:
    """Logits ``(N, C)`` of ``items`` (eval mode, no gradients), in order."""
    from monai.data import DataLoader, Dataset
    from tqdm import tqdm

    network.eval()
    loader = DataLoader(Dataset(list(items), transform), batch_size=batch_size, num_workers=num_workers, shuffle=False)
    return torch.cat(
        [
            network(b["image"].to(device)).float().cpu()
            for b in tqdm(loader, desc="predict", disable=not progress, leave=False)
        ]
    )


def evaluate_classifier(
    network: nn.Module,
    task: ClassificationTask,
    items: Sequence[Mapping],
    transform: Callable,
    output_dir: str | os.PathLike,
    model_path: str | os.PathLike | None = None,
    settings: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    num_workers: int = 0,
    prefix: str = "",
    progress: bool = True,
) -> dict[str, Any]:
    """Load ``model_path`` (when given, strictly: :func:`unimedi_monai.io.load_weights`), predict ``items`` and write
    ``metrics.json`` + the confusion matrix.

    Returns:
        the metrics (:func:`~unimedi_monai.classification.metrics.classification_metrics`).
    """
    if not items:
        raise ValueError("evaluate_classifier: the evaluation split is empty.")
    if model_path is not None:
        load_weights(network, model_path)
    logits = predict_logits(network, items, transform, device, batch_size, num_workers, progress)
    probs = predict_probabilities(logits, task)
    metrics = write_classification_report(probs, labels_tensor(items, task), task, output_dir, settings, prefix)
    logger.info(
        "%s evaluation on %d images: accuracy %.4f, auc %.4f",
        task.name,
        len(items),
        metrics["accuracy"],
        metrics["auc"],
    )
    return metrics
