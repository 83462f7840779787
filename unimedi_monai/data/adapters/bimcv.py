# SPDX-License-Identifier: Apache-2.0
"""Datalist builder for the CT studies of BIMCV-COVID19+ (chest CT with Spanish reports).

Supported layout (the MIDS/BIDS-like tree of the BIMCV-COVID19+ release, e.g. ``covid19_posi/``)::

    ROOT/
        sub-S03047/
            ses-E07985/
                mod-rx/
                    sub-S03047_ses-E07985_run-1_bp-chest_ct.nii.gz    # CT volume
                    sub-S03047_ses-E07985_run-1_bp-chest_ct.json      # sidecar (optional)
                    sub-S03047_ses-E07985_run-1_bp-chest_vp-pa_cr.nii.gz   # X-ray: ignored

A NIfTI file (``.nii`` or ``.nii.gz``, anywhere below a ``ses-*`` folder) is a CT volume when its
name contains ``_ct``, when it lies in a ``mod-ct`` folder, or when its JSON sidecar (same name,
``.json``) gives the modality ``CT`` (``"Modality": "CT"`` or the DICOM-JSON tag ``00080060``).

Reports come from a table (TSV, or CSV when the file ends with ``.csv``; ``.gz`` allowed) with one
row per session and the columns (case-insensitive):

- subject: ``subject``, ``sub``, ``subject_id``, ``participant``, ``participant_id``, ``PatientID``
  or ``patient_id``; values ``sub-S03047`` or ``S03047``;
- session: ``session``, ``ses``, ``session_id``, ``ReportID`` or ``report_id``; values ``ses-E07985``
  or ``E07985``;
- the report text (``report_column``, ``report`` by default). A cell that holds a Python list of
  sentences (``['sentence 1', 'sentence 2']``, as in the release's
  ``derivatives/labels/labels_covid_posi.tsv``) is joined into one text.

The reports are in Spanish and are kept as written (``language: "es"``). The default text encoder
of unimedi-monai is English: to train on English text, add a column with translated reports to the
table and pass its name as ``translated_column``; the translation is then the ``report``
(``language: "en"``) and the Spanish text is kept under ``report_original``.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unimedi_monai.data.datalist import split_by_patient
from unimedi_monai.data.reports import clean_report

__all__ = ["SUBJECT_COLUMNS", "SESSION_COLUMNS", "SKIP_REASONS", "is_ct_nifti", "build_bimcv_datalist"]

SUBJECT_COLUMNS = ("subject", "sub", "subject_id", "participant", "participant_id", "patientid", "patient_id")
"""Accepted names (case-insensitive) of the subject column of the reports table."""

SESSION_COLUMNS = ("session", "ses", "session_id", "reportid", "report_id")
"""Accepted names (case-insensitive) of the session column of the reports table."""

SKIP_REASONS = (
    "session_without_report",
    "empty_report",
    "empty_translation",
    "report_without_ct",
    "duplicate_report_row",
)
"""Keys of ``summary["skipped"]``; all counts are sessions (``duplicate_report_row``: table rows)."""

_NUM_EXAMPLES = 5
_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_CT_DICOM_TAG = "00080060"


def _nifti_stem(path: Path) -> str | None:
    """The file name without its NIfTI suffix, or ``None`` if ``path`` is not a NIfTI file."""
    name = path.name
    for suffix in _NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def _sidecar_modality(sidecar: Path) -> str | None:
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(meta, dict):
        return None
    if isinstance(meta.get("Modality"), str):
        return meta["Modality"]
    tag = meta.get(_CT_DICOM_TAG)
    if isinstance(tag, dict) and isinstance(tag.get("Value"), list) and tag["Value"]:
        return str(tag["Value"][0])
    return None


def is_ct_nifti(path: str | Path) -> bool:
    """Whether ``path`` is a CT NIfTI volume of the BIMCV layout (see the module docstring).

    Args:
        path: a file path.

    Returns:
        ``True`` for a ``.nii``/``.nii.gz`` file whose name contains ``_ct``, that lies in a
        ``mod-ct`` folder, or whose JSON sidecar gives the modality ``CT``.
    """
    path = Path(path)
    stem = _nifti_stem(path)
    if stem is None:
        return False
    if "_ct" in stem.lower() or path.parent.name.lower() == "mod-ct":
        return True
    sidecar = path.with_name(f"{stem}.json")
    modality = _sidecar_modality(sidecar) if sidecar.is_file() else None
    return modality is not None and modality.strip().upper() == "CT"


def _with_prefix(value: str, prefix: str) -> str:
    value = value.strip()
    return value if not value or value.startswith(prefix) else f"{prefix}{value}"


def _decode_report_cell(value: str) -> str:
    """Join a report stored as a Python list of sentences; return other text unchanged."""
    stripped = value.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        try:
            parsed = ast.literal_eval(stripped)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return value
        if isinstance(parsed, list) and all(isinstance(s, str) for s in parsed):
            return " ".join(parsed)
    return value


def _read_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Read a TSV/CSV table (``.gz`` allowed); returns the header and the rows."""
    name = path.name.lower()
    base = name[:-3] if name.endswith(".gz") else name
    delimiter = "," if base.endswith(".csv") else "\t"
    raw = gzip.open(path, "rb") if name.endswith(".gz") else open(path, "rb")
    try:
        with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            header = [h.strip() for h in reader.fieldnames or []]
            reader.fieldnames = header
            # short rows give None values, long rows a None key: normalise both
            rows = [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    except UnicodeDecodeError as e:
        raise ValueError(f"reports table {path} is not valid UTF-8 ({e}); save it as UTF-8.") from e
    except csv.Error as e:
        kind = "CSV" if delimiter == "," else "TSV"
        raise ValueError(f"reports table {path} could not be parsed as {kind}: {e}.") from e
    return header, rows


def _find_column(header: Sequence[str], names: Sequence[str]) -> str | None:
    """The first header entry equal to one of ``names`` (exactly first, then case-insensitively)."""
    for name in names:
        if name in header:
            return name
    lowered = {h.lower(): h for h in header}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def build_bimcv_datalist(
    root: str | Path,
    reports_table: str | Path,
    report_column: str = "report",
    translated_column: str | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[dict[str, list[dict]], dict[str, Any]]:
    """Build a datalist of BIMCV-COVID19+ CT volumes with their session reports.

    Args:
        root: the folder holding the ``sub-*`` subject folders.
        reports_table: the TSV/CSV table of reports (see the module docstring for its columns).
        report_column: the column with the (Spanish) report text.
        translated_column: an optional column with translated (English) reports; when given, it is
            used as ``report`` and the original text is kept under ``report_original``. Sessions
            whose translation is empty are skipped (``empty_translation``).
        val_fraction: fraction of subjects in the validation section.
        seed: seed of the subject split.

    Returns:
        ``(datalist, summary)``. ``datalist`` has ``"training"`` and ``"validation"`` sections
        (split by subject), with one item per CT NIfTI whose session has a report: ``image``
        (relative to ``root``), ``report`` (cleaned), ``modality="ct"``, ``patient_id``
        (``sub-...``), ``study_id`` (``ses-...``), ``language`` (``"es"`` or ``"en"``) and, with
        ``translated_column``, ``report_original``. ``summary`` has ``"kept"`` (items per
        section), ``"skipped"`` (counts per reason, see :data:`SKIP_REASONS`), ``"examples"``,
        ``"ct_files"``, ``"ct_sessions"`` and ``"report_rows"``.

    Raises:
        FileNotFoundError: when ``root``, its subject/session folders or the table are missing.
        ValueError: when ``val_fraction`` is not in ``[0, 1)``, or the table lacks required columns
            or cannot be read.
    """
    if not 0.0 <= float(val_fraction) < 1.0:  # checked before scanning a possibly large tree
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    root = Path(root).expanduser()
    reports_table = Path(reports_table).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"BIMCV root folder not found: {root}.")
    if not reports_table.is_file():
        raise FileNotFoundError(f"BIMCV reports table not found: {reports_table}.")

    header, rows = _read_table(reports_table)
    subject_col = _find_column(header, SUBJECT_COLUMNS)
    session_col = _find_column(header, SESSION_COLUMNS)
    report_col = _find_column(header, (report_column,))
    translated_col = None if translated_column is None else _find_column(header, (translated_column,))
    missing = []
    if subject_col is None:
        missing.append("subject (one of " + ", ".join(SUBJECT_COLUMNS) + ")")
    if session_col is None:
        missing.append("session (one of " + ", ".join(SESSION_COLUMNS) + ")")
    if report_col is None:
        missing.append(report_column)
    if translated_column is not None and translated_col is None:
        missing.append(translated_column)
    if missing:
        raise ValueError(
            f"reports table {reports_table} is missing the column(s) {missing} (found {header}); "
            "rename the columns or pass --report-column/--translated-column."
        )

    skipped: Counter = Counter()
    examples: dict[str, list[str]] = {}

    def skip(reason: str, example: str) -> None:
        skipped[reason] += 1
        bucket = examples.setdefault(reason, [])
        if len(bucket) < _NUM_EXAMPLES:
            bucket.append(example)

    reports: dict[tuple[str, str], dict[str, str]] = {}
    for line, row in enumerate(rows, start=2):
        key = (_with_prefix(row[subject_col], "sub-"), _with_prefix(row[session_col], "ses-"))
        if not key[0] or not key[1]:
            raise ValueError(
                f"reports table {reports_table}, line {line}: empty subject or session; fill in or remove the row."
            )
        if key in reports:
            skip("duplicate_report_row", f"{reports_table.name} line {line} ({key[0]}/{key[1]})")
            continue
        reports[key] = {
            "original": clean_report(_decode_report_cell(row[report_col])),
            "translated": "" if translated_col is None else clean_report(_decode_report_cell(row[translated_col])),
        }

    subject_dirs = sorted(p for p in root.glob("sub-*") if p.is_dir())
    session_dirs = [s for sub in subject_dirs for s in sorted(sub.glob("ses-*")) if s.is_dir()]
    if not session_dirs:
        raise FileNotFoundError(
            f"no sub-*/ses-* folders under {root}; ROOT must be the BIMCV-COVID19+ folder that holds the "
            "sub-SXXXXX subject folders (e.g. covid19_posi/)."
        )

    items: list[dict] = []
    ct_sessions: set[tuple[str, str]] = set()
    n_ct = 0
    for session_dir in session_dirs:
        key = (session_dir.parent.name, session_dir.name)
        cts = sorted(p for p in session_dir.rglob("*") if p.is_file() and is_ct_nifti(p))
        if not cts:
            continue
        n_ct += len(cts)
        ct_sessions.add(key)
        report = reports.get(key)
        where = f"{key[0]}/{key[1]}"
        if report is None:
            skip("session_without_report", where)
            continue
        if translated_col is not None:
            if not report["translated"]:
                skip("empty_translation", where)
                continue
            text, language = report["translated"], "en"
        else:
            if not report["original"]:
                skip("empty_report", where)
                continue
            text, language = report["original"], "es"
        for ct in cts:
            item = {
                "image": ct.relative_to(root).as_posix(),
                "report": text,
                "modality": "ct",
                "patient_id": key[0],
                "study_id": key[1],
                "language": language,
            }
            if translated_col is not None:
                item["report_original"] = report["original"]
            items.append(item)

    for key in reports:
        if key not in ct_sessions:
            skip("report_without_ct", f"{key[0]}/{key[1]}")

    train, val = split_by_patient(items, val_fraction, seed, key="patient_id")
    datalist = {"training": train, "validation": val}
    summary = {
        "kept": {section: len(section_items) for section, section_items in datalist.items()},
        "skipped": {reason: skipped[reason] for reason in SKIP_REASONS if skipped[reason]},
        "examples": {reason: examples[reason] for reason in SKIP_REASONS if reason in examples},
        "ct_files": n_ct,
        "ct_sessions": len(ct_sessions),
        "report_rows": len(rows),
    }
    return datalist, summary
