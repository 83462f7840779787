# SPDX-License-Identifier: Apache-2.0
"""The CTs the slice-selection evaluation runs on: LUNA16 nodules or the built-in demo lesions.

A *case* is a dict with ``id``, ``image`` (a CT file or DICOM folder) and ``nodules_voxel``: the
lesion centres as voxel indices ``[i, j, k]`` in the file's own (SimpleITK) index order.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["demo_cases", "evaluation_cases"]


def demo_cases(
    datalist: str | os.PathLike,
    sections: Sequence[str] = ("validation",),
    findings: Sequence[str] | None = None,
    max_cases: int | None = None,
) -> list[dict[str, Any]]:
    """The demo CTs with a lesion, from a datalist written by :func:`unimedi_monai.data.generate_demo_dataset`.

    Args:
        datalist: the demo ``datalist.json``.
        sections: datalist sections to use (``["validation"]``: the held-out CTs; add ``"training"``
            for more CTs: the selection never sees where the lesions are).
        findings: keep only these findings (e.g. ``["nodule", "mass"]``); None keeps every lesion.
        max_cases: keep at most this many CTs (in datalist order), or all when None.

    Returns:
        cases with ``id``, ``image``, ``finding``, ``report`` (the text, the query of text-guided
        selection) and ``nodules_voxel`` (``[lesion_centre_voxel]``).

    Raises:
        ValueError: an item lacks ``lesion_centre_voxel`` (not a demo datalist) or no CT qualifies.
    """
    from unimedi_monai.data.datalist import load_datalist

    path = Path(datalist)
    data = load_datalist(path.parent, path.name, sections=list(sections))
    cases: list[dict[str, Any]] = []
    for section in sections:
        for index, item in enumerate(data[section]):
            if item.get("modality") != "ct" or (findings is not None and item.get("finding") not in findings):
                continue
            if "lesion_centre_voxel" not in item:
                raise ValueError(
                    f"{path}: {section}[{index}] ({item.get('image')}) has no 'lesion_centre_voxel'; the demo "
                    "evaluation needs a datalist written by unimedi_monai.data.generate_demo_dataset (or set "
                    "`dataset_dir`)."
                )
            centre = item["lesion_centre_voxel"]
            if centre is None:
                continue
            cases.append(
                {
                    "id": Path(item["image"]).name.split(".")[0],
                    "image": item["image"],
                    "finding": item.get("finding"),
                    "report": item.get("report"),
                    "nodules_voxel": [[int(c) for c in centre]],
                }
            )
            if max_cases is not None and len(cases) >= max_cases:
                return cases
    if not cases:
        raise ValueError(
            f"{path}: no CT with a lesion in sections {list(sections)} (findings {findings}); check `demo_sections`."
        )
    return cases


def evaluation_cases(
    dataset_dir: str | os.PathLike | None,
    annotations: str | os.PathLike | None = None,
    min_diameter_mm: float = 3.0,
    demo_dir: str | os.PathLike | None = None,
    demo: Mapping[str, Any] | None = None,
    demo_sections: Sequence[str] = ("validation",),
    demo_findings: Sequence[str] | None = None,
    max_cases: int | None = None,
) -> list[dict[str, Any]]:
    """LUNA16 cases from ``dataset_dir``, or demo cases when ``dataset_dir`` is None.

    Args:
        dataset_dir: a LUNA16 folder (``subset*/<seriesuid>.mhd``), or None for the demo data.
        annotations: LUNA16 annotations CSV (default ``dataset_dir/annotations.csv``).
        min_diameter_mm: smallest LUNA16 nodule kept.
        demo_dir: the demo data folder; generated there when absent (reused when it holds the same demo).
        demo: arguments of :func:`~unimedi_monai.data.generate_demo_dataset` (``n_xray``, ``n_ct``, ``seed``).
        demo_sections: demo datalist sections evaluated.
        demo_findings: demo findings evaluated (None: every lesion).
        max_cases: at most this many CTs.
    """
    if dataset_dir is not None and str(dataset_dir) not in ("", "demo"):
        from unimedi_monai.data.adapters.luna16 import luna16_cases

        return luna16_cases(dataset_dir, annotations, min_diameter_mm, max_cases)
    if demo_dir is None:
        raise ValueError("the demo evaluation needs `demo_dir` (where the demo data is or is generated).")
    from unimedi_monai.data.demo import generate_demo_dataset

    datalist = generate_demo_dataset(demo_dir, **dict(demo or {}), progress=False)
    return demo_cases(datalist, demo_sections, demo_findings, max_cases)
