# SPDX-License-Identifier: Apache-2.0
"""COVIDx CXR datalist adapter: ``train.txt`` / ``test.txt`` into classification items.

The published COVIDx layout (COVID-Net, versions 8 and 9)::

    dataset_dir/
        train.txt      # one image per line: "patientid filename label source"
        test.txt
        train/         # the images named in train.txt
        test/

Labels are ``normal`` / ``pneumonia`` / ``COVID-19`` (3-class variant, COVIDx 8A and earlier) or
``positive`` / ``negative`` (2-class variant, COVIDx 8B / 9B). With ``variant="2class"`` a 3-class
file is accepted too: ``COVID-19`` is positive, ``normal`` and ``pneumonia`` negative.

Example::

    sections = load_covidx("/data/covidx", variant="3class")
    sections["training"][0]
    # {'image': '/data/covidx/train/a.png', 'label': 2, 'class_name': 'COVID-19',
    #  'patient_id': '3', 'source': 'cohen', 'modality': 'xray'}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from unimedi_monai.data.datalist import OutsideDatasetLog

__all__ = ["COVIDX_CLASSES", "read_covidx_split", "load_covidx"]

COVIDX_CLASSES: dict[str, tuple[str, ...]] = {
    "3class": ("normal", "pneumonia", "COVID-19"),
    "2class": ("negative", "positive"),
}
"""Class names (in label-index order) of the two COVIDx variants."""

_ALIASES_3 = {"normal": 0, "pneumonia": 1, "covid-19": 2, "covid19": 2, "covid": 2}
_ALIASES_2 = {"negative": 0, "positive": 1, "normal": 0, "pneumonia": 0, "covid-19": 1, "covid19": 1, "covid": 1}


def read_covidx_split(
    list_file: str | os.PathLike,
    image_dir: str | os.PathLike,
    variant: Literal["3class", "2class"] = "3class",
    check_files: bool = True,
    outside: OutsideDatasetLog | None = None,
) -> list[dict]:
    """Read one COVIDx split file (``train.txt`` or ``test.txt``).

    Args:
        list_file: the split file; lines ``patientid filename label source`` separated by spaces
            (blank lines are skipped; file names must not hold spaces, as in the published files).
        image_dir: the folder holding the split's images (``train/`` or ``test/``).
        variant: ``"3class"`` (normal / pneumonia / COVID-19) or ``"2class"`` (negative / positive).
        check_files: check that every image exists.
        outside: logs (or refuses) file names that lead outside the dataset folder (``..``, an
            absolute path or a symlink); None follows them silently.

    Returns:
        one item per line: ``image`` (absolute path), ``label`` (int), ``class_name``,
        ``patient_id``, ``source``, ``modality`` (``"xray"``).

    Raises:
        FileNotFoundError: the split file or an image is missing (naming the file and line).
        ValueError: a line without four fields or with an unknown label (naming the file and line).
    """
    if variant not in COVIDX_CLASSES:
        raise ValueError(f"covidx variant must be one of {sorted(COVIDX_CLASSES)}, got {variant!r}.")
    list_file, image_dir = Path(list_file), Path(image_dir)
    if not list_file.is_file():
        raise FileNotFoundError(
            f"COVIDx split file not found: {list_file}; dataset_dir must hold train.txt and test.txt."
        )
    aliases = _ALIASES_3 if variant == "3class" else _ALIASES_2
    names = COVIDX_CLASSES[variant]
    items = []
    with open(list_file, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 4:
                raise ValueError(
                    f"{list_file}, line {line_no}: expected 'patientid filename label source', got {line.strip()!r}."
                )
            patient_id, filename, label_text, source = fields[0], fields[1], fields[2], " ".join(fields[3:])
            label = aliases.get(label_text.lower())
            if label is None:
                raise ValueError(
                    f"{list_file}, line {line_no}: unknown label {label_text!r} for the {variant} variant; "
                    f"expected one of {list(names)} (set covidx_variant to the file's variant)."
                )
            image = image_dir / filename
            if check_files and not image.is_file():
                raise FileNotFoundError(f"{list_file}, line {line_no}: image {image} does not exist.")
            if outside is not None:
                outside.check(image, f"{list_file}, line {line_no}")
            items.append(
                {
                    "image": str(image.resolve()),
                    "label": label,
                    "class_name": names[label],
                    "patient_id": patient_id,
                    "source": source,
                    "modality": "xray",
                }
            )
    if not items:
        raise ValueError(f"{list_file} lists no images.")
    return items


def load_covidx(
    dataset_dir: str | os.PathLike,
    variant: Literal["3class", "2class"] = "3class",
    check_files: bool = True,
    allow_outside_dataset_dir: bool = True,
) -> dict[str, list[dict]]:
    """Read a COVIDx folder into ``{"training": [...], "test": [...]}`` (see :func:`read_covidx_split`).

    File names of ``train.txt`` / ``test.txt`` that lead outside ``dataset_dir`` are followed and each
    one logged, then counted in one warning; with ``allow_outside_dataset_dir=False`` they are refused,
    naming the file and the line.

    Raises:
        ValueError: a patient appears in both splits (COVIDx splits are patient-disjoint; a
            modified file that breaks this would leak test patients into training).
    """
    root = Path(dataset_dir).expanduser()
    logs = {name: OutsideDatasetLog(root, root / name, allow_outside_dataset_dir) for name in ("train.txt", "test.txt")}
    train = read_covidx_split(root / "train.txt", root / "train", variant, check_files, logs["train.txt"])
    test = read_covidx_split(root / "test.txt", root / "test", variant, check_files, logs["test.txt"])
    for log in logs.values():
        log.summary()
    shared = sorted({i["patient_id"] for i in train} & {i["patient_id"] for i in test})
    if shared:
        raise ValueError(
            f"{root}: {len(shared)} patients are in both train.txt and test.txt (e.g. {shared[:3]}); "
            "remove them from one split so the test set stays unseen."
        )
    return {"training": train, "test": test}
