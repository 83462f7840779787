# SPDX-License-Identifier: Apache-2.0
"""Inference: class probabilities of X-ray files, one JSON per image."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from unimedi_monai.classification.metrics import predict_probabilities
from unimedi_monai.classification.tasks import ClassificationTask
from unimedi_monai.io.atomic_io import write_json_atomic

__all__ = ["prediction_names", "predict_to_json"]

logger = logging.getLogger(__name__)


def prediction_names(files: Sequence[str]) -> list[str]:
    """The output name (without ``.json``) of each input: its file name, or its whole path with ``__`` for
    the folder separators when two inputs share a file name."""
    names = [Path(f).name for f in files]
    if len(set(names)) != len(names):
        names = [str(Path(f).resolve()).strip(os.sep).replace(os.sep, "__") for f in files]
    return names


@torch.no_grad()
def predict_to_json(
    network: nn.Module,
    task: ClassificationTask,
    files: Sequence[str],
    transform: Callable,
    output_dir: str | os.PathLike,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    num_workers: int = 0,
    progress: bool = True,
) -> list[Path]:
    """Write ``output_dir/<image name>.json`` per file: ``{"image", "probabilities": {class: p}, "prediction"}``.

    ``prediction`` is the most probable class (single-label) or the classes above 0.5 (multi-label).
    Files are written atomically. Names of the outputs keep the input's file name with
    ``.json`` appended (``a.png`` -> ``a.png.json``), so inputs that differ only by suffix do not collide.

    Returns:
        the written JSON paths, in input order.
    """
    from monai.data import DataLoader, Dataset
    from tqdm import tqdm

    network.eval()
    items = [{"image": f} for f in files]
    names = prediction_names(files)
    loader = DataLoader(Dataset(items, transform), batch_size=batch_size, num_workers=num_workers, shuffle=False)
    written: list[Path] = []
    for batch in tqdm(loader, desc="inference", disable=not progress):
        probs = predict_probabilities(network(batch["image"].to(device)).float(), task).cpu()
        for p in probs:
            index = len(written)
            scores = {name: float(v) for name, v in zip(task.class_names, p)}
            pred = [n for n, v in scores.items() if v > 0.5] if task.multi_label else max(scores, key=scores.get)
            out = Path(output_dir) / f"{names[index]}.json"
            write_json_atomic(
                {"image": str(files[index]), "probabilities": scores, "prediction": pred, "task": task.name}, out
            )
            written.append(out)
    logger.info("wrote %d predictions to %s", len(written), output_dir)
    return written
