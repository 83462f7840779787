# SPDX-License-Identifier: Apache-2.0
"""CheXpert datalist adapter: ``train.csv`` / ``valid.csv`` into multi-label classification items.

The published layout (CheXpert-v1.0 and CheXpert-v1.0-small)::

    dataset_dir/
        train.csv   # Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,...
        valid.csv
        train/patient00001/study1/view1_frontal.jpg
        valid/...

``Path`` values start with the release folder (``CheXpert-v1.0-small/train/...``); they are looked
up relative to ``dataset_dir``, then to its parent, then with the release folder stripped.
Label cells are ``1.0`` (positive), ``0.0`` (negative), ``-1.0`` (uncertain) or blank (not
mentioned, read as negative). The five competition labels are used (:data:`CHEXPERT_COMPETITION`);
uncertain labels follow a policy: ``"ones"`` (U-Ones), ``"zeros"`` (U-Zeros) or ``"ignore"``
(the label becomes ``-1`` and is left out of the loss and the metrics).

Example::

    sections = load_chexpert("/data/CheXpert-v1.0-small", uncertain="ones")
    sections["training"][0]["label"]   # [0.0, 1.0, 0.0, 1.0, 0.0]
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Literal

__all__ = ["CHEXPERT_COMPETITION", "UNCERTAIN_POLICIES", "read_chexpert_csv", "load_chexpert"]

CHEXPERT_COMPETITION = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
"""The five CheXpert competition labels, in label-vector order."""

UNCERTAIN_POLICIES = {"ones": 1.0, "zeros": 0.0, "ignore": -1.0}
"""Value an uncertain (``-1``) label takes under each policy; ``-1`` means ignored."""

_PATIENT = re.compile(r"(patient\d+)")


def _resolve_image(value: str, root: Path) -> Path:
    rel = Path(value)
    candidates = [root / rel, root.parent / rel]
    if len(rel.parts) > 1:
        candidates.append(root / Path(*rel.parts[1:]))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return candidates[0]


def _label_value(cell: str, policy_value: float, csv_file: Path, row: int, column: str) -> float:
    text = cell.strip()
    if text == "":
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"{csv_file}, row {row}, column '{column}': {cell!r} is not one of 1, 0, -1 or blank."
        ) from None
    if value == 1.0 or value == 0.0:
        return value
    if value == -1.0:
        return policy_value
    raise ValueError(f"{csv_file}, row {row}, column '{column}': {cell!r} is not one of 1, 0, -1 or blank.")


def read_chexpert_csv(
    csv_file: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    uncertain: Literal["ones", "zeros", "ignore"] = "ones",
    frontal_only: bool = True,
    check_files: bool = True,
) -> list[dict]:
    """Read ``train.csv`` or ``valid.csv``.

    Args:
        csv_file: the CSV file (header with ``Path``, ``Frontal/Lateral`` and the competition labels).
        dataset_dir: the CheXpert folder the ``Path`` values are resolved against.
        uncertain: policy for ``-1`` labels: ``"ones"``, ``"zeros"`` or ``"ignore"`` (label ``-1``).
        frontal_only: keep frontal views only (the usual protocol).
        check_files: check that every image exists.

    Returns:
        items ``image``, ``label`` (list of 5 floats, ``-1`` = ignored), ``patient_id``, ``study``,
        ``view``, ``modality`` (``"xray"``).

    Raises:
        FileNotFoundError / ValueError: naming the file, the row (1 = header) and the column.
    """
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"chexpert uncertain policy must be one of {sorted(UNCERTAIN_POLICIES)}, got {uncertain!r}.")
    csv_file, root = Path(csv_file), Path(dataset_dir).expanduser()
    if not csv_file.is_file():
        raise FileNotFoundError(f"CheXpert file not found: {csv_file}; dataset_dir must hold train.csv and valid.csv.")
    policy_value = UNCERTAIN_POLICIES[uncertain]
    items = []
    with open(csv_file, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in ("Path", "Frontal/Lateral", *CHEXPERT_COMPETITION) if c not in header]
        if missing:
            raise ValueError(
                f"{csv_file}: header lacks the columns {missing}; is this a CheXpert train.csv / valid.csv?"
            )
        for row_no, row in enumerate(reader, start=2):
            view = (row["Frontal/Lateral"] or "").strip()
            if frontal_only and view.lower() != "frontal":
                continue
            path = (row["Path"] or "").strip()
            match = _PATIENT.search(path)
            if not match:
                raise ValueError(f"{csv_file}, row {row_no}, column 'Path': {path!r} holds no 'patientNNNNN' folder.")
            image = _resolve_image(path, root)
            if check_files and not image.is_file():
                raise FileNotFoundError(
                    f"{csv_file}, row {row_no}: image {path!r} not found under {root} or {root.parent}."
                )
            labels = [_label_value(row[c] or "", policy_value, csv_file, row_no, c) for c in CHEXPERT_COMPETITION]
            study = Path(path).parent.name
            items.append(
                {
                    "image": str(image.resolve()),
                    "label": labels,
                    "patient_id": match.group(1),
                    "study": f"{match.group(1)}/{study}",
                    "view": view,
                    "modality": "xray",
                }
            )
    if not items:
        raise ValueError(f"{csv_file} holds no {'frontal ' if frontal_only else ''}images.")
    return items


def load_chexpert(
    dataset_dir: str | os.PathLike,
    uncertain: Literal["ones", "zeros", "ignore"] = "ones",
    frontal_only: bool = True,
    check_files: bool = True,
) -> dict[str, list[dict]]:
    """Read a CheXpert folder into ``{"training": train.csv, "test": valid.csv}`` (the expert-labelled
    ``valid.csv`` is the usual test set; validation comes from a patient split of training).
    """
    root = Path(dataset_dir).expanduser()
    return {
        "training": read_chexpert_csv(root / "train.csv", root, uncertain, frontal_only, check_files),
        "test": read_chexpert_csv(root / "valid.csv", root, uncertain, frontal_only, check_files),
    }
