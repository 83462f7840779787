# SPDX-License-Identifier: Apache-2.0
"""Zero-shot classification with the pre-trained report encoder: class prompts vs image embeddings."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from unimedi_monai.classification.linear_probe import labels_tensor
from unimedi_monai.classification.metrics import write_classification_report
from unimedi_monai.classification.tasks import ClassificationTask

__all__ = ["class_text_embeddings", "zero_shot_probabilities", "zero_shot_evaluate"]

logger = logging.getLogger(__name__)

NEGATIVE_CLASS = "normal"


@torch.no_grad()
def class_text_embeddings(model: nn.Module, prompts: Mapping[str, Sequence[str]], names: Sequence[str]) -> torch.Tensor:
    """``(C, D)`` unit embeddings: each class's prompts embedded by ``model.encode_text``, averaged, renormalised."""
    model.eval()
    rows = []
    for name in names:
        texts = list(prompts.get(name, ()))
        if not texts:
            raise ValueError(f"zero-shot: no prompt for class {name!r}; add one under the config key 'prompts'.")
        emb = model.encode_text(texts).float().mean(0)
        rows.append(emb / emb.norm().clamp(min=1e-8))
    return torch.stack(rows)


def zero_shot_probabilities(
    image_emb: torch.Tensor,
    class_emb: torch.Tensor,
    task: ClassificationTask,
    negative_emb: torch.Tensor | None = None,
    temperature: float = 0.07,
) -> torch.Tensor:
    """Class probabilities from unit image embeddings ``(N, D)`` and class embeddings ``(C, D)``.

    Single-label: softmax over the ``C`` cosine similarities / ``temperature``. Multi-label: per class
    a softmax over (the class prompt, the ``negative_emb`` "no finding" prompt), i.e. the probability
    that the finding's description fits better than a normal study's.
    """
    sim = image_emb.float() @ class_emb.float().T / temperature
    if not task.multi_label:
        return sim.softmax(-1)
    if negative_emb is None:
        raise ValueError("zero-shot for a multi-label task needs the embedding of a negative ('normal') prompt.")
    neg = (image_emb.float() @ negative_emb.float().reshape(-1, 1)) / temperature
    return torch.sigmoid(sim - neg)


@torch.no_grad()
def zero_shot_evaluate(
    model: nn.Module,
    task: ClassificationTask,
    items: Sequence[Mapping],
    transforms: Mapping[str, Callable],
    output_dir: str | os.PathLike,
    settings: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    num_workers: int = 0,
    negative_prompts: Sequence[str] = ("chest x-ray with no acute cardiopulmonary abnormality",),
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Zero-shot classify ``items`` per modality (X-rays and / or CT volumes) with a pre-trained UniMedI.

    Image embeddings come from ``model.encode_image`` (CTs with the teacher-selected slices, as in
    pre-training), class embeddings from :func:`class_text_embeddings` of ``task.prompts``; the
    probabilities are scored against the labels and written to
    ``output_dir/zero_shot_<modality>_metrics.json`` (+ confusion matrix), with the chance levels.

    Args:
        model: a :class:`~unimedi_monai.networks.UniMedI` with its pre-trained weights.
        task: the task (class names, prompts).
        items: labelled items with ``image``, ``label`` and ``modality``.
        transforms: ``{"xray": ..., "ct": ...}`` evaluation transforms.
        output_dir: where the reports go.

    Returns:
        ``{modality: metrics}``.
    """
    from monai.data import DataLoader, Dataset
    from tqdm import tqdm

    model.eval()
    contrastive = getattr(model, "contrastive_loss", None)
    temperature = float(getattr(contrastive, "temperature", 0.07))
    class_emb = class_text_embeddings(model, task.prompts, task.class_names).to(device)
    negative = model.encode_text(list(negative_prompts)).float().mean(0) if task.multi_label else None
    if negative is not None:
        negative = negative / negative.norm().clamp(min=1e-8)
    results = {}
    for modality in ("xray", "ct"):
        subset = [i for i in items if i.get("modality", "xray") == modality]
        if not subset:
            continue
        if modality not in transforms:
            raise ValueError(f"zero-shot: {len(subset)} {modality} items but no '{modality}' transform.")
        loader = DataLoader(Dataset(subset, transforms[modality]), batch_size=batch_size, num_workers=num_workers)
        embs = [
            model.encode_image(b["image"].to(device))[0].float()
            for b in tqdm(loader, desc=f"zero-shot {modality}", disable=not progress, leave=False)
        ]
        probs = zero_shot_probabilities(torch.cat(embs), class_emb, task, negative, temperature).cpu()
        results[modality] = write_classification_report(
            probs,
            labels_tensor(subset, task),
            task,
            output_dir,
            {**dict(settings or {}), "modality": modality},
            prefix=f"zero_shot_{modality}_",
        )
        logger.info(
            "zero-shot %s (%d images): accuracy %.4f (chance %.4f), auc %.4f",
            modality,
            len(subset),
            results[modality]["accuracy"],
            results[modality].get("chance_accuracy", float("nan")),
            results[modality]["auc"],
        )
    if not results:
        raise ValueError("zero-shot: no X-ray or CT items to classify.")
    return results
