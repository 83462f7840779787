# SPDX-License-Identifier: Apache-2.0
"""File names of a run's outputs, one per input: :func:`output_stem`, :func:`unique_output_stems`,
:func:`per_input_outputs`."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["IMAGE_SUFFIXES", "output_stem", "per_input_outputs", "unique_output_stems"]

logger = logging.getLogger(__name__)

#: file suffixes :func:`output_stem` strips (longest first).
IMAGE_SUFFIXES = (
    ".nii.gz",
    ".nii",
    ".nrrd",
    ".nhdr",
    ".mha",
    ".mhd",
    ".dcm",
    ".dicom",
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
)


def output_stem(image: str | os.PathLike) -> str:
    """File-name stem for the outputs of ``image`` (``ct.nii.gz`` -> ``ct``; a DICOM folder -> its name)."""
    name = Path(os.fspath(image).rstrip("/\\")).name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "image"
    return name or "image"


def unique_output_stems(images: Sequence[str | os.PathLike]) -> list[str]:
    """:func:`output_stem` of each input, made unique: inputs sharing a name get their parent folders'
    names in front (``a/ct.nii.gz``, ``b/ct.nii.gz`` -> ``a_ct``, ``b_ct``), a numbered suffix as a last resort.

    Args:
        images: the input files or folders, in order.

    Returns:
        one stem per input, in order, all different.
    """
    paths = [Path(os.fspath(p)).expanduser().resolve() for p in images]
    stems = [output_stem(p) for p in paths]
    depth = 0
    while len(set(stems)) < len(stems) and depth < 8:
        depth += 1
        counts = {s: stems.count(s) for s in stems}
        stems = [
            "_".join([*[q.name for q in reversed(p.parents[:depth]) if q.name], output_stem(p)]) if counts[s] > 1 else s
            for p, s in zip(paths, stems)
        ]
    if len(set(stems)) < len(stems):  # the same folder: number them
        stems = [f"{output_stem(p)}_{i}" for i, p in enumerate(paths)]
    renamed = sum(a != b for a, b in zip(stems, (output_stem(p) for p in paths)))
    if renamed:
        logger.warning(
            "%d inputs share a file name; their outputs are named after their folders too (e.g. %s)", renamed, stems[0]
        )
    return stems


def per_input_outputs(
    images: Sequence[str | os.PathLike], output_dir: str | os.PathLike, suffix: str
) -> dict[str, str]:
    """``{input: output_dir/<unique stem><suffix>}`` for a run writing one file per input.

    Pass the result to :func:`guard_outputs` (``files=``) to refuse an output that would overwrite an input.

    Args:
        images: the inputs (files or DICOM series folders).
        output_dir: the output folder.
        suffix: appended to the stem, e.g. ``"_seg.nii.gz"``.
    """
    folder = Path(output_dir).expanduser().resolve()
    resolved = [str(Path(os.fspath(p)).expanduser().resolve()) for p in images]
    return {src: str(folder / f"{stem}{suffix}") for src, stem in zip(resolved, unique_output_stems(resolved))}
