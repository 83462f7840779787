# SPDX-License-Identifier: Apache-2.0
"""Command line tool that writes datalists for public image-report datasets.

Usage::

    python -m unimedi_monai.data.prepare mimic-cxr ROOT OUT.json [--reports-root DIR] [--views PA AP] [--include-test]
    python -m unimedi_monai.data.prepare bimcv ROOT REPORTS_TABLE OUT.json [--report-column C]
        [--translated-column C] [--val-fraction F] [--seed S]
    python -m unimedi_monai.data.prepare merge OUT.json IN1.json IN2.json ...

Each command writes only ``OUT.json`` (atomically; the dataset folders and tables are read, never
modified) and prints what was kept per section and what was skipped per reason. Image paths are
written relative to ``OUT.json``'s folder when the images are inside it, absolute otherwise, so
the folder holding ``OUT.json`` can be used as ``dataset_dir``. Bad input ends the command with a
one-line ``error: ...`` message on stderr and exit status 1 (2 for invalid arguments).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from unimedi_monai.data.adapters.bimcv import build_bimcv_datalist
from unimedi_monai.data.adapters.mimic_cxr import METADATA_CSV, SPLIT_CSV, build_mimic_cxr_datalist
from unimedi_monai.data.datalist import MODALITIES, REQUIRED_KEYS, is_report_path, read_datalist_json, write_datalist

__all__ = ["build_parser", "merge_datalists", "main"]

_PROG = "python -m unimedi_monai.data.prepare"
_NUM_PRINTED_EXAMPLES = 2


def _absolute(path: str | os.PathLike, base: Path | None = None) -> Path:
    """``path`` made absolute (against ``base`` or the working directory), normalised, symlinks kept."""
    candidate = Path(path).expanduser()
    if not candidate.is_absolute() and base is not None:
        candidate = base / candidate
    return Path(os.path.normpath(os.path.abspath(candidate)))


def _check_output(out: Path, inputs: Sequence[Path]) -> None:
    """Refuse an output path that is a folder, an existing non-JSON file or one of the input tables."""
    if out.is_dir():
        raise ValueError(f"output {out} is a folder; give the path of the .json file to write.")
    if out.exists() and out.suffix.lower() != ".json":
        raise ValueError(f"output {out} exists and is not a .json file; choose another output path.")
    for source in inputs:
        if out == _absolute(source):
            raise ValueError(
                f"output {out} is an input file; choose another output path so the input is not overwritten."
            )


def _rebase_items(items: Sequence[Mapping], base: Path) -> list[dict]:
    """Copies of ``items`` with relative ``image`` (and ``.txt`` ``report``) paths made absolute against ``base``."""
    rebased = []
    for item in items:
        entry = dict(item)
        if isinstance(entry.get("image"), str):
            entry["image"] = str(_absolute(entry["image"], base))
        report = entry.get("report")
        if isinstance(report, str) and is_report_path(report):
            entry["report"] = str(_absolute(report.strip(), base))
        rebased.append(entry)
    return rebased


def merge_datalists(out: str | Path, inputs: Sequence[str | Path]) -> dict[str, Any]:
    """Concatenate the sections of several datalists into one file.

    Relative paths of each input are taken relative to that input's folder (as written by this tool
    and by :func:`~unimedi_monai.data.datalist.write_datalist`) and rewritten so that they stay
    correct relative to ``out``'s folder. A section is any top-level list of objects; other
    top-level keys of the inputs are not copied. Entries whose image already appeared in the same
    section are dropped and counted (``duplicate_image``).

    Args:
        out: the datalist to write (may be one of the inputs).
        inputs: the datalists to merge, in order.

    Returns:
        A summary with ``"kept"`` (items per section), ``"skipped"`` (``duplicate_image`` count),
        ``"examples"`` and ``"per_input"`` (items per section of each input).

    Raises:
        FileNotFoundError: when an input is missing.
        ValueError: when an input is not a valid datalist (message names file, section, entry, key).
    """
    out = _absolute(out)
    _check_output(out, [])
    if not inputs:
        raise ValueError("merge needs at least one input datalist.")
    merged: dict[str, list[dict]] = {}
    seen: dict[str, set[str]] = {}
    per_input: dict[str, dict[str, int]] = {}
    duplicates: list[str] = []
    for source in inputs:
        source = _absolute(source)
        data = read_datalist_json(source)
        counts: dict[str, int] = {}
        for section, entries in data.items():
            if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
                if section in ("training", "validation"):
                    raise ValueError(f"datalist {source}: section '{section}' must be a list of objects.")
                continue
            for index, entry in enumerate(entries):
                for key in REQUIRED_KEYS:
                    if key not in entry:
                        raise ValueError(
                            f"datalist {source}, section '{section}', entry {index}: missing key '{key}'; "
                            f"every entry needs {', '.join(REQUIRED_KEYS)}."
                        )
                modality = entry["modality"]
                if not isinstance(modality, str) or modality.strip().lower() not in MODALITIES:
                    raise ValueError(
                        f"datalist {source}, section '{section}', entry {index}: key 'modality' is {modality!r}; "
                        f"it must be one of {list(MODALITIES)}."
                    )
            kept_here = 0
            section_seen = seen.setdefault(section, set())
            for entry in _rebase_items(entries, source.parent):
                image = str(entry["image"])
                if image in section_seen:
                    duplicates.append(f"{image} ({source.name}, {section})")
                    continue
                section_seen.add(image)
                merged.setdefault(section, []).append(entry)
                kept_here += 1
            merged.setdefault(section, [])
            counts[section] = kept_here
        per_input[str(source)] = counts
    write_datalist(
        out,
        merged,
        name="merged",
        description="Merged from: " + ", ".join(Path(p).name for p in per_input),
        sources=list(per_input),
    )
    return {
        "kept": {section: len(items) for section, items in merged.items()},
        "skipped": {"duplicate_image": len(duplicates)} if duplicates else {},
        "examples": {"duplicate_image": duplicates[:5]} if duplicates else {},
        "per_input": per_input,
    }


def _print_summary(out: Path, summary: Mapping[str, Any]) -> None:
    print(f"wrote {out}")
    print("kept:")
    for section, count in summary.get("kept", {}).items():
        print(f"  {section}: {count}")
    skipped = summary.get("skipped", {})
    print("skipped:" if skipped else "skipped: none")
    for reason, count in skipped.items():
        examples = summary.get("examples", {}).get(reason, [])[:_NUM_PRINTED_EXAMPLES]
        hint = f" (e.g. {'; '.join(examples)})" if examples else ""
        print(f"  {reason}: {count}{hint}")


def _write_prepared(
    out: Path, datalist: Mapping[str, list[dict]], root: Path, summary: Mapping, **metadata: Any
) -> None:
    """Write a datalist whose image paths are relative to ``root`` and print its summary."""
    if not any(datalist.values()):
        skipped = ", ".join(f"{k}={v}" for k, v in summary.get("skipped", {}).items()) or "none"
        raise ValueError(f"no entries kept from {root} (skipped: {skipped}); nothing written to {out}.")
    sections = {name: _rebase_items(items, root) for name, items in datalist.items()}
    record = {k: v for k, v in summary.items() if k != "examples"}
    write_datalist(out, sections, **metadata, summary=record)
    _print_summary(out, summary)


def _run_mimic_cxr(args: argparse.Namespace) -> None:
    root, out = _absolute(args.root), _absolute(args.out)
    reports_root = None if args.reports_root is None else _absolute(args.reports_root)
    tables = [root / name for table in (METADATA_CSV, SPLIT_CSV) for name in (table, f"{table}.gz")]
    _check_output(out, tables)
    datalist, summary = build_mimic_cxr_datalist(
        root, reports_root=reports_root, views=args.views, include_test=args.include_test
    )
    _write_prepared(
        out,
        datalist,
        root,
        summary,
        name="MIMIC-CXR-JPG",
        description="Frontal chest X-rays (" + "/".join(args.views) + ") with FINDINGS and IMPRESSION sections.",
        source={"root": str(root), "reports_root": str(reports_root or root), "views": list(args.views)},
    )


def _run_bimcv(args: argparse.Namespace) -> None:
    root, table, out = _absolute(args.root), _absolute(args.reports_table), _absolute(args.out)
    _check_output(out, [table])
    datalist, summary = build_bimcv_datalist(
        root,
        table,
        report_column=args.report_column,
        translated_column=args.translated_column,
        val_fraction=args.val_fraction,
        seed=args.seed,
    )
    language = "English translation" if args.translated_column else "Spanish"
    _write_prepared(
        out,
        datalist,
        root,
        summary,
        name="BIMCV-COVID19+ CT",
        description=f"Chest CT volumes with {language} reports, split by subject.",
        source={
            "root": str(root),
            "reports_table": str(table),
            "report_column": args.report_column,
            "translated_column": args.translated_column,
            "val_fraction": args.val_fraction,
            "seed": args.seed,
        },
    )


def _run_merge(args: argparse.Namespace) -> None:
    out = _absolute(args.out)
    summary = merge_datalists(out, args.inputs)
    _print_summary(out, summary)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``prepare`` command line tool."""
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description=(
            "Write MONAI-style datalists (JSON with 'training' and 'validation' lists of "
            "{image, report, modality, ...} entries) for public image-report datasets. Only OUT is written; "
            "the datasets are never modified. Image paths are stored relative to OUT's folder when the images "
            "are inside it, absolute otherwise."
        ),
        epilog="Exit status: 0 on success, 1 on bad input (one-line message on stderr), 2 on invalid arguments.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    mimic = commands.add_parser(
        "mimic-cxr",
        help="datalist of frontal MIMIC-CXR-JPG images with FINDINGS + IMPRESSION",
        description=(
            "Datalist of MIMIC-CXR-JPG. ROOT holds mimic-cxr-2.0.0-metadata.csv and mimic-cxr-2.0.0-split.csv "
            "(or .csv.gz) and files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg. Reports are read from "
            "REPORTS_ROOT/files/pXX/pXXXXXXXX/sXXXXXXXX.txt and reduced to their FINDINGS and IMPRESSION "
            "sections (the whole report when neither exists). The official 'train' split becomes 'training', "
            "'validate' becomes 'validation'. Images with another view, no split entry, a missing JPEG, or a "
            "missing or empty report are skipped and counted."
        ),
    )
    mimic.add_argument("root", metavar="ROOT", help="the MIMIC-CXR-JPG folder")
    mimic.add_argument("out", metavar="OUT.json", help="the datalist to write")
    mimic.add_argument(
        "--reports-root",
        metavar="DIR",
        default=None,
        help="folder that holds the files/ tree of mimic-cxr-reports .txt files (default: ROOT)",
    )
    mimic.add_argument(
        "--views",
        nargs="+",
        metavar="VIEW",
        default=["PA", "AP"],
        help="ViewPosition values to keep (default: PA AP)",
    )
    mimic.add_argument(
        "--include-test", action="store_true", help="also write the official 'test' split as a 'test' section"
    )
    mimic.set_defaults(run=_run_mimic_cxr)

    bimcv = commands.add_parser(
        "bimcv",
        help="datalist of BIMCV-COVID19+ CT volumes with their reports",
        description=(
            "Datalist of BIMCV-COVID19+ CT. ROOT holds sub-SXXXXX/ses-EXXXXX/mod-*/ folders; a NIfTI is a CT "
            "volume when its name contains '_ct', it lies in mod-ct, or its JSON sidecar says CT. REPORTS_TABLE "
            "is a TSV (or .csv) with a subject column (subject/participant/PatientID...), a session column "
            "(session/ses/session_id/ReportID) and the report column. The reports are Spanish; the default text "
            "encoder is English, so pass --translated-column to train on translated text (the Spanish text is "
            "kept as report_original). Training/validation are split by subject."
        ),
    )
    bimcv.add_argument("root", metavar="ROOT", help="the folder holding the sub-* subject folders")
    bimcv.add_argument("reports_table", metavar="REPORTS_TABLE", help="TSV/CSV table of session reports")
    bimcv.add_argument("out", metavar="OUT.json", help="the datalist to write")
    bimcv.add_argument("--report-column", metavar="C", default="report", help="report column (default: report)")
    bimcv.add_argument(
        "--translated-column",
        metavar="C",
        default=None,
        help="column with translated (English) reports to use as the report text (default: none, keep Spanish)",
    )
    bimcv.add_argument(
        "--val-fraction",
        metavar="F",
        type=float,
        default=0.1,
        help="fraction of subjects for validation, in [0, 1) (default: 0.1)",
    )
    bimcv.add_argument("--seed", metavar="S", type=int, default=0, help="seed of the subject split (default: 0)")
    bimcv.set_defaults(run=_run_bimcv)

    merge = commands.add_parser(
        "merge",
        help="concatenate the sections of several datalists",
        description=(
            "Concatenate the sections of several datalists (e.g. MIMIC-CXR and BIMCV into one pre-training "
            "datalist). Relative paths of each input are read relative to that input's folder and rewritten "
            "to stay correct relative to OUT's folder. Entries repeating an image already in the same section "
            "are dropped and counted."
        ),
    )
    merge.add_argument("out", metavar="OUT.json", help="the datalist to write")
    merge.add_argument("inputs", metavar="IN.json", nargs="+", help="datalists to merge, in order")
    merge.set_defaults(run=_run_merge)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line tool.

    Args:
        argv: the arguments (without the program name); defaults to ``sys.argv[1:]``.

    Returns:
        The exit status: 0 on success, 1 on bad input (a one-line ``error: ...`` is printed to
        stderr). Invalid arguments exit with status 2 through :mod:`argparse`.
    """
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (OSError, ValueError) as e:
        message = " ".join(str(e).split())
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
