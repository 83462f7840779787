# SPDX-License-Identifier: Apache-2.0
"""Reading, writing and splitting image-report datalists.

A datalist is a JSON file in the style of the MONAI / Medical Segmentation Decathlon
``dataset.json``: one object whose list-valued keys are *sections* (``"training"``,
``"validation"``, optionally ``"test"``) and whose other keys are free metadata
(``"name"``, ``"description"``, ...). Each section is a list of *items*, one per image::

    {
        "name": "MIMIC-CXR-JPG",
        "description": "frontal chest X-rays with FINDINGS + IMPRESSION",
        "training": [
            {
                "image": "files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg",
                "report": "FINDINGS: No focal consolidation. IMPRESSION: No acute process.",
                "modality": "xray",
                "patient_id": "10000032",
                "study_id": "50414267"
            },
            {
                "image": "sub-S03047/ses-E07985/mod-rx/sub-S03047_ses-E07985_run-1_bp-chest_ct.nii.gz",
                "report": "reports/sub-S03047_ses-E07985.txt",
                "modality": "ct"
            }
        ],
        "validation": []
    }

Item keys:

- ``image`` (required): path of the image. A 2D X-ray file (``.jpg``, ``.png``, ``.dcm``, ...),
  a 3D CT volume (``.nii``, ``.nii.gz``, ...) or a folder holding one CT DICOM series.
  Relative paths are relative to the dataset folder (``dataset_dir``); absolute paths are allowed.
- ``report`` (required): the report text, or the path of a UTF-8 ``.txt`` file that holds it
  (relative to ``dataset_dir`` or absolute). A value that ends with ``.txt`` and has no line break
  is read as a path and must exist; any other value that looks like a file path (one token ending with a
  file suffix, e.g. ``reports/a.md``) is refused. The report must not be empty.
- ``modality`` (required): ``"xray"`` or ``"ct"`` (case-insensitive; normalised to lower case).
- any other key is kept unchanged, for example ``patient_id``, ``study_id``, ``finding``,
  ``num_slices`` or ``lesion_slices``.

Sections: ``"training"`` is required; ``"validation"`` may be absent (it is then empty).

:func:`load_datalist` reads ``dataset_dir/datalist.json`` (or the file named by ``datalist``),
validates every item and returns the sections with absolute image paths and report text.
:func:`write_datalist` writes a datalist atomically, storing image paths relative to the
datalist's folder when the images are inside it, so that the folder holding the datalist can be
used as ``dataset_dir``. :func:`split_by_patient` makes a deterministic training/validation
split in which no patient is on both sides.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from unimedi_monai.io.atomic_io import atomic_open
from unimedi_monai.json_files import read_json_object

__all__ = [
    "DATALIST_FILENAME",
    "REQUIRED_KEYS",
    "MODALITIES",
    "is_report_path",
    "is_path_like",
    "OutsideDatasetLog",
    "warn_duplicate_images",
    "read_datalist_json",
    "load_datalist",
    "write_datalist",
    "split_by_patient",
]

DATALIST_FILENAME = "datalist.json"
"""Name of the datalist file looked up in ``dataset_dir`` when none is given."""

REQUIRED_KEYS = ("image", "report", "modality")
"""Keys every datalist item must have."""

MODALITIES = ("xray", "ct")
"""Accepted values of the ``modality`` key (after lower-casing)."""

_OPTIONAL_SECTIONS = ("validation",)

logger = logging.getLogger(__name__)
_FILE_SUFFIX = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,4}$")


def is_report_path(value: str) -> bool:
    """Whether a ``report`` value names a ``.txt`` file rather than holding the text itself.

    Args:
        value: the ``report`` value of a datalist item.

    Returns:
        ``True`` when the value, stripped, ends with ``.txt`` (any case) and has no line break.
    """
    stripped = value.strip()
    return stripped.lower().endswith(".txt") and "\n" not in stripped and "\r" not in stripped


def is_path_like(value: str) -> bool:
    """Whether a text value looks like a file path rather than free text: one token (no whitespace)
    ending with a file suffix (``reports/a.md``, ``/data/x.rtf``, ``r.txt``)."""
    stripped = value.strip()
    return bool(stripped) and not any(c.isspace() for c in stripped) and bool(_FILE_SUFFIX.search(stripped))


class OutsideDatasetLog:
    """Checks that the paths of a datalist stay inside ``dataset_dir`` (after ``..``, absolute paths and
    symlinks are resolved), logging each one that does not, or refusing it.

    Args:
        dataset_dir: the dataset folder.
        source: the datalist (or list file) the paths come from, for the messages.
        allow: follow paths outside ``dataset_dir`` (each logged) instead of refusing them.
    """

    def __init__(self, dataset_dir: str | os.PathLike, source: str | os.PathLike, allow: bool = True) -> None:
        self.root = Path(os.path.realpath(dataset_dir))
        self.source = str(source)
        self.allow = bool(allow)
        self.outside: list[str] = []

    def check(self, path: str | os.PathLike, where: str) -> None:
        """Log (or, when not ``allow``, refuse) ``path`` when it resolves outside ``dataset_dir``.

        Raises:
            ValueError: the path leaves ``dataset_dir`` and ``allow`` is False (names the entry).
        """
        real = Path(os.path.realpath(path))
        if real.is_relative_to(self.root):
            return
        if not self.allow:
            raise ValueError(
                f"{where}: '{path}' resolves to {real}, outside dataset_dir ({self.root}); "
                "allow_outside_dataset_dir is false: move the file into dataset_dir or set --allow_outside_dataset_dir "
                "true."
            )
        logger.info("%s: '%s' resolves to %s, outside dataset_dir %s", where, path, real, self.root)
        self.outside.append(str(path))

    def summary(self) -> None:
        """One warning with the number of paths followed outside ``dataset_dir`` (if any)."""
        if self.outside:
            logger.warning(
                "%s: %d paths lead outside dataset_dir %s (via '..', an absolute path or a symlink; e.g. %s); "
                "they are followed (each one logged); set allow_outside_dataset_dir to false to refuse them.",
                self.source,
                len(self.outside),
                self.root,
                self.outside[0],
            )


def warn_duplicate_images(
    sections: Mapping[str, Sequence[Mapping[str, Any]]], source: str | os.PathLike
) -> tuple[int, int]:
    """Log a warning with counts when an image is listed twice in one section, or in two sections.

    Args:
        sections: section name -> items with an ``image`` key.
        source: the datalist, for the message.

    Returns:
        ``(repeated within a section, shared between sections)``.
    """
    seen: dict[str, str] = {}
    repeats = shared = 0
    example = ""
    for section, items in sections.items():
        for item in items:
            image = str(item.get("image"))
            if image in seen:
                repeats += seen[image] == section
                shared += seen[image] != section
                example = example or image
            else:
                seen[image] = section
    if repeats or shared:
        logger.warning(
            "%s: %d images are listed twice within a section and %d in two sections (e.g. %s); a repeated image "
            "weighs twice, an image in both training and validation inflates the validation scores.",
            source,
            repeats,
            shared,
            example,
        )
    return repeats, shared


def _resolve(path: str | os.PathLike, base: Path) -> Path:
    """Return ``path`` made absolute against ``base`` (``~`` expanded, no symlink resolution)."""
    candidate = Path(path).expanduser()
    if not candidate.is_absolute():
        candidate = base / candidate
    return Path(os.path.normpath(os.path.abspath(candidate)))


def read_datalist_json(path: str | Path) -> dict[str, Any]:
    """Parse a datalist JSON file without validating its items.

    Args:
        path: the JSON file.

    Returns:
        The top-level JSON object.

    Raises:
        FileNotFoundError: when ``path`` is not a file.
        ValueError: when the file is not valid UTF-8 JSON, or its top level is not an object.
    """
    return read_json_object(
        path,
        "datalist",
        " with 'training' (and optionally 'validation') lists",
        missing=f"datalist file not found: {path}.",
    )


def _validate_item(
    item: Any,
    index: int,
    section: str,
    source: Path,
    dataset_dir: Path,
    check_files: bool,
    outside: OutsideDatasetLog | None = None,
) -> dict[str, Any]:
    """Validate one datalist item and return a copy with absolute ``image`` and report text."""
    where = f"datalist {source}, section '{section}', entry {index}"
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected a JSON object with keys {list(REQUIRED_KEYS)}, got {type(item).__name__}.")
    for key in REQUIRED_KEYS:
        if key not in item:
            raise ValueError(f"{where}: missing key '{key}'; every entry needs {', '.join(REQUIRED_KEYS)}.")
    out = dict(item)

    modality = item["modality"]
    if not isinstance(modality, str) or modality.strip().lower() not in MODALITIES:
        raise ValueError(f"{where}: key 'modality' is {modality!r}; it must be one of {list(MODALITIES)}.")
    out["modality"] = modality.strip().lower()

    image = item["image"]
    if not isinstance(image, str) or not image.strip():
        raise ValueError(f"{where}: key 'image' must be a non-empty path string, got {image!r}.")
    image_path = _resolve(image.strip(), dataset_dir)
    if check_files and not image_path.exists():
        raise FileNotFoundError(
            f"{where}: key 'image' names {image_path}, which does not exist; "
            f"paths are relative to dataset_dir ({dataset_dir}) unless absolute."
        )
    out["image"] = str(image_path)
    if outside is not None:
        outside.check(image_path, f"{where}, key 'image'")

    report = item["report"]
    if not isinstance(report, str):
        raise ValueError(f"{where}: key 'report' must be the report text or a .txt path, got {type(report).__name__}.")
    if is_report_path(report):
        report_path = _resolve(report.strip(), dataset_dir)
        if not report_path.is_file():
            raise FileNotFoundError(
                f"{where}: key 'report' names the file {report_path}, which does not exist; "
                f"paths are relative to dataset_dir ({dataset_dir}) unless absolute."
            )
        if outside is not None:
            outside.check(report_path, f"{where}, key 'report'")
        try:
            report = report_path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{where}: report file {report_path} is not valid UTF-8; save it as UTF-8.") from e
    elif is_path_like(report):
        raise ValueError(
            f"{where}: key 'report' is {report.strip()!r}, which looks like a file path but is not a .txt file; "
            "reports are read from UTF-8 .txt files only: convert it, or put the report text itself."
        )
    if not report.strip():
        raise ValueError(f"{where}: key 'report' is empty; remove the entry or give it a report.")
    out["report"] = report
    return out


def load_datalist(
    dataset_dir: str | Path,
    datalist: str | Path | None = None,
    sections: Sequence[str] = ("training", "validation"),
    check_files: bool = True,
    allow_outside_dataset_dir: bool = True,
) -> dict[str, list[dict]]:
    """Read and validate a datalist.

    Args:
        dataset_dir: the dataset folder; relative ``image`` and ``report`` paths are relative to it.
        datalist: the datalist file, relative to ``dataset_dir`` or absolute.
            Defaults to ``dataset_dir/datalist.json``.
        sections: the sections to return. Each must be present, except ``"validation"``,
            which is returned empty when absent.
        check_files: check that every ``image`` exists (a file, or a folder for a CT DICOM series).
        allow_outside_dataset_dir: follow ``image`` / ``report`` paths that lead outside ``dataset_dir``
            (``..``, absolute paths, symlinks), each one logged with a warning counting them; False refuses them.

    Returns:
        A dict mapping each requested section to its items. Each item is a copy of the stored one
        with ``image`` an absolute path string, ``report`` the report text (read from the ``.txt``
        file when the value names one) and ``modality`` lower-cased; other keys are unchanged.

    Raises:
        FileNotFoundError: when the datalist file, an image (with ``check_files``) or a report
            ``.txt`` file is missing.
        ValueError: on invalid JSON, a missing or empty section (``validation`` may be empty), a missing or
            invalid item key, or an empty report. Messages name the datalist file, the section, the entry
            index and the key.
    """
    if isinstance(sections, str):
        sections = (sections,)
    dataset_dir = _resolve(dataset_dir, Path.cwd())
    path = dataset_dir / DATALIST_FILENAME if datalist is None else _resolve(datalist, dataset_dir)
    if not path.is_file():
        raise FileNotFoundError(
            f"datalist file not found: looked for {path}; dataset_dir ({dataset_dir}) must contain "
            f"'{DATALIST_FILENAME}' or the 'datalist' key must name an existing datalist file "
            "(relative to dataset_dir or absolute)."
        )
    data = read_datalist_json(path)
    outside = OutsideDatasetLog(dataset_dir, path, allow_outside_dataset_dir)

    result: dict[str, list[dict]] = {}
    for section in sections:
        if section not in data:
            if section in _OPTIONAL_SECTIONS:
                result[section] = []
                continue
            available = [k for k, v in data.items() if isinstance(v, list)]
            raise ValueError(
                f"datalist {path} has no section '{section}' (sections found: {available}); "
                f"add a '{section}' list of entries."
            )
        entries = data[section]
        if not isinstance(entries, list):
            raise ValueError(
                f"datalist {path}: section '{section}' must be a list of entries, got {type(entries).__name__}."
            )
        if not entries and section not in _OPTIONAL_SECTIONS:
            raise ValueError(
                f"datalist {path}: section '{section}' has no entries; add {section} entries to it (or point "
                "--datalist at another file)."
            )
        result[section] = [
            _validate_item(item, index, section, path, dataset_dir, check_files, outside)
            for index, item in enumerate(entries)
        ]
    outside.summary()
    warn_duplicate_images(result, path)
    return result


def _relative_if_inside(value: str, folder: Path) -> str:
    """Return ``value`` relative to ``folder`` (POSIX separators) if it is an absolute path inside it."""
    candidate = Path(value).expanduser()
    if not candidate.is_absolute():
        return value
    candidate = Path(os.path.normpath(candidate))
    if candidate.is_relative_to(folder):
        return candidate.relative_to(folder).as_posix()
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"value of type {type(value).__name__} is not JSON serialisable")


def write_datalist(path: str | Path, sections: Mapping[str, Sequence[Mapping]], **metadata: Any) -> Path:
    """Write a datalist JSON file atomically.

    The file is first written to a temporary file in the same folder and then moved into place
    with :func:`os.replace`, so readers never see a partial file and a failure leaves any previous
    file intact. Parent folders are created. Absolute ``image`` paths (and absolute ``.txt``
    ``report`` paths) inside the datalist's folder are stored relative to it; other paths are kept.

    Args:
        path: the datalist file to write.
        sections: maps section names (``"training"``, ``"validation"``, ...) to lists of items.
        metadata: extra top-level keys (for example ``name``, ``description``); JSON serialisable.

    Returns:
        The absolute path of the written file.

    Raises:
        ValueError: when a metadata key collides with a section name, a section is not a list
            of mappings, or a value is not JSON serialisable.
    """
    path = _resolve(path, Path.cwd())
    folder = path.parent
    clash = sorted(set(metadata) & set(sections))
    if clash:
        raise ValueError(f"write_datalist({path}): metadata keys {clash} collide with section names; rename them.")

    document: dict[str, Any] = dict(metadata)
    for name, items in sections.items():
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
            raise ValueError(f"write_datalist({path}): section '{name}' must be a list of entries.")
        converted = []
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise ValueError(
                    f"write_datalist({path}): section '{name}', entry {index} must be a mapping, "
                    f"got {type(item).__name__}."
                )
            entry = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in item.items()}
            if isinstance(entry.get("image"), str):
                entry["image"] = _relative_if_inside(entry["image"], folder)
            report = entry.get("report")
            if isinstance(report, str) and is_report_path(report):
                entry["report"] = _relative_if_inside(report.strip(), folder)
            converted.append(entry)
        document[name] = converted

    try:
        text = json.dumps(document, indent=2, ensure_ascii=False, default=_json_default) + "\n"
    except TypeError as e:
        raise ValueError(f"write_datalist({path}): {e}; convert such values to str/int/float/list/dict.") from e

    with atomic_open(path, "w") as f:
        f.write(text)
    return path


def split_by_patient(
    items: Sequence[Mapping], val_fraction: float, seed: int, key: str = "patient_id"
) -> tuple[list, list]:
    """Split items into training and validation so that no patient is on both sides.

    The patients are sorted, shuffled with ``random.Random(seed)`` and the first
    ``round(val_fraction * n_patients)`` go to validation (at least one when ``val_fraction > 0``
    and at least one patient is left for training when there are two or more patients). The
    result depends only on the set of patients, ``val_fraction`` and ``seed``, not on the item
    order; items keep their input order within each side.

    Args:
        items: the datalist items; each must have ``key``.
        val_fraction: fraction of patients for validation, in ``[0, 1)``.
        seed: seed of the shuffle.
        key: the item key that identifies the patient.

    Returns:
        ``(train, val)`` lists of the input items.

    Raises:
        ValueError: when ``val_fraction`` is out of range or an item lacks ``key``.
    """
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    patients: set = set()
    for index, item in enumerate(items):
        if key not in item or item[key] is None:
            raise ValueError(f"split_by_patient: entry {index} has no '{key}' key; add it or choose another key.")
        patients.add(item[key])
    ordered = sorted(patients, key=lambda p: (type(p).__name__, str(p)))
    random.Random(seed).shuffle(ordered)
    n_val = int(round(val_fraction * len(ordered)))
    if val_fraction > 0 and len(ordered) >= 2:
        n_val = min(max(n_val, 1), len(ordered) - 1)
    val_patients = set(ordered[:n_val])
    train = [item for item in items if item[key] not in val_patients]
    val = [item for item in items if item[key] in val_patients]
    return train, val
