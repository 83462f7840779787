# SPDX-License-Identifier: Apache-2.0
"""The input images of an inference run, from what the user put in its config keys.

The one place that turns ``input``/``input_files``/``input_dir`` values into paths, for every
inference workflow: classification and 2D segmentation (:func:`unimedi_monai.classification.list_input_images`),
3D segmentation (:func:`unimedi_monai.segmentation.inference_items`) and the pre-training bundle's
embeddings (:func:`unimedi_monai.packaging.list_images`). Each keeps its own accepted forms; the suffix
tables, the modality of a file, the existence checks and their messages (naming the config key and the
input) are these.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Sequence

__all__ = ["CT_SUFFIXES", "XRAY_SUFFIXES", "folder_inputs", "infer_modality", "input_paths"]

#: suffixes of CT volumes (a DICOM series is a folder).
CT_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")
#: suffixes of X-ray images (single files).
XRAY_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".dcm", ".dicom")


def infer_modality(path: str | os.PathLike) -> str:
    """``"ct"`` for NIfTI / NRRD / MHA / MHD files and DICOM-series folders, ``"xray"`` for PNG / JPEG / BMP / single DICOM files.

    Raises:
        ValueError: another kind of file, naming it and the accepted suffixes.
    """
    p = Path(path)
    name = p.name.lower()
    if p.is_dir() or name.endswith(CT_SUFFIXES):
        return "ct"
    if name.endswith(XRAY_SUFFIXES):
        return "xray"
    raise ValueError(f"{p}: cannot tell the modality; CT volumes end in {CT_SUFFIXES} (or are DICOM-series folders), X-rays in {XRAY_SUFFIXES}.")


def input_paths(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    key: str,
    patterns: bool = False,
    listing: bool = False,
    hint: str = "",
) -> list[Path]:
    """The existing paths named by config key ``key``: one path or a list of them, in order.

    Args:
        inputs: a path or a list of paths.
        key: the config key they came from (named in the messages).
        patterns: each entry may be a glob pattern (its matches, sorted).
        listing: a single ``.txt`` file lists one path per line (relative ones to the listing's folder).
        hint: appended to the message of a missing input (what to set ``key`` to).

    Raises:
        FileNotFoundError: an input does not exist (or its pattern matches nothing), naming the key, its
            index and the path.
    """
    entries = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if listing and len(entries) == 1 and str(entries[0]).endswith(".txt") and Path(entries[0]).is_file():
        text = Path(entries[0])
        entries = [line.strip() if os.path.isabs(line.strip()) else text.parent / line.strip()
                   for line in text.read_text(encoding="utf-8").splitlines() if line.strip()]
    paths: list[Path] = []
    for i, entry in enumerate(entries):
        path = Path(entry).expanduser()
        if patterns and not path.exists():
            matches = sorted(glob.glob(str(path)))
            if not matches:
                raise FileNotFoundError(f"config key '{key}': input {i} '{path}' does not exist (or the pattern matches nothing){hint}.")
            paths += [Path(m) for m in matches]
            continue
        if not path.exists():
            raise FileNotFoundError(f"config key '{key}': input {i} '{path}' does not exist{hint}.")
        paths.append(path)
    return paths


def folder_inputs(
    folder: str | os.PathLike | None, key: str, suffixes: Sequence[str], recursive: bool = False, series_folders: bool = False
) -> list[Path]:
    """The images in ``folder`` (config key ``key``), sorted: files ending in one of ``suffixes`` (any case).

    Args:
        folder: the folder.
        key: the config key it came from (named in the messages).
        suffixes: the accepted file suffixes.
        recursive: look in its sub-folders too.
        series_folders: also take its sub-folders themselves (DICOM series); not with ``recursive``.

    Raises:
        ValueError: ``folder`` is not set, or holds no image (naming the key and the accepted suffixes).
        FileNotFoundError: ``folder`` is not a folder.
    """
    if folder is None or f"{folder}" == "":
        raise ValueError(f"config key '{key}' is not set; pass --{key} with a folder of images ({'/'.join(suffixes)}).")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"config key '{key}': {root} is not a folder.")
    candidates = root.rglob("*") if recursive else root.iterdir()
    suffixes = tuple(s.lower() for s in suffixes)
    found = sorted(
        p for p in candidates
        if not p.name.startswith(".")
        and ((p.is_file() and p.name.lower().endswith(suffixes)) or (series_folders and not recursive and p.is_dir()))
    )
    if not found:
        kinds = "/".join(suffixes) + (" files or DICOM-series folders" if series_folders else " files")
        raise ValueError(f"config key '{key}': no {kinds} in {root}.")
    return found
