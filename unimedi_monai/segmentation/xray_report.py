# SPDX-License-Identifier: Apache-2.0
"""Evaluation outputs of the 2D segmentation bundle: Dice and IoU to ``eval/metrics.json`` and an overlay figure.

The metrics are MONAI's (``MeanDice`` and ``MeanIoU`` handlers with ``include_background=False``,
``reduction="mean_batch"``: one value per class, the mean over the images whose reference holds the
class; an image whose reference is empty is skipped, MONAI's ``ignore_empty``). This handler reads
them from the evaluator and writes them, with a PNG showing a few test images with the reference
(green) and the prediction (red) outlined.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from unimedi_monai.io.atomic_io import atomic_open, write_json_atomic
from unimedi_monai.segmentation.metrics import organ_dice_report, per_organ_dice

__all__ = ["SegmentationReportWriter", "save_overlays"]

logger = logging.getLogger(__name__)


def _outline(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a boolean mask (inside, with a 4-neighbour outside)."""
    padded = np.pad(mask, 1)
    inner = padded[1:-1, :-2] & padded[1:-1, 2:] & padded[:-2, 1:-1] & padded[2:, 1:-1]
    return mask & ~inner


def save_overlays(
    images: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    predictions: Sequence[np.ndarray],
    path: str | os.PathLike,
    titles: Sequence[str] | None = None,
) -> Path:
    """Write a PNG of ``(H, W)`` images with their reference (green) and predicted (red) foreground outlined.

    Args:
        images: grey images (any range, shown min-max).
        references: reference class maps (foreground: > 0).
        predictions: predicted class maps.
        path: the PNG file, written atomically.
        titles: one title per image (e.g. its Dice).
    """
    from PIL import Image

    tiles = []
    for image, ref, pred in zip(images, references, predictions):
        grey = np.asarray(image, dtype=np.float32)
        lo, hi = float(grey.min()), float(grey.max())
        grey = (grey - lo) / (hi - lo) if hi > lo else np.zeros_like(grey)
        rgb = np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=-1)
        ref_b, pred_b = np.asarray(ref) > 0, np.asarray(pred) > 0
        rgb[ref_b] = (0.7 * rgb[ref_b] + 0.3 * np.array([0, 255, 0])).astype(np.uint8)  # reference: green tint
        rgb[_outline(ref_b)] = (0, 255, 0)
        rgb[_outline(pred_b)] = (255, 0, 0)  # prediction: red outline
        tiles.append(rgb)
    if not tiles:
        raise ValueError("save_overlays needs at least one image.")
    h = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, h - t.shape[0]), (0, 4), (0, 0)), constant_values=255) for t in tiles]
    canvas = np.concatenate(tiles, axis=1)
    target = Path(path)
    with atomic_open(target, "wb") as f:
        Image.fromarray(canvas).save(f, format="PNG")
    if titles:
        logger.info("overlays %s: %s", target, ", ".join(titles))
    return target


class SegmentationReportWriter:
    """At the end of an evaluation, write Dice and IoU per class and their means, and an overlay PNG.

    Attach to a ``SupervisedEvaluator`` whose metrics ``dice_metric`` and ``iou_metric`` are MONAI
    ``MeanDice`` / ``MeanIoU`` with ``include_background=False, reduction="mean_batch"`` and whose
    post-processing gives one-hot ``pred`` and ``label``.

    Args:
        path: the JSON file (``eval/metrics.json``), written atomically: ``{"dice", "iou",
            "class_dice", "class_iou", "num_images", **extra}``.
        class_names: names of the classes 1..N.
        overlay_path: the PNG of the first ``num_overlays`` images (None: no figure).
        num_overlays: images in the figure.
        dice_metric: evaluator metric of the per-class Dice.
        iou_metric: evaluator metric of the per-class IoU.
        extra: constant entries added to the file (checkpoint, label fraction...).

    Example::

        SegmentationReportWriter("eval/metrics.json", ["pneumonia"], "eval/overlays.png").attach(evaluator)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        class_names: Sequence[str],
        overlay_path: str | os.PathLike | None = None,
        num_overlays: int = 4,
        dice_metric: str = "test_class_dice",
        iou_metric: str = "test_class_iou",
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.class_names = list(class_names)
        self.overlay_path = Path(overlay_path) if overlay_path is not None else None
        self.num_overlays = int(num_overlays)
        self.dice_metric, self.iou_metric = dice_metric, iou_metric
        self.extra = dict(extra or {})
        self._samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._count = 0
        self.last_report: dict[str, Any] | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self._samples, self._count = [], 0

    def _collect(self, engine: Engine) -> None:
        output = engine.state.output
        items = output if isinstance(output, list) else [output]
        for item in items:
            self._count += 1
            if len(self._samples) >= self.num_overlays or not isinstance(item, Mapping):
                continue
            image = torch.as_tensor(item["image"]).detach().cpu().float()[0].numpy()
            pred = torch.as_tensor(item["pred"]).detach().cpu().argmax(0).numpy()
            label = torch.as_tensor(item["label"]).detach().cpu()
            label = (label.argmax(0) if label.shape[0] > 1 else label[0]).numpy()
            self._samples.append((image, label, pred))

    def __call__(self, engine: Engine) -> None:
        dice = organ_dice_report(per_organ_dice(engine, self.dice_metric), self.class_names)
        iou = organ_dice_report(per_organ_dice(engine, self.iou_metric), self.class_names)
        report: dict[str, Any] = {
            "dice": dice["mean_dice"],
            "iou": iou["mean_dice"],
            "class_dice": dice["organ_dice"],
            "class_iou": iou["organ_dice"],
            "num_images": self._count,
            **self.extra,
        }
        if self.overlay_path is not None and self._samples:
            save_overlays(*zip(*self._samples), path=self.overlay_path)
            report["overlays"] = str(self.overlay_path)
        write_json_atomic(report, self.path)
        self.last_report = report
        logger.info(
            "Dice %s, IoU %s over %d images written to %s", report["dice"], report["iou"], self._count, self.path
        )
