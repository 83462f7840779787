# SPDX-License-Identifier: Apache-2.0
"""The inputs of an inference bundle, named by the two config keys every bundle shares.

The MONAI model zoo's inference configs name their input folder ``dataset_dir`` (a required property of
MONAI's ``InferProperties``) and the files to process ``datalist``; the project's bundles use the same
two keys:

- ``datalist``: one path, a glob pattern, a list of them, or a ``.txt`` file listing one path per line
  (relative lines are read from the ``.txt``'s folder);
- ``dataset_dir``: a folder; every input in it is processed (used when ``datalist`` is not set).

:func:`list_inputs` turns the two keys into the sorted list of paths a bundle reads.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["CT_SUFFIXES", "XRAY_SUFFIXES", "MODALITIES", "infer_modality", "list_inputs"]

CT_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")
"""CT volume file suffixes (a DICOM series is a folder)."""
XRAY_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".dcm", ".dicom")
"""X-ray file suffixes."""
MODALITIES = ("xray", "ct", "any")
"""What :func:`list_inputs` picks up in ``dataset_dir``."""


def infer_modality(path: str | os.PathLike) -> str:
    """``"ct"`` for NIfTI / NRRD / MHA / MHD files and DICOM-series folders, ``"xray"`` for PNG / JPEG / BMP /
    single DICOM files.

    Raises:
        ValueError: another kind of file, naming it and the accepted suffixes.
    """
    p = Path(path)
    name = p.name.lower()
    if p.is_dir() or name.endswith(CT_SUFFIXES):
        return "ct"
    if name.endswith(XRAY_SUFFIXES):
        return "xray"
    raise ValueError(
        f"{p}: cannot tell the modality; CT volumes end in {CT_SUFFIXES} (or are DICOM-series folders), X-rays in "
        f"{XRAY_SUFFIXES}."
    )


def _datalist_paths(datalist: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    entries = [datalist] if isinstance(datalist, (str, os.PathLike)) else list(datalist)
    if len(entries) == 1 and str(entries[0]).lower().endswith(".txt") and Path(entries[0]).expanduser().is_file():
        listing = Path(entries[0]).expanduser()
        entries = [
            line.strip() if os.path.isabs(line.strip()) else str(listing.parent / line.strip())
            for line in listing.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    paths: list[str] = []
    for i, entry in enumerate(entries):
        path = os.path.expanduser(os.fspath(entry))
        if os.path.exists(path):  # a literal path, even one holding glob characters
            paths.append(path)
            continue
        matches = sorted(glob.glob(path))
        if not matches:
            raise FileNotFoundError(
                f"config key 'datalist', entry {i}: '{path}' does not exist (or the pattern matches nothing)."
            )
        paths += matches
    return paths


def _folder_inputs(folder: Path, modality: str) -> list[str]:
    if modality == "xray":  # every X-ray file, in sub-folders too
        return sorted(str(p) for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(XRAY_SUFFIXES))
    found = []
    for p in sorted(folder.iterdir()):  # files and DICOM-series folders directly in it
        if p.name.startswith("."):
            continue
        try:
            kind = infer_modality(p)
        except ValueError:
            continue
        if modality == "any" or kind == modality:
            found.append(str(p))
    return found


def list_inputs(
    datalist: str | os.PathLike | Sequence[str | os.PathLike] | None,
    dataset_dir: str | os.PathLike | None = None,
    modality: str = "any",
) -> list[str]:
    """The inputs of an inference run: ``datalist`` if set, else every input in ``dataset_dir``.

    Args:
        datalist: one path, a glob pattern, a list of them, or a ``.txt`` file listing one path per line.
        dataset_dir: a folder of inputs, read when ``datalist`` is None or empty.
        modality: what ``dataset_dir`` contributes: ``"xray"`` every X-ray file (sub-folders too), ``"ct"`` the
            CT files and DICOM-series folders directly in it, ``"any"`` both kinds directly in it.

    Returns:
        the paths (files or DICOM-series folders), ``datalist`` in its order, ``dataset_dir`` sorted.

    Raises:
        ValueError: neither key is set, ``dataset_dir`` holds no input, or ``modality`` is unknown.
        FileNotFoundError: a ``datalist`` entry does not exist or ``dataset_dir`` is not a folder (naming the key).
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}; got {modality!r}.")
    if datalist is not None and not (isinstance(datalist, (list, tuple)) and not datalist):
        return _datalist_paths(datalist)
    if dataset_dir is None or not os.fspath(dataset_dir):
        raise ValueError(
            "no input given: set config key 'datalist' (a file, glob, list or .txt listing) or 'dataset_dir' (a folder "
            "of inputs)."
        )
    folder = Path(dataset_dir).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"config key 'dataset_dir': {folder} is not a folder.")
    found = _folder_inputs(folder, modality)
    if not found:
        kinds = {"xray": XRAY_SUFFIXES, "ct": CT_SUFFIXES, "any": CT_SUFFIXES + XRAY_SUFFIXES}[modality]
        raise ValueError(
            f"config key 'dataset_dir': {folder} holds no input; expected {'/'.join(kinds)} files"
            + (" or DICOM-series folders." if modality != "xray" else ".")
        )
    return found
