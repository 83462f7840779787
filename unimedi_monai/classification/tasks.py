# SPDX-License-Identifier: Apache-2.0
"""Classification tasks (COVIDx, CheXpert, RSNA Pneumonia, demo): classes, metrics, splits and fractions.

A :class:`ClassificationTask` says what a dataset's labels mean (class names, single- or
multi-label), which metric picks the best checkpoint and which text prompts describe each class
for zero-shot classification. :func:`prepare_splits` reads the dataset with its adapter and makes
patient-disjoint training / validation / test sections; :func:`training_fraction` draws the 1% /
10% / 100% label fractions from the training section.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from unimedi_monai.data.adapters.chexpert import CHEXPERT_COMPETITION
from unimedi_monai.data.adapters.covidx import COVIDX_CLASSES
from unimedi_monai.data.adapters.rsna_pneumonia import RSNA_CLASSES
from unimedi_monai.data.datalist import warn_duplicate_images
from unimedi_monai.data.fractions import select_fraction

__all__ = [
    "ClassificationTask",
    "DATASETS",
    "get_task",
    "prepare_splits",
    "fraction_indices",
    "training_fraction",
    "class_counts",
    "warn_empty_classes",
]

logger = logging.getLogger(__name__)

DATASETS = ("covidx", "chexpert", "rsna", "demo")
"""Values of the bundles' ``dataset`` key."""

DEMO_CLASSES = ("normal", "nodule", "mass", "consolidation", "effusion")


@dataclass(frozen=True)
class ClassificationTask:
    """What a classification dataset's labels are and how a model is scored on them.

    Args:
        name: ``covidx``, ``chexpert``, ``rsna`` or ``demo``.
        class_names: one name per output logit.
        multi_label: independent sigmoid outputs (CheXpert) instead of one softmax.
        key_metric: the metric that picks the best checkpoint (``auc`` or ``accuracy``).
        prompts: zero-shot text prompts per class name.
    """

    name: str
    class_names: tuple[str, ...]
    multi_label: bool = False
    key_metric: str = "auc"
    prompts: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def stratify_key(self, item: Mapping) -> Hashable:
        """The class (single-label) or label pattern (multi-label) used to stratify fractions."""
        label = item["label"]
        return tuple(float(v) for v in label) if self.multi_label else int(label)

    def loss(self) -> Any:
        """Cross-entropy (single-label) or BCE ignoring ``-1`` labels (multi-label)."""
        import torch

        from unimedi_monai.classification.losses import MaskedBCEWithLogitsLoss

        return MaskedBCEWithLogitsLoss() if self.multi_label else torch.nn.CrossEntropyLoss()


_PROMPTS = {
    "normal": ["chest x-ray with no acute cardiopulmonary abnormality", "normal chest radiograph, the lungs are clear"],
    "negative": [
        "chest x-ray with no acute cardiopulmonary abnormality",
        "normal chest radiograph, the lungs are clear",
    ],
    "pneumonia": ["chest x-ray showing pneumonia", "airspace consolidation consistent with pneumonia"],
    "COVID-19": [
        "chest x-ray showing COVID-19 pneumonia",
        "bilateral peripheral ground-glass opacities typical of COVID-19",
    ],
    "positive": [
        "chest x-ray showing COVID-19 pneumonia",
        "bilateral peripheral ground-glass opacities typical of COVID-19",
    ],
    "Atelectasis": ["chest x-ray showing atelectasis"],
    "Cardiomegaly": ["chest x-ray showing cardiomegaly, the heart is enlarged"],
    "Consolidation": ["chest x-ray showing consolidation"],
    "Edema": ["chest x-ray showing pulmonary edema"],
    "Pleural Effusion": ["chest x-ray showing a pleural effusion"],
    "nodule": ["a solitary pulmonary nodule", "well-circumscribed pulmonary nodule"],
    "mass": ["a large lung mass", "lobulated mass in the lung"],
    "consolidation": ["airspace consolidation in the lung", "hazy consolidation"],
    "effusion": ["pleural effusion at the lung base", "pleural effusion layering dependently"],
}


def get_task(
    dataset: str, covidx_variant: str = "3class", prompts: Mapping[str, Sequence[str]] | None = None
) -> ClassificationTask:
    """The task of a ``dataset`` key value.

    Args:
        dataset: one of :data:`DATASETS`.
        covidx_variant: ``"3class"`` or ``"2class"`` (COVIDx only).
        prompts: zero-shot prompts per class overriding the defaults (e.g. from the bundle's ``prompts`` key).

    Raises:
        ValueError: unknown dataset / variant, or prompts naming an unknown class.
    """
    if dataset == "covidx":
        if covidx_variant not in COVIDX_CLASSES:
            raise ValueError(
                f"config key 'covidx_variant' must be one of {sorted(COVIDX_CLASSES)}, got {covidx_variant!r}."
            )
        names, multi, key = COVIDX_CLASSES[covidx_variant], False, "accuracy"
    elif dataset == "chexpert":
        names, multi, key = CHEXPERT_COMPETITION, True, "auc"
    elif dataset == "rsna":
        names, multi, key = RSNA_CLASSES, False, "auc"
    elif dataset == "demo":
        names, multi, key = DEMO_CLASSES, False, "accuracy"
    else:
        raise ValueError(f"config key 'dataset' must be one of {list(DATASETS)}, got {dataset!r}.")
    merged = {n: list(_PROMPTS.get(n, [f"chest x-ray showing {n}"])) for n in names}
    for name, texts in dict(prompts or {}).items():
        if name not in merged:
            raise ValueError(
                f"config key 'prompts' names the class {name!r}, which {dataset} does not have; classes: {list(names)}."
            )
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"config key 'prompts#{name}' must be a non-empty list of non-empty strings.")
        merged[name] = texts
    return ClassificationTask(dataset, tuple(names), multi, key, merged)


def _demo_sections(demo_root: str | os.PathLike, modalities: Sequence[str]) -> dict[str, list[dict]]:
    from unimedi_monai.data.datalist import load_datalist

    data = load_datalist(demo_root, sections=["training", "validation"])
    out = {}
    for section, items in data.items():
        kept = []
        for item in items:
            if item["modality"] in modalities:
                kept.append(
                    {
                        "image": item["image"],
                        "label": DEMO_CLASSES.index(item["finding"]),
                        "class_name": item["finding"],
                        "patient_id": item["patient_id"],
                        "modality": item["modality"],
                    }
                )
        out[section] = kept
    return out


def prepare_splits(
    task: ClassificationTask,
    dataset_dir: str | os.PathLike,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    uncertain: str = "ones",
    covidx_variant: str = "3class",
    modalities: Sequence[str] = ("xray",),
    check_files: bool = True,
    allow_outside_dataset_dir: bool = True,
) -> dict[str, list[dict]]:
    """Patient-disjoint ``training`` / ``validation`` / ``test`` sections of a task's dataset.

    COVIDx: ``test.txt`` is the test set; CheXpert: ``valid.csv``; demo: the demo datalist's
    ``validation`` section. RSNA has no public test labels, so ``test_fraction`` of its patients are
    held out. Validation is ``val_fraction`` of the remaining training patients
    (:func:`~unimedi_monai.data.datalist.split_by_patient`).

    Args:
        task: from :func:`get_task`.
        dataset_dir: the dataset folder (for ``demo``: the generated demo folder).
        val_fraction: share of training patients used for validation.
        test_fraction: share of patients held out for testing (RSNA only).
        seed: seed of the patient splits.
        uncertain: CheXpert uncertain-label policy (``ones`` / ``zeros`` / ``ignore``).
        covidx_variant: ``3class`` / ``2class``.
        modalities: demo only: ``("xray",)`` or ``("xray", "ct")`` (zero-shot on CT volumes).
        check_files: check that the images exist.
        allow_outside_dataset_dir: COVIDx: follow ``train.txt`` / ``test.txt`` file names that lead
            outside ``dataset_dir`` (each logged); False refuses them, naming the file and the line.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``.

    Raises:
        ValueError: when a patient ends up in both training and test.
    """
    from unimedi_monai.data.datalist import split_by_patient

    if task.name == "covidx":
        from unimedi_monai.data.adapters.covidx import load_covidx

        raw = load_covidx(dataset_dir, covidx_variant, check_files, allow_outside_dataset_dir)
    elif task.name == "chexpert":
        from unimedi_monai.data.adapters.chexpert import load_chexpert

        raw = load_chexpert(dataset_dir, uncertain, check_files=check_files)
    elif task.name == "rsna":
        from unimedi_monai.data.adapters.rsna_pneumonia import load_rsna_pneumonia

        rest, test = split_by_patient(
            load_rsna_pneumonia(dataset_dir, check_files)["training"], test_fraction, seed + 1
        )
        raw = {"training": rest, "test": test}
    else:
        demo = _demo_sections(dataset_dir, modalities)
        raw = {"training": demo["training"], "test": demo["validation"]}
    train, val = split_by_patient(raw["training"], val_fraction, seed)
    leaked = {i["patient_id"] for i in train + val} & {i["patient_id"] for i in raw["test"]}
    if leaked:
        raise ValueError(
            f"{dataset_dir}: patients {sorted(leaked)[:3]} are in both the training and the test data; fix the split "
            "files."
        )
    splits = {"training": train, "validation": val, "test": raw["test"]}
    warn_duplicate_images(splits, f"{task.name} data in {dataset_dir}")
    warn_empty_classes(task, train, f"{task.name} data in {dataset_dir}")
    return splits


def class_counts(task: ClassificationTask, items: Sequence[Mapping]) -> dict[str, int]:
    """Images per class: for single-label tasks the items of each class, for multi-label ones the positives."""
    counts = dict.fromkeys(task.class_names, 0)
    for item in items:
        label = item["label"]
        if task.multi_label:
            for name, value in zip(task.class_names, label):
                counts[name] += float(value) == 1.0
        elif 0 <= int(label) < len(task.class_names):
            counts[task.class_names[int(label)]] += 1
    return counts


def warn_empty_classes(task: ClassificationTask, items: Sequence[Mapping], source: str) -> dict[str, int]:
    """Log a warning with the counts when a class has no training image (no positive, for multi-label tasks)."""
    counts = class_counts(task, items)
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        logger.warning(
            "%s: %d of %d classes have no training image (%s); class counts %s: their AUC is undefined and their "
            "logits untrained.",
            source,
            len(empty),
            len(counts),
            ", ".join(empty),
            counts,
        )
    return counts


def fraction_indices(task: ClassificationTask, items: Sequence[Mapping], data_pct: float, seed: int = 0) -> list[int]:
    """Positions in ``items`` of the ``data_pct`` label fraction, stratified by class (label pattern)."""
    positions = list(range(len(items)))
    return select_fraction(positions, data_pct, seed, stratify=lambda i: task.stratify_key(items[i]))


def training_fraction(task: ClassificationTask, items: Sequence[Mapping], data_pct: float, seed: int = 0) -> list[dict]:
    """The ``data_pct`` (0.01 / 0.1 / 1.0) label fraction of the training items, every class present.

    The same positions as :func:`fraction_indices`, so linear-probe and fine-tuning runs of one
    ``data_pct`` and ``seed`` train on the same images.
    """
    return [dict(items[i]) for i in fraction_indices(task, items, data_pct, seed)]
