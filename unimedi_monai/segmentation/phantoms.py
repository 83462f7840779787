# SPDX-License-Identifier: Apache-2.0
"""Synthetic abdominal organ phantoms: the segmentation bundles' built-in demo data.

Each case is a CT-like volume (air at -1000 HU, an elliptic body of soft tissue at about 0 HU) holding
one ellipsoid per organ at its own place and mean HU (with noise), and the matching label map. The
cases are written as NIfTI in the BCV (``imagesTr/img0001.nii.gz``, ``dataset_0.json``) or AMOS
(``imagesTr/amos_0001.nii.gz``, ``dataset.json`` with ``labels`` / ``modality``) layout, so the demo
runs through exactly the code path of the real datasets. They exist to show that the bundles run
end to end and learn; they say nothing about performance on real CTs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from unimedi_monai.data.demo.cache import build_folder, stored_parameters
from unimedi_monai.data.sources import resolve_data_folder
from unimedi_monai.io.atomic_io import atomic_open, write_json_atomic
from unimedi_monai.segmentation.datalists import DEFAULT_DATALISTS
from unimedi_monai.segmentation.organs import channel_def, organ_names

__all__ = ["generate_organ_phantoms", "resolve_segmentation_data"]

logger = logging.getLogger(__name__)


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm")
    with atomic_open(path, "wb") as f:
        f.write(img.to_bytes() if not str(path).endswith(".gz") else _gzip(img.to_bytes()))


def _gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data, compresslevel=1, mtime=0)


def _case(rng: np.random.Generator, n_organs: int, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    x, y, z = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    sx, sy, sz = shape
    image = np.full(shape, -1000.0, dtype=np.float32)
    body = ((x - sx / 2) / (0.46 * sx)) ** 2 + ((y - sy / 2) / (0.38 * sy)) ** 2 <= 1.0
    image[body] = 0.0
    label = np.zeros(shape, dtype=np.uint8)
    # organs on a ring inside the body, alternating between two heights; radii shrink with the id
    for k in range(n_organs):
        angle = 2 * np.pi * k / n_organs
        ring = 0.22 if k % 2 else 0.12
        cx = sx / 2 + ring * sx * np.cos(angle) + rng.uniform(-2, 2)
        cy = sy / 2 + ring * sy * np.sin(angle) * 0.8 + rng.uniform(-2, 2)
        cz = sz * (0.35 if k % 3 == 0 else 0.6) + rng.uniform(-2, 2)
        scale = rng.uniform(0.85, 1.15)
        rx = ry = max(2.5, (0.085 - 0.0025 * k) * sx * scale)
        rz = max(2.0, 0.18 * sz * scale)
        inside = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2 <= 1.0
        label[inside] = k + 1
        image[inside] = -120.0 + 320.0 * k / max(n_organs - 1, 1)
    image += rng.normal(0.0, 12.0, size=shape).astype(np.float32) * body
    return image.astype(np.int16), label


def generate_organ_phantoms(
    output_dir: str | os.PathLike,
    layout: str = "bcv",
    n_train: int = 8,
    n_val: int = 2,
    shape: Sequence[int] = (96, 96, 40),
    spacing: Sequence[float] = (1.5, 1.5, 2.0),
    seed: int = 0,
) -> Path:
    """Write ``n_train + n_val`` phantom CTs with label maps and the layout's datalist; return the datalist path.

    A folder already holding a datalist written with the same arguments is reused as it is; one holding
    phantoms of other arguments is replaced; a non-empty folder without a phantom datalist is refused.
    The phantoms are written into a temporary sibling folder renamed into place
    (:func:`~unimedi_monai.data.demo.cache.build_folder`), so an interrupted run leaves nothing half written.

    Args:
        output_dir: destination folder.
        layout: ``"bcv"`` (13 organs, ``dataset_0.json``) or ``"amos"`` (15 organs, ``dataset.json``).
        n_train: training cases.
        n_val: validation cases.
        shape: volume size (x, y, z) in voxels.
        spacing: voxel spacing in mm.
        seed: random seed.

    Example::

        path = generate_organ_phantoms("demo_data", "bcv", n_train=4, n_val=1)
        load_segmentation_datalist(path.parent, "bcv")["training"]  # 4 cases
    """
    names = organ_names(layout)
    if n_train < 1 or n_val < 1:
        raise ValueError(f"generate_organ_phantoms needs n_train >= 1 and n_val >= 1, got {n_train} and {n_val}.")
    out = Path(output_dir)
    params = {
        "layout": layout,
        "n_train": int(n_train),
        "n_val": int(n_val),
        "shape": [int(s) for s in shape],
        "spacing": [float(s) for s in spacing],
        "seed": int(seed),
    }
    name = DEFAULT_DATALISTS[layout]
    json_path = out / name
    existing = _phantom_parameters(json_path)
    if existing == params:
        return json_path
    target = out.absolute()
    if target.exists() and any(target.iterdir()) and existing is None:
        raise FileExistsError(
            f"phantom folder {target} is not empty and holds no phantom {name}; choose another folder (or an empty "
            "one)."
        )
    rng = np.random.default_rng(seed)
    affine = np.diag([*params["spacing"], 1.0])

    def write(tmp: Path) -> None:
        rows = []
        for i in range(1, n_train + n_val + 1):
            if layout == "bcv":
                image_name, label_name = f"imagesTr/img{i:04d}.nii.gz", f"labelsTr/label{i:04d}.nii.gz"
            else:
                image_name, label_name = f"imagesTr/amos_{i:04d}.nii.gz", f"labelsTr/amos_{i:04d}.nii.gz"
            image, label = _case(rng, len(names), params["shape"])
            _save_nifti(image, affine, tmp / image_name)
            _save_nifti(label, affine, tmp / label_name)
            rows.append(
                {
                    "image": image_name if layout == "bcv" else f"./{image_name}",
                    "label": label_name if layout == "bcv" else f"./{label_name}",
                }
            )
        datalist: dict[str, Any] = {
            "description": "synthetic organ phantoms (unimedi_monai.segmentation.phantoms); not real anatomy",
            "training": rows[:n_train],
            "validation": rows[n_train:],
            "phantom_parameters": params,
        }
        if layout == "amos":
            datalist.update({"modality": {"0": "CT"}, "labels": channel_def("amos")})
        write_json_atomic(datalist, tmp / name)

    build_folder(target, write, lambda folder: _phantom_parameters(folder / name) == params, replace=True)
    logger.info("wrote %d %s organ phantoms to %s", n_train + n_val, layout.upper(), out)
    return json_path


def _phantom_parameters(json_path: Path) -> Any:
    """The ``phantom_parameters`` of a phantom datalist, None when absent or unreadable."""
    return stored_parameters(json_path, "phantom_parameters")


def resolve_segmentation_data(
    dataset_dir: str | os.PathLike | None,
    layout: str,
    demo_dir: str | os.PathLike,
    demo: Mapping[str, Any] | None = None,
) -> str:
    """The dataset folder to use: ``dataset_dir``, or with None the phantoms generated in ``demo_dir``.

    Args:
        dataset_dir: the user's dataset folder (config key ``dataset_dir``) or None.
        layout: ``"bcv"`` or ``"amos"``.
        demo_dir: where the phantoms go (reused when complete).
        demo: arguments of :func:`generate_organ_phantoms` (``n_train``, ``n_val``, ``shape``, ``spacing``, ``seed``).

    Raises:
        FileNotFoundError: ``dataset_dir`` is set and does not exist (naming the key).
    """
    return resolve_data_folder(
        dataset_dir,
        lambda: generate_organ_phantoms(demo_dir, layout, **dict(demo or {})),
        f"your {layout.upper()} folder",
        "the demo phantoms",
    )
