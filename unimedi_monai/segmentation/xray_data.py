# SPDX-License-Identifier: Apache-2.0
"""2D (X-ray) segmentation data: RSNA pneumonia boxes, a generic 2D datalist, and the built-in lesion demo.

Every source gives ``{"training", "validation", "test"}`` lists of items with ``image`` (a PNG, JPEG
or DICOM path) and either ``label`` (a mask file: PNG with 0 / 255 or 0 / 1 for one class, or class
ids 0..K) or ``boxes`` (``[[x, y, width, height], ...]`` in pixels, filled into a mask at the image's
own resolution when the image is read, see :class:`~unimedi_monai.segmentation.xray_transforms.LoadXrayMaskd`).

- ``rsna``: the RSNA Pneumonia Detection layout (``stage_2_train_labels.csv``,
  ``stage_2_train_images/<patientId>.dcm``) read by
  :func:`~unimedi_monai.data.adapters.rsna_pneumonia.read_rsna_labels`; one item per patient, the union of its
  ``Target`` 1 boxes as the mask (none for ``Target`` 0), as MGCA and the other peers build their
  RSNA segmentation masks. The challenge's test labels are not public, so patients are split into
  training / validation / test (:func:`~unimedi_monai.data.datalist.split_by_patient`).
- ``datalist``: a JSON file ``{"training": [{"image": ..., "label": ...}, ...], "validation": [...],
  "test": [...]}`` (paths relative to the file or absolute; ``validation`` and ``test`` optional: split
  off ``training`` by patient, an item's ``patient_id`` or else its image).
- the demo (``dataset_dir`` null): :func:`generate_lesion_demo` writes synthetic X-rays of the
  project's demo generator (:func:`unimedi_monai.data.demo.synth_xray`) with their lesion masks in
  the ``datalist`` layout.

The training list is then cut to a label fraction (1 / 10 / 100 % in the paper's protocol) with a
fixed seed (:func:`~unimedi_monai.data.fractions.select_fraction`, stratified by pneumonia yes / no
for RSNA); validation and test are kept whole.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from unimedi_monai.data.datalist import split_by_patient
from unimedi_monai.data.demo.cache import build_folder, stored_parameters
from unimedi_monai.data.fractions import select_fraction
from unimedi_monai.data.sources import resolve_data_folder
from unimedi_monai.io.atomic_io import write_json_atomic
from unimedi_monai.json_files import read_json_object
from unimedi_monai.segmentation.datalists import _rows

__all__ = [
    "XRAY_DATASETS",
    "generate_lesion_demo",
    "load_2d_datalist",
    "load_rsna_segmentation",
    "load_xray_segmentation_data",
    "resolve_xray_segmentation_data",
]

logger = logging.getLogger(__name__)

#: the layouts ``load_xray_segmentation_data`` reads.
XRAY_DATASETS = ("rsna", "datalist")
DEMO_DATALIST = "datalist.json"
#: findings of the demo set: the large ones (a nodule of 6-20 mm is a few pixels at 224) and normals.
DEMO_FINDINGS = ("mass", "consolidation", "effusion", "normal")


def _split(items: list[dict], val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[dict]]:
    rest, test = split_by_patient(items, test_fraction, seed + 1) if test_fraction > 0 else (items, [])
    train, val = split_by_patient(rest, val_fraction, seed)
    return {"training": train, "validation": val, "test": test}


def load_rsna_segmentation(
    dataset_dir: str | os.PathLike,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    check_files: bool = True,
) -> dict[str, list[dict]]:
    """Patient-disjoint training / validation / test items of an RSNA Pneumonia folder.

    Args:
        dataset_dir: the folder with ``stage_2_train_labels.csv`` and ``stage_2_train_images/``.
        val_fraction: share of the non-test patients used for validation.
        test_fraction: share of the patients held out for testing.
        seed: seed of the patient splits (the test split uses ``seed + 1``, as the classification bundle).
        check_files: check that every DICOM exists.

    Returns:
        sections of ``{"image", "boxes", "target", "patient_id"}`` items (``target`` 1: pneumonia).

    Raises:
        FileNotFoundError / ValueError: naming the file, the row and the column.
    """
    from unimedi_monai.data.adapters.rsna_pneumonia import load_rsna_pneumonia

    items = [
        {"image": i["image"], "boxes": i["boxes"], "target": i["label"], "patient_id": i["patient_id"]}
        for i in load_rsna_pneumonia(dataset_dir, check_files, with_boxes=True)["training"]
    ]
    return _split(items, val_fraction, test_fraction, seed)


def load_2d_datalist(
    dataset_dir: str | os.PathLike,
    datalist: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, list[dict]]:
    """Read a generic 2D datalist of ``{"image", "label"}`` pairs into training / validation / test.

    Args:
        dataset_dir: the folder of the datalist.
        datalist: the datalist file (relative to ``dataset_dir`` or absolute), default ``datalist.json``.
        val_fraction: share of the training patients split off for validation when the file has no
            ``validation`` list.
        test_fraction: share of the patients split off for testing when the file has no ``test`` list.
        seed: seed of those splits.

    Returns:
        sections with absolute, checked ``image`` and ``label`` paths; ``patient_id`` added (the
        image path) where an entry has none.

    Raises:
        FileNotFoundError: the datalist or a listed file is missing (naming the entry).
        ValueError: malformed JSON or entries, naming the file, the section and the entry.
    """
    folder = Path(dataset_dir).expanduser()
    json_path = Path(datalist) if datalist is not None else Path(DEMO_DATALIST)
    if not json_path.is_absolute():
        json_path = folder / json_path
    if not json_path.is_file():
        raise FileNotFoundError(
            f"datalist '{json_path}' does not exist; set dataset_dir to the folder of your datalist.json (or the "
            "datalist key to the file)."
        )
    data = read_json_object(json_path, "datalist", " with a 'training' list of {'image': ..., 'label': ...} entries")
    sections = {
        s: _rows(data, s, json_path, json_path.parent, label_required=True)
        for s in ("training", "validation", "test")
        if s in data or s == "training"
    }
    for name, items in sections.items():
        for item in items:
            item.setdefault("patient_id", item["image"])
        if not items:
            raise ValueError(f"{json_path}: the '{name}' list is empty.")
    train = sections["training"]
    if "test" not in sections:
        train, sections["test"] = split_by_patient(train, test_fraction, seed + 1) if test_fraction > 0 else (train, [])
    if "validation" not in sections:
        train, sections["validation"] = split_by_patient(train, val_fraction, seed)
    sections["training"] = train
    return {s: sections[s] for s in ("training", "validation", "test")}


def load_xray_segmentation_data(
    data_root: str | os.PathLike,
    dataset: str = "datalist",
    datalist: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    label_fraction: float = 1.0,
    fraction_seed: int = 0,
    split_seed: int = 0,
) -> dict[str, list[dict]]:
    """The training (cut to ``label_fraction``), validation and test items of a 2D segmentation dataset.

    Args:
        data_root: the dataset folder (or the generated demo folder).
        dataset: ``"rsna"`` (RSNA Pneumonia layout) or ``"datalist"`` (generic JSON datalist; the demo).
        datalist: ``datalist`` only: the datalist file (default ``datalist.json``).
        val_fraction: share of patients for validation (when not given by the data).
        test_fraction: share of patients for testing (when not given by the data).
        label_fraction: share of the training items kept, in ``(0, 1]``: 0.01 / 0.1 / 1.0 in the protocol.
        fraction_seed: seed of that draw (fixed, so encoders compare on the same images).
        split_seed: seed of the patient splits.

    Example::

        data = load_xray_segmentation_data("/data/rsna", "rsna", label_fraction=0.01)
        len(data["training"]), len(data["validation"]), len(data["test"])
    """
    if dataset not in XRAY_DATASETS:
        raise ValueError(f"dataset must be one of {XRAY_DATASETS}, got {dataset!r}.")
    if dataset == "rsna":
        data = load_rsna_segmentation(data_root, val_fraction, test_fraction, split_seed)
        stratify: str | None = "target"
    else:
        data = load_2d_datalist(data_root, datalist, val_fraction, test_fraction, split_seed)
        stratify = None
    for section in ("training", "validation"):
        if not data[section]:
            raise ValueError(
                f"{data_root}: the {section} split is empty; add images or change val_fraction / test_fraction."
            )
    n_all = len(data["training"])
    data["training"] = select_fraction(data["training"], label_fraction, seed=fraction_seed, stratify=stratify)
    logger.info(
        "%s (%s): %d of %d training images (label fraction %g, seed %d), %d validation, %d test",
        data_root,
        dataset,
        len(data["training"]),
        n_all,
        float(label_fraction),
        fraction_seed,
        len(data["validation"]),
        len(data["test"]),
    )
    return data


def _demo_parameters(json_path: Path) -> Any:
    """The ``demo_parameters`` of a demo datalist, None when absent or unreadable."""
    return stored_parameters(json_path, "demo_parameters")


def generate_lesion_demo(
    output_dir: str | os.PathLike, n_train: int = 48, n_val: int = 12, n_test: int = 12, seed: int = 0
) -> Path:
    """Write synthetic X-rays with their lesion masks (the demo generator's) and a 2D datalist.

    The images come from :func:`unimedi_monai.data.demo.synth_xray` (256 x 256, the template chest
    of the pre-training demo with one mass, consolidation or effusion, or none); the masks are the
    generator's own lesion masks (PNG, 255 = lesion). Findings, sides and zones cycle so every split
    holds each of them. A folder already holding a demo of the same arguments is reused; the data is
    written into a temporary sibling folder renamed into place
    (:func:`~unimedi_monai.data.demo.cache.build_folder`), so no half demo is ever left.

    Args:
        output_dir: the demo folder.
        n_train: training images.
        n_val: validation images.
        n_test: test images.
        seed: seed of the draw.

    Returns:
        the path of ``output_dir/datalist.json``.
    """
    from PIL import Image

    from unimedi_monai.data.demo import SIDES, SIZE_RANGES_MM, ZONES, synth_xray

    if min(n_train, n_val, n_test) < 1:
        raise ValueError(
            f"generate_lesion_demo needs n_train, n_val and n_test >= 1, got {n_train}, {n_val}, {n_test}."
        )
    out = Path(output_dir).absolute()
    params = {
        "n_train": int(n_train),
        "n_val": int(n_val),
        "n_test": int(n_test),
        "seed": int(seed),
        "generator": "synth_xray",
    }
    json_path = out / DEMO_DATALIST
    existing = _demo_parameters(json_path)
    if existing == params:
        return json_path
    if out.exists() and any(out.iterdir()) and existing is None:
        raise FileExistsError(
            f"demo folder {out} is not empty and holds no demo {DEMO_DATALIST}; choose another folder (key demo_dir)."
        )
    rng = np.random.default_rng(seed)

    def write(tmp: Path) -> None:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        rows = []
        for i in range(n_train + n_val + n_test):
            finding = DEMO_FINDINGS[i % len(DEMO_FINDINGS)]
            side, zone, size = "none", "none", 0.0
            if finding != "normal":
                side = SIDES[(i // len(DEMO_FINDINGS)) % 2]
                zone = "lower" if finding == "effusion" else ZONES[(i // (2 * len(DEMO_FINDINGS))) % 3]
                lo, hi = SIZE_RANGES_MM["xray"][finding]
                size = round(float(rng.uniform(lo, hi)), 1)  # as recorded in the datalist: the case re-renders exactly
            image, mask = synth_xray(finding, side, zone, size, np.random.default_rng([seed, i]))
            name = f"xr_{i:04d}.png"
            Image.fromarray(image).save(tmp / "images" / name, format="PNG", compress_level=1)
            Image.fromarray(mask.astype(np.uint8) * 255).save(tmp / "masks" / name, format="PNG", compress_level=1)
            rows.append(
                {
                    "image": f"images/{name}",
                    "label": f"masks/{name}",
                    "finding": finding,
                    "side": side,
                    "zone": zone,
                    "size_mm": size,
                    "patient_id": f"demo-seg-{i:04d}",
                }
            )
        datalist: dict[str, Any] = {
            "description": (
                "synthetic chest X-rays with lesion masks from unimedi_monai.data.demo.synth_xray; not patient data"
            ),
            "labels": {"0": "background", "1": "lesion"},
            "training": rows[:n_train],
            "validation": rows[n_train : n_train + n_val],
            "test": rows[n_train + n_val :],
            "demo_parameters": params,
        }
        write_json_atomic(datalist, tmp / DEMO_DATALIST)

    build_folder(out, write, lambda folder: _demo_parameters(folder / DEMO_DATALIST) == params, replace=True)
    logger.info("wrote %d synthetic X-rays with lesion masks to %s", n_train + n_val + n_test, out)
    return json_path


def resolve_xray_segmentation_data(
    dataset_dir: str | os.PathLike | None, demo_dir: str | os.PathLike, demo: Mapping[str, Any] | None = None
) -> str:
    """The dataset folder: ``dataset_dir``, or with None the lesion demo generated in ``demo_dir``.

    Raises:
        FileNotFoundError: ``dataset_dir`` is set and does not exist (naming the key).
    """
    return resolve_data_folder(
        dataset_dir, lambda: generate_lesion_demo(demo_dir, **dict(demo or {})), "your dataset folder", "the demo"
    )
