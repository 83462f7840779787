# SPDX-License-Identifier: Apache-2.0
"""Datalist adapters of the BCV (``dataset_0.json``) and AMOS (``dataset.json``) segmentation releases.

- BCV, as MONAI's ``swin_unetr_btcv_segmentation`` bundle uses it: ``{"training": [{"image":
  "imagesTr/img0001.nii.gz", "label": "labelsTr/label0001.nii.gz"}, ...], "validation": [...]}``.
- AMOS 2022: ``{"modality": {"0": "CT"}, "labels": {"0": "background", "1": "spleen", ...},
  "training": [{"image": "./imagesTr/amos_0001.nii.gz", "label": "./labelsTr/amos_0001.nii.gz"},
  ...], "validation": [...]}``; cases ``amos_0001``..``amos_0500`` are CT, the later ids MRI, which
  are dropped (``ct_only``).

Paths are relative to the folder of the datalist (or absolute). The training list is cut to a label
fraction (20 / 40 / 100 % in the protocol) with a fixed seed by
:func:`unimedi_monai.data.select_fraction`; the validation list is kept whole.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from unimedi_monai.data.datalist import OutsideDatasetLog, warn_duplicate_images
from unimedi_monai.data.fractions import select_fraction
from unimedi_monai.json_files import read_json_object

__all__ = ["DEFAULT_DATALISTS", "load_segmentation_datalist", "amos_case_id"]

logger = logging.getLogger(__name__)

#: the datalist file name of each layout.
DEFAULT_DATALISTS = {"bcv": "dataset_0.json", "amos": "dataset.json"}
_AMOS_ID = re.compile(r"amos_(\d+)")


def amos_case_id(path: str) -> int | None:
    """The numeric AMOS case id in a file name (``amos_0042.nii.gz`` -> 42), or None."""
    m = _AMOS_ID.search(Path(path).name)
    return int(m.group(1)) if m else None


def _rows(
    data: dict,
    section: str,
    json_path: Path,
    base: Path,
    label_required: bool,
    outside: OutsideDatasetLog | None = None,
) -> list[dict[str, Any]]:
    if section not in data:
        raise ValueError(
            f"{json_path}: no '{section}' list; found sections {sorted(data)} (add a '{section}' list of image/label "
            "entries)."
        )
    rows = data[section]
    if not isinstance(rows, list):
        raise ValueError(
            f"{json_path}: '{section}' must be a list of {{'image': ..., 'label': ...}} entries, got "
            f"{type(rows).__name__}."
        )
    items = []
    for i, row in enumerate(rows):
        keys = ("image", "label") if label_required else ("image",)
        if not isinstance(row, dict) or any(k not in row for k in keys):
            raise ValueError(
                f"{json_path}: {section} entry {i} must have {' and '.join(repr(k) for k in keys)} keys, got {row!r}."
            )
        item = dict(row)
        for key in keys:
            value = row[key]
            if not isinstance(value, str) or not value:
                raise ValueError(f"{json_path}: {section} entry {i} '{key}' must be a file path, got {value!r}.")
            path = Path(value) if os.path.isabs(value) else base / value
            if not path.exists():
                raise FileNotFoundError(
                    f"{json_path}: {section} entry {i} '{key}' file '{path}' does not exist; fix the path or remove "
                    "the entry."
                )
            item[key] = str(path.resolve())
            if outside is not None:
                outside.check(path, f"{json_path}: {section} entry {i} '{key}'")
        items.append(item)
    return items


def _ct_cases(items: list[dict[str, Any]], json_path: Path, section: str, max_ct_id: int) -> list[dict[str, Any]]:
    kept = []
    for i, item in enumerate(items):
        case = amos_case_id(item["image"])
        if case is None:
            raise ValueError(
                f"{json_path}: {section} entry {i} image '{item['image']}' has no amos_<id> name to tell CT from MRI; "
                f"rename it or set ct_only to false."
            )
        if case <= max_ct_id:
            kept.append(item)
    return kept


def load_segmentation_datalist(
    dataset_dir: str | os.PathLike,
    layout: str,
    datalist: str | os.PathLike | None = None,
    label_fraction: float = 1.0,
    seed: int = 0,
    ct_only: bool = True,
    max_ct_id: int = 500,
    allow_outside_dataset_dir: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """Read a BCV or AMOS datalist into training / validation items with absolute, checked paths.

    Args:
        dataset_dir: the dataset folder.
        layout: ``"bcv"`` (``dataset_0.json``) or ``"amos"`` (``dataset.json``).
        datalist: another datalist file (relative to ``dataset_dir`` or absolute).
        label_fraction: share of the training cases kept, in ``(0, 1]`` (0.2 / 0.4 / 1.0 in the protocol).
        seed: seed of the label-fraction draw.
        ct_only: AMOS only: keep the CT cases (ids up to ``max_ct_id``), drop the MRI ones.
        max_ct_id: AMOS only: the largest CT case id (500 in AMOS 2022).
        allow_outside_dataset_dir: follow image / label paths that lead outside ``dataset_dir`` (``..``,
            absolute paths, symlinks), each logged; False refuses them.

    Returns:
        ``{"training": [...], "validation": [...]}``, entries ``{"image": path, "label": path, ...}``.

    Raises:
        FileNotFoundError: the folder, the datalist or a listed file is missing (naming the entry).
        ValueError: a malformed datalist, naming the file, the section and the entry.

    Example::

        data = load_segmentation_datalist("/data/btcv", "bcv", label_fraction=0.2, seed=0)
        len(data["training"]), len(data["validation"])  # (5, 6) for the 24 / 6 split of dataset_0.json
    """
    if layout not in DEFAULT_DATALISTS:
        raise ValueError(f"unknown datalist layout {layout!r}; choose one of {sorted(DEFAULT_DATALISTS)}.")
    folder = Path(dataset_dir).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"dataset_dir '{folder}' does not exist; set dataset_dir to your {layout.upper()} folder (or leave it null "
            "for the demo phantoms)."
        )
    json_path = Path(datalist) if datalist is not None else Path(DEFAULT_DATALISTS[layout])
    if not json_path.is_absolute():
        json_path = folder / json_path
    if not json_path.is_file():
        raise FileNotFoundError(
            f"datalist '{json_path}' does not exist; the {layout.upper()} layout expects {DEFAULT_DATALISTS[layout]} "
            "in dataset_dir (or set the datalist key)."
        )
    data = read_json_object(json_path, "datalist", " with 'training' and 'validation' lists")
    if (
        layout == "amos"
        and "modality" in data
        and isinstance(data["modality"], dict)
        and "CT" not in data["modality"].values()
    ):
        logger.warning("%s: modality %s does not name CT; keeping cases by their ids", json_path, data["modality"])
    base = json_path.parent
    outside = OutsideDatasetLog(folder, json_path, allow_outside_dataset_dir)
    out = {}
    for section in ("training", "validation"):
        items = _rows(data, section, json_path, base, label_required=True, outside=outside)
        out[section] = _ct_cases(items, json_path, section, max_ct_id) if layout == "amos" and ct_only else items
    for section, items in out.items():
        if not items:
            raise ValueError(
                f"{json_path}: the '{section}' list has no {'CT ' if layout == 'amos' and ct_only else ''}cases."
            )
    outside.summary()
    warn_duplicate_images(out, json_path)
    n_all = len(out["training"])
    out["training"] = select_fraction(out["training"], label_fraction, seed=seed)
    logger.info(
        "%s: %d of %d training cases (label fraction %.2f, seed %d), %d validation cases",
        json_path,
        len(out["training"]),
        n_all,
        float(label_fraction),
        seed,
        len(out["validation"]),
    )
    return out
