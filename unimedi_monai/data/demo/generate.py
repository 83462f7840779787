# SPDX-License-Identifier: Apache-2.0
"""Writing the demo dataset: rendering each planned case, ``datalist.json``, the manifest that lets a folder be
reused."""

from __future__ import annotations

import gzip
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image
from tqdm import tqdm

from unimedi_monai.data.demo.cache import build_folder
from unimedi_monai.data.demo.ct import ct_affine, synth_ct
from unimedi_monai.data.demo.plan import _plan_modality, _validation_patients
from unimedi_monai.data.demo.report_templates import make_report
from unimedi_monai.data.demo.spec import CT_SHAPE, CT_SPACING_MM, XRAY_PIXEL_MM, XRAY_SHAPE, _Case
from unimedi_monai.data.demo.xray import XRAY_VARIATIONS, synth_xray

__all__ = ["FORMAT_VERSION", "generate_demo_dataset"]

#: version of the on-disk layout and of its manifest (2: the manifest records ``xray_variation``). A demo folder
#: this generator wrote with an older version is regenerated.
FORMAT_VERSION = 2

_MANIFEST = "demo_manifest.json"
_DATALIST = "datalist.json"
#: the generator named in every manifest (the package's import path; kept so that existing demo folders stay valid)
_GENERATOR = "unimedi_monai.data.demo"


def _write_nifti(path: Path, volume: np.ndarray) -> None:
    """Write a deterministic, fast gzip (level 1, mtime 0) NIfTI-1 file."""
    image = nib.Nifti1Image(volume, ct_affine())
    image.header.set_xyzt_units("mm")
    image.set_qform(ct_affine(), code=1)
    image.set_sform(ct_affine(), code=1)
    image.header["descrip"] = b"unimedi-monai synthetic demo CT"
    path.write_bytes(gzip.compress(image.to_bytes(), compresslevel=1, mtime=0))


def _render_case(root: Path, case: _Case, xray_variation: str) -> dict:
    """Render, save and describe one case; returns its datalist item."""
    image_rng = np.random.default_rng([case.seed, 0])
    report_rng = np.random.default_rng([case.seed, 1])
    item: dict = {}
    if case.modality == "xray":
        image, _ = synth_xray(case.finding, case.side, case.zone, case.size_mm, image_rng, xray_variation)
        rel_image = f"xray/{case.case_id}.png"
        Image.fromarray(image).save(root / rel_image, format="PNG", compress_level=1)
    else:
        volume, mask = synth_ct(case.finding, case.side, case.zone, case.size_mm, image_rng)
        rel_image = f"ct/{case.case_id}.nii.gz"
        _write_nifti(root / rel_image, volume)
    rel_report = f"reports/{case.case_id}.txt"
    report = make_report(case.modality, case.finding, case.side, case.zone, case.size_mm, report_rng)
    (root / rel_report).write_text(report + "\n", encoding="utf-8")
    item.update(
        image=rel_image,
        report=rel_report,
        modality=case.modality,
        finding=case.finding,
        side=case.side,
        zone=case.zone,
        size_mm=float(case.size_mm),
        patient_id=case.patient_id,
    )
    if case.modality == "ct":
        item["num_slices"] = int(CT_SHAPE[2])
        item["lesion_slices"] = [int(k) for k in np.nonzero(mask.any(axis=(0, 1)))[0]]
        item["lesion_centre_voxel"] = [int(round(float(c.mean()))) for c in np.nonzero(mask)] if mask.any() else None
    return item


def _arguments(n_xray: int, n_ct: int, seed: int, val_fraction: float, xray_variation: str) -> dict:
    return {
        "n_xray": n_xray,
        "n_ct": n_ct,
        "seed": seed,
        "val_fraction": val_fraction,
        "xray_variation": xray_variation,
    }


def _existing_state(out_dir: Path, arguments: dict) -> str:
    """'absent', 'empty', 'match', 'outdated' (this generator's demo of an older :data:`FORMAT_VERSION`), or a
    reason why ``out_dir`` is not the requested demo."""
    if not out_dir.exists():
        return "absent"
    if not out_dir.is_dir():
        raise NotADirectoryError(f"demo output path {out_dir} exists and is not a folder; choose a folder path.")
    if not any(out_dir.iterdir()):
        return "empty"
    manifest_path = out_dir / _MANIFEST
    if not manifest_path.is_file():
        return f"it is not empty and holds no {_MANIFEST} (not a unimedi demo dataset)"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"its {manifest_path.name} cannot be read ({exc})"
    if not isinstance(manifest, dict) or manifest.get("generator") != _GENERATOR:
        return f"its {manifest_path.name} was not written by {_GENERATOR}"
    version = manifest.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version < FORMAT_VERSION:
        return "outdated"
    if version != FORMAT_VERSION:
        return f"it holds demo format version {version!r}, not {FORMAT_VERSION}"
    if manifest.get("arguments") != arguments:
        return f"it was generated with {manifest.get('arguments')}, not the requested {arguments}"
    try:
        datalist = json.loads((out_dir / _DATALIST).read_text(encoding="utf-8"))
        items = datalist["training"] + datalist["validation"]
        missing = [i["image"] for i in items if not (out_dir / i["image"]).is_file()]
        missing += [i["report"] for i in items if not (out_dir / i["report"]).is_file()]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"its {_DATALIST} is missing or unreadable ({exc})"
    if missing:
        return f"{len(missing)} of its listed files are missing (first: {missing[0]})"
    return "match"


def _check_force_target(out_dir: Path) -> None:
    """Refuse to wipe obviously wrong folders even with ``force``."""
    resolved = out_dir.resolve()
    cwd = Path.cwd().resolve()
    if resolved == Path(resolved.anchor) or resolved == Path.home().resolve() or resolved in (cwd, *cwd.parents):
        raise ValueError(
            f"refusing to replace {resolved} with force=True (it is a filesystem root, the home folder or the "
            "current working folder); choose a dedicated demo folder."
        )


def generate_demo_dataset(
    out_dir: str | os.PathLike,
    n_xray: int = 240,
    n_ct: int = 120,
    seed: int = 0,
    val_fraction: float = 0.2,
    force: bool = False,
    progress: bool = True,
    xray_variation: str = "template",
) -> Path:
    """
    Generate the synthetic demo dataset (X-ray PNGs, CT NIfTIs, reports, ``datalist.json``).

    Layout under ``out_dir``: ``xray/xr_0000.png``..., ``ct/ct_0000.nii.gz``...,
    ``reports/<id>.txt``, ``datalist.json`` (MONAI decathlon style: ``name``, ``description``,
    ``training``, ``validation``; paths relative to ``out_dir``) and ``demo_manifest.json`` (the
    arguments and :data:`FORMAT_VERSION`, written last). Each item holds ``image``, ``report``,
    ``modality``, ``finding``, ``side``, ``zone``, ``size_mm``, ``patient_id``; CT items also
    ``num_slices``, ``lesion_slices`` (sorted original indices along the last axis) and
    ``lesion_centre_voxel`` (``[i, j, k]`` or ``None``). About 20% of cases are normal; some patients
    have a follow-up study; the split is by patient, stratified by modality and finding.

    The output is a deterministic function of the arguments (byte-identical files). It is written
    into a temporary sibling folder that is renamed into place at the end
    (:func:`~unimedi_monai.data.demo.cache.build_folder`), so an interrupted run never leaves a half
    dataset behind. If ``out_dir`` already holds a complete demo generated with the
    same arguments, it is returned at once.

    Args:
        out_dir: folder to create (absent or empty), or that already holds this demo.
        n_xray: number of chest radiographs (>= 0).
        n_ct: number of chest CTs (>= 0); ``n_xray + n_ct`` must be >= 1.
        seed: non-negative seed of ``numpy.random.default_rng``.
        val_fraction: fraction of patients per modality held out for validation, in ``[0, 1)``.
        force: replace whatever ``out_dir`` holds (its contents are deleted) and regenerate.
        progress: show a progress bar on stderr.
        xray_variation: how much the X-ray chests differ between patients, a key of
            :data:`~unimedi_monai.data.demo.xray.XRAY_VARIATIONS`: ``"template"`` (one chest, slightly
            jittered: the lesion is nearly all that differs) or ``"patient"`` (framing, habitus, exposure,
            markers and devices vary as in real radiographs).

    Returns:
        absolute path of ``out_dir/datalist.json``.

    Raises:
        ValueError: for invalid arguments.
        FileExistsError: ``out_dir`` holds something else than this demo and ``force`` is False.
        NotADirectoryError: ``out_dir`` is an existing file.
    """
    for name, value in (("n_xray", n_xray), ("n_ct", n_ct), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")
    if n_xray + n_ct < 1:
        raise ValueError("n_xray + n_ct must be at least 1 to generate a demo dataset.")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}.")
    if xray_variation not in XRAY_VARIATIONS:
        raise ValueError(f"xray_variation must be one of {sorted(XRAY_VARIATIONS)}, got {xray_variation!r}.")
    arguments = _arguments(int(n_xray), int(n_ct), int(seed), float(val_fraction), xray_variation)
    out_dir = Path(out_dir).absolute()
    datalist_path = out_dir / _DATALIST

    state = _existing_state(out_dir, arguments)
    if state == "match" and not force:
        return datalist_path
    if state == "outdated":  # our own older output: nothing of the user's is lost by drawing it again
        print(
            f"unimedi demo: {out_dir} holds an older demo format; generating version {FORMAT_VERSION}", file=sys.stderr
        )
    elif state not in ("absent", "empty", "match") and not force:
        raise FileExistsError(
            f"demo output folder {out_dir} cannot be used: {state}. Pass force=True (CLI: --force) to replace its "
            "contents, or choose a new or empty folder."
        )
    if force and state not in ("absent", "empty"):
        _check_force_target(out_dir)

    started = time.perf_counter()
    counts: dict[str, int] = {}

    def write(tmp: Path) -> None:
        master = np.random.default_rng(arguments["seed"])
        cases = _plan_modality("xray", arguments["n_xray"], master) + _plan_modality("ct", arguments["n_ct"], master)
        val_patients = _validation_patients(cases, arguments["val_fraction"], master)
        for sub in ("xray", "ct", "reports"):
            (tmp / sub).mkdir()
        items = []
        bar = tqdm(total=len(cases), desc="unimedi demo", unit="case", file=sys.stderr, disable=not progress)
        # cases are independent (own seeds, own files); threads overlap numpy work with zlib compression,
        # both of which release the GIL. Results are consumed in order, so the output does not depend on timing.
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            for item in pool.map(lambda case: _render_case(tmp, case, arguments["xray_variation"]), cases):
                items.append(item)
                bar.update(1)
        bar.close()
        training = [i for i, c in zip(items, cases) if c.patient_id not in val_patients]
        validation = [i for i, c in zip(items, cases) if c.patient_id in val_patients]
        datalist = {
            "name": "unimedi-demo",
            "description": (
                f"Synthetic chest X-rays and CTs with paired reports generated by {_GENERATOR} "
                f"(seed {arguments['seed']}); not patient data. Each report states the drawn finding, side, zone "
                "and size."
            ),
            "reference": "unimedi-monai built-in demo generator",
            "licence": "CC0-1.0 (synthetic)",
            "conventions": {
                "xray": f"PNG {XRAY_SHAPE[0]}x{XRAY_SHAPE[1]}, {XRAY_PIXEL_MM} mm/pixel, row 0 superior; radiological "
                "display: the patient's left is on the image right.",
                "ct": f"NIfTI int16 HU {CT_SHAPE}, spacing {CT_SPACING_MM} mm, RAS+ affine: first axis to the "
                "patient's right, second anterior, third superior (higher slice index = more superior).",
                "zone": "upper / middle / lower third of the lung field (X-ray rows, CT slices).",
                "size_mm": "nodule / mass: diameter; consolidation: extent; effusion: maximal fluid depth; "
                "0 if normal.",
            },
            "numTraining": len(training),
            "numValidation": len(validation),
            "training": training,
            "validation": validation,
        }
        (tmp / _DATALIST).write_text(json.dumps(datalist, indent=2) + "\n", encoding="utf-8")
        manifest = {
            "generator": _GENERATOR,
            "format_version": FORMAT_VERSION,
            "arguments": arguments,
            "num_items": len(items),
        }
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        counts.update(items=len(items), training=len(training), validation=len(validation))

    build_folder(
        out_dir,
        write,
        lambda folder: _existing_state(folder, arguments) == "match",
        replace=force or state == "outdated",
        force=force,
    )
    if progress:
        print(
            f"unimedi demo: {counts['items']} cases ({counts['training']} training, {counts['validation']} validation) "
            f"written to {out_dir} in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
    return datalist_path
