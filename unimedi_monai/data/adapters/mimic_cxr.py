# SPDX-License-Identifier: Apache-2.0
"""Datalist builder for MIMIC-CXR-JPG (chest X-rays with free-text reports).

Supported layout (the published MIMIC-CXR-JPG 2.x tree; the CSVs may also be gzipped, ``.csv.gz``)::

    ROOT/
        mimic-cxr-2.0.0-metadata.csv   # dicom_id, subject_id, study_id, ViewPosition, Rows, Columns, ...
        mimic-cxr-2.0.0-split.csv      # dicom_id, study_id, subject_id, split (train / validate / test)
        files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg

    REPORTS_ROOT/                      # mimic-cxr-reports; defaults to ROOT
        files/p10/p10000032/s50414267.txt

``pXX`` is ``p`` followed by the first two digits of the subject id. Only frontal views (``PA``
and ``AP`` by default) are kept; the report text is the cleaned ``FINDINGS`` and ``IMPRESSION``
sections (the whole cleaned report when neither heading exists). Images that are skipped are
counted per reason in the returned summary, with a few examples, never silently dropped.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from unimedi_monai.data.reports import report_from_sections

__all__ = [
    "METADATA_CSV",
    "SPLIT_CSV",
    "METADATA_COLUMNS",
    "SPLIT_COLUMNS",
    "SKIP_REASONS",
    "build_mimic_cxr_datalist",
]

METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv"
SPLIT_CSV = "mimic-cxr-2.0.0-split.csv"
METADATA_COLUMNS = ("dicom_id", "subject_id", "study_id", "ViewPosition")
SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
SKIP_REASONS = (
    "view_not_selected",
    "no_split_entry",
    "split_not_selected",
    "missing_image",
    "missing_report",
    "empty_report",
)
"""Reasons an image of the metadata table is not in the datalist (keys of ``summary["skipped"]``)."""

_NUM_EXAMPLES = 5
_DEFAULT_SPLITS_MAP = {"train": "training", "validate": "validation"}


def _find_table(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"MIMIC-CXR table not found: looked for {root / name} and {root / name}.gz; ROOT must be the "
        "MIMIC-CXR-JPG folder that holds the metadata and split CSVs and the files/ tree."
    )


def _read_csv(path: Path, required: Sequence[str]) -> Iterator[dict[str, str]]:
    """Yield the rows of a (possibly gzipped) CSV after checking that it has the ``required`` columns."""
    raw = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header = [name.strip() for name in reader.fieldnames or []]
        reader.fieldnames = header
        missing = [column for column in required if column not in header]
        if missing:
            raise ValueError(
                f"{path} is missing the column(s) {missing} (found {header}); "
                "use the unmodified table from MIMIC-CXR-JPG."
            )
        for row in reader:
            # short rows give None values, long rows a None key: normalise both
            yield {key: (value or "").strip() for key, value in row.items() if key is not None}


def _study_folder(subject_id: str, study_id: str, source: Path, line: int) -> str:
    """``files/pXX/pXXXXXXXX/sXXXXXXXX`` for a subject and study id."""
    if not subject_id.isdigit() or not study_id.isdigit():
        raise ValueError(
            f"{source}, line {line}: subject_id {subject_id!r} and study_id {study_id!r} must be numbers; "
            "use the unmodified table from MIMIC-CXR-JPG."
        )
    return f"files/p{subject_id[:2]}/p{subject_id}/s{study_id}"


def build_mimic_cxr_datalist(
    root: str | Path,
    reports_root: str | Path | None = None,
    views: Sequence[str] = ("PA", "AP"),
    splits_map: Mapping[str, str] | None = None,
    include_test: bool = False,
) -> tuple[dict[str, list[dict]], dict[str, Any]]:
    """Build a datalist of frontal MIMIC-CXR-JPG images with their reports.

    Args:
        root: the MIMIC-CXR-JPG folder (metadata and split CSVs, ``files/`` tree of JPEGs).
        reports_root: the folder holding the ``files/`` tree of ``sXXXXXXXX.txt`` reports
            (mimic-cxr-reports). Defaults to ``root``.
        views: the ``ViewPosition`` values to keep (case-insensitive).
        splits_map: maps the split CSV's ``split`` values to datalist sections. Defaults to
            ``{"train": "training", "validate": "validation"}``.
        include_test: also map ``test`` to a ``"test"`` section (unless ``splits_map`` maps it).

    Returns:
        ``(datalist, summary)``. ``datalist`` maps every section of ``splits_map`` to its items
        (``image`` relative to ``root``, ``report``, ``modality="xray"``, ``patient_id``,
        ``study_id``, ``dicom_id``, ``view``), in metadata-table order. ``summary`` has
        ``"kept"`` (items per section), ``"skipped"`` (images per reason, see
        :data:`SKIP_REASONS`), ``"examples"`` (the first few skipped images per reason) and
        ``"metadata_rows"``. Counts are per image (metadata row).

    Raises:
        FileNotFoundError: when ``root``, a CSV or a ``files/`` folder is missing.
        ValueError: when a CSV lacks required columns or has malformed ids.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"MIMIC-CXR-JPG root folder not found: {root}.")
    if not (root / "files").is_dir():
        raise FileNotFoundError(
            f"{root} has no files/ folder; ROOT must be the MIMIC-CXR-JPG folder that contains files/pXX/..."
        )
    reports_root = root if reports_root is None else Path(reports_root).expanduser()
    if not (reports_root / "files").is_dir():
        raise FileNotFoundError(
            f"reports folder {reports_root / 'files'} not found; reports_root (--reports-root) must be the "
            "folder that holds the files/pXX/pXXXXXXXX/sXXXXXXXX.txt tree of mimic-cxr-reports."
        )
    splits_map = dict(_DEFAULT_SPLITS_MAP if splits_map is None else splits_map)
    if include_test:
        splits_map.setdefault("test", "test")
    wanted_views = {v.strip().upper() for v in views}

    split_path = _find_table(root, SPLIT_CSV)
    split_of = {row["dicom_id"]: row["split"] for row in _read_csv(split_path, SPLIT_COLUMNS)}
    metadata_path = _find_table(root, METADATA_CSV)

    datalist: dict[str, list[dict]] = {section: [] for section in dict.fromkeys(splits_map.values())}
    skipped: Counter = Counter()
    examples: dict[str, list[str]] = {}
    report_cache: dict[str, str | None] = {}
    n_rows = 0

    def skip(reason: str, example: str) -> None:
        skipped[reason] += 1
        bucket = examples.setdefault(reason, [])
        if len(bucket) < _NUM_EXAMPLES:
            bucket.append(example)

    for line, row in enumerate(_read_csv(metadata_path, METADATA_COLUMNS), start=2):
        n_rows += 1
        dicom_id = row["dicom_id"]
        view = row["ViewPosition"]
        if view.upper() not in wanted_views:
            skip("view_not_selected", f"{dicom_id} (view {view or 'missing'})")
            continue
        split = split_of.get(dicom_id)
        if split is None:
            skip("no_split_entry", f"{dicom_id} (not in {split_path.name})")
            continue
        section = splits_map.get(split)
        if section is None:
            skip("split_not_selected", f"{dicom_id} (split {split})")
            continue
        study_folder = _study_folder(row["subject_id"], row["study_id"], metadata_path, line)
        image = f"{study_folder}/{dicom_id}.jpg"
        if not (root / image).is_file():
            skip("missing_image", str(root / image))
            continue
        report_file = reports_root / f"{study_folder}.txt"
        key = str(report_file)
        if key not in report_cache:
            if report_file.is_file():
                try:
                    report_cache[key] = report_from_sections(report_file.read_text(encoding="utf-8"))
                except UnicodeDecodeError as e:
                    raise ValueError(f"report {report_file} is not valid UTF-8 ({e}).") from e
            else:
                report_cache[key] = None
        report = report_cache[key]
        if report is None:
            skip("missing_report", key)
            continue
        if not report:
            skip("empty_report", key)
            continue
        datalist[section].append(
            {
                "image": image,
                "report": report,
                "modality": "xray",
                "patient_id": row["subject_id"],
                "study_id": row["study_id"],
                "dicom_id": dicom_id,
                "view": view.upper(),
            }
        )

    summary = {
        "kept": {section: len(items) for section, items in datalist.items()},
        "skipped": {reason: skipped[reason] for reason in SKIP_REASONS if skipped[reason]},
        "examples": {reason: examples[reason] for reason in SKIP_REASONS if reason in examples},
        "metadata_rows": n_rows,
    }
    return datalist, summary
