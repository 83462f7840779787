# SPDX-License-Identifier: Apache-2.0
"""RSNA Pneumonia Detection Challenge adapter: ``stage_2_train_labels.csv`` into patient-level items.

The published layout::

    dataset_dir/
        stage_2_train_labels.csv     # patientId,x,y,width,height,Target (one row per box; one row with
                                     # empty box and Target 0 for negatives)
        stage_2_train_images/<patientId>.dcm

One image per patient; its label is 1 when any row of the patient has ``Target`` 1 (pneumonia
opacity), else 0; with ``with_boxes`` its ``boxes`` are the ``[x, y, width, height]`` (pixels: x the
column, y the row of the top-left corner) of those rows, which the segmentation bundle fills into
masks. The challenge's test labels are not public, so the training file is split by patient into training /
validation / test (:func:`unimedi_monai.classification.prepare_splits`).

Example::

    items = load_rsna_pneumonia("/data/rsna")["training"]
    # {'image': '/data/rsna/stage_2_train_images/0004cfab-....dcm', 'label': 0, 'patient_id': '0004cfab-...', ...}
    items[0]
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

__all__ = ["RSNA_CLASSES", "read_rsna_labels", "load_rsna_pneumonia"]

RSNA_CLASSES = ("normal", "pneumonia")
"""Class names in label-index order."""


_BOX_COLUMNS = ("x", "y", "width", "height")


def _box(row: dict, csv_file: Path, row_no: int) -> list[float]:
    """``[x, y, width, height]`` of a ``Target`` 1 row; x, y >= 0 and width, height > 0."""
    box = []
    for column in _BOX_COLUMNS:
        text = (row.get(column) or "").strip()
        try:
            value = float(text)
        except ValueError:
            raise ValueError(
                f"{csv_file}, row {row_no}, column '{column}': {text!r} is not a number (a Target 1 row needs its box)."
            ) from None
        if not math.isfinite(value) or value < 0 or (column in ("width", "height") and value == 0):
            raise ValueError(
                f"{csv_file}, row {row_no}, column '{column}': {text!r} must be a "
                f"{'positive' if column in ('width', 'height') else 'non-negative'} number of pixels."
            )
        box.append(value)
    return box


def read_rsna_labels(
    csv_file: str | os.PathLike, image_dir: str | os.PathLike, check_files: bool = True, with_boxes: bool = False
) -> list[dict]:
    """Read ``stage_2_train_labels.csv`` into one item per patient.

    Args:
        csv_file: the labels file (columns ``patientId`` and ``Target``; box columns are counted).
        image_dir: the folder with ``<patientId>.dcm``.
        check_files: check that every DICOM exists.
        with_boxes: also return (and check: numbers, x / y >= 0, width / height > 0) the boxes.

    Returns:
        items ``image``, ``label`` (0/1), ``patient_id``, ``num_boxes``, ``modality`` (``"xray"``) and
        with ``with_boxes`` ``boxes`` (``[[x, y, width, height], ...]`` of the ``Target`` 1 rows), in
        the file's patient order.

    Raises:
        FileNotFoundError / ValueError: naming the file and the row (1 = header).
    """
    csv_file, image_dir = Path(csv_file), Path(image_dir)
    if not csv_file.is_file():
        raise FileNotFoundError(
            f"RSNA labels file not found: {csv_file}; dataset_dir must hold stage_2_train_labels.csv."
        )
    patients: dict[str, dict] = {}
    with open(csv_file, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("patientId", "Target") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{csv_file}: header lacks the columns {missing}; expected patientId,x,y,width,height,Target."
            )
        for row_no, row in enumerate(reader, start=2):
            pid = (row["patientId"] or "").strip()
            if not pid:
                raise ValueError(f"{csv_file}, row {row_no}: empty patientId.")
            target = (row["Target"] or "").strip()
            if target not in ("0", "1"):
                raise ValueError(f"{csv_file}, row {row_no}, column 'Target': {target!r} must be 0 or 1.")
            item = patients.get(pid)
            if item is None:
                image = image_dir / f"{pid}.dcm"
                if check_files and not image.is_file():
                    raise FileNotFoundError(f"{csv_file}, row {row_no}: image {image} does not exist.")
                item = patients[pid] = {
                    "image": str(image.resolve()),
                    "label": 0,
                    "patient_id": pid,
                    "num_boxes": 0,
                    "modality": "xray",
                }
                if with_boxes:
                    item["boxes"] = []
            if target == "1":
                item["label"] = 1
                item["num_boxes"] += 1
                if with_boxes:
                    item["boxes"].append(_box(row, csv_file, row_no))
    if not patients:
        raise ValueError(f"{csv_file} lists no patients.")
    return list(patients.values())


def load_rsna_pneumonia(
    dataset_dir: str | os.PathLike, check_files: bool = True, with_boxes: bool = False
) -> dict[str, list[dict]]:
    """Read an RSNA Pneumonia folder into ``{"training": [...]}`` (no public test labels; ``with_boxes``: see
    :func:`read_rsna_labels`)."""
    root = Path(dataset_dir).expanduser()
    return {
        "training": read_rsna_labels(
            root / "stage_2_train_labels.csv", root / "stage_2_train_images", check_files, with_boxes
        )
    }
