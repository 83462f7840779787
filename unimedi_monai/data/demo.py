# SPDX-License-Identifier: Apache-2.0
"""
Built-in synthetic demo dataset: chest radiographs (PNG), chest CTs (NIfTI) and paired reports.

The pre-training bundle uses this set when no user data is given. The images are synthetic but
*learnable*: the anatomy is the same template for every case (small global jitter only, and exactly
left-right mirror-symmetric), so the lesion is the one thing that varies between images and the
only lateralised content, and every report states what is drawn: the finding, its side, its zone
and its size in mm.

Conventions (also written into ``datalist.json`` under ``"conventions"``):

- X-ray: 256 x 256 8-bit PNG at 1.4 mm per pixel, displayed in the radiological convention
  (PA view seen from the front): row 0 is superior, and the patient's LEFT is on the IMAGE RIGHT
  (large column index); the patient's right lung is on the image left. Zones are the upper,
  middle and lower thirds of the lung field's vertical extent.
- CT: int16 HU volume of shape 128 x 128 x 48 with a diagonal, positive affine
  (2.5 x 2.5 x 5.0 mm), i.e. RAS+ world axes (nibabel's convention): the first voxel axis points
  to the patient's RIGHT, the second to Anterior, the third to Superior. So the patient's right lung
  is at large first-axis index, the posterior (dorsal) side at small second-axis index, and a
  higher slice index (last axis) is more superior. ``Orientationd(axcodes="RAS")`` keeps the
  array unchanged. Zones are the thirds of the lung z-range (upper = highest slice indices).

Example::

    python -m unimedi_monai.data.demo ./demo_data --n-xray 240 --n-ct 120 --seed 0

"""

from __future__ import annotations

import argparse
import errno
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from PIL import Image

__all__ = [
    "FORMAT_VERSION",
    "FINDINGS",
    "SIDES",
    "ZONES",
    "SIZE_RANGES_MM",
    "XRAY_SHAPE",
    "XRAY_PIXEL_MM",
    "CT_SHAPE",
    "CT_SPACING_MM",
    "ct_affine",
    "synth_xray",
    "synth_ct",
    "make_report",
    "lesion_slices_resampled",
    "generate_demo_dataset",
    "main",
]

#: version of the on-disk layout; a folder written with another version is not reused.
FORMAT_VERSION = 1
#: finding labels, in the order used for balanced assignment (about 20% each, normals included).
FINDINGS = ("nodule", "mass", "consolidation", "effusion", "normal")
SIDES = ("left", "right")
ZONES = ("upper", "middle", "lower")
#: lesion size ranges (inclusive, mm) per modality and finding. Nodule / mass: diameter;
#: consolidation: overall extent; effusion: maximal fluid depth (X-ray: height of the fluid column
#: at the lung's centre line; CT: antero-posterior depth at the lowest lung slice).
SIZE_RANGES_MM: dict[str, dict[str, tuple[int, int]]] = {
    "xray": {"nodule": (6, 20), "mass": (30, 60), "consolidation": (35, 70), "effusion": (20, 55)},
    "ct": {"nodule": (6, 20), "mass": (30, 50), "consolidation": (30, 60), "effusion": (15, 45)},
}
XRAY_SHAPE = (256, 256)
XRAY_PIXEL_MM = 1.4
CT_SHAPE = (128, 128, 48)
CT_SPACING_MM = (2.5, 2.5, 5.0)

_MANIFEST = "demo_manifest.json"
_DATALIST = "datalist.json"
_GENERATOR = "unimedi_monai.data.demo"
_MODALITY_CODE = {"xray": 1, "ct": 2}
_FOLLOW_UP_PROB = 0.25  # fraction of patients with a second (follow-up) study of the same finding
_MAX_PLACEMENT_TRIES = 200

# ---------------------------------------------------------------- X-ray template geometry (pixels)
_XR_MID = (XRAY_SHAPE[1] - 1) / 2.0  # mirror axis between the lungs (column 127.5)
_XR_LUNG_ROW = 118.0  # lung field centre row
_XR_LUNG_OFFSET = 56.0  # lung centre distance from the midline (columns)
_XR_LUNG_RY, _XR_LUNG_RX = 78.0, 36.0  # lung half-height / half-width
_XR_BODY = (140.0, 130.0, 118.0)  # body ellipse centre row, half-height, half-width
_XR_HEART = (170.0, 36.0, 30.0)  # heart centre row, half-height, half-width (centred on the midline)
_XR_MEDIASTINUM_HALF_WIDTH = 18.0

# ------------------------------------------------------------------- CT template geometry (voxels)
_CT_MID = (CT_SHAPE[0] - 1) / 2.0  # mirror axis of the first (x) axis
_CT_BODY = (63.5, 56.0, 40.0)  # body centre (y), half-axes (x, y)
_CT_LUNG_OFFSET = 27.0  # lung centre distance from the midline along x
_CT_LUNG_Y = 66.0  # lung centre along y (anterior of the spine)
_CT_LUNG_AX, _CT_LUNG_AY = 19.0, 26.0  # lung half-axes at the base
_CT_LUNG_Z = (3, 44)  # first and last lung slice (inclusive), before jitter
_CT_SPINE = (31.0, 7.0)  # vertebral body centre (y) and radius, on the midline

_HU_AIR, _HU_LUNG, _HU_SOFT, _HU_FAT, _HU_BONE = -1000.0, -850.0, 40.0, -90.0, 700.0
_HU_NOISE = 15.0


@dataclass(frozen=True)
class _Case:
    """One planned study (before rendering)."""

    case_id: str
    modality: str
    finding: str
    side: str
    zone: str
    size_mm: float
    patient_id: str
    seed: int


# --------------------------------------------------------------------------------------- helpers
def _check_case(modality: str, finding: str, side: str, zone: str, size_mm: float) -> None:
    """Validate one case description; raise ValueError naming the bad key."""
    if finding not in FINDINGS:
        raise ValueError(f"finding must be one of {FINDINGS}, got {finding!r}.")
    if finding == "normal":
        if side != "none" or zone != "none":
            raise ValueError(f"a normal case needs side='none' and zone='none', got side={side!r}, zone={zone!r}.")
        return
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES} for finding {finding!r}, got {side!r}.")
    if zone not in ZONES:
        raise ValueError(f"zone must be one of {ZONES} for finding {finding!r}, got {zone!r}.")
    if finding == "effusion" and zone != "lower":
        raise ValueError(f"an effusion lies at the lung base: zone must be 'lower', got {zone!r}.")
    lo, hi = SIZE_RANGES_MM[modality][finding]
    if not lo <= float(size_mm) <= hi:
        raise ValueError(f"size_mm for a {modality} {finding} must be in [{lo}, {hi}] mm, got {size_mm!r}.")


def _soft(rho: np.ndarray, scale_px: float, edge_px: float) -> np.ndarray:
    """Soft inside-indicator of a shape given its normalised radius ``rho`` (1 on the boundary)."""
    return np.clip((1.0 - rho) * (scale_px / edge_px) + 0.5, 0.0, 1.0)


@lru_cache(maxsize=4)
def _bilinear_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) matrix that linearly interpolates ``n_in`` samples onto ``n_out`` points."""
    pos = np.linspace(0.0, n_in - 1.0, n_out)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 2)
    frac = pos - lo
    mat = np.zeros((n_out, n_in), dtype=np.float32)
    mat[np.arange(n_out), lo] = 1.0 - frac
    mat[np.arange(n_out), lo + 1] += frac
    return mat


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], coarse: int) -> np.ndarray:
    """Unit-variance-ish low-frequency noise: a ``coarse`` x ``coarse`` grid upsampled bilinearly."""
    grid = rng.standard_normal((coarse, coarse)).astype(np.float32)
    return _bilinear_matrix(shape[0], coarse) @ grid @ _bilinear_matrix(shape[1], coarse).T


@lru_cache(maxsize=1)
def _xray_grid() -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0 : XRAY_SHAPE[0], 0 : XRAY_SHAPE[1]].astype(np.float32)
    return rows, cols


@lru_cache(maxsize=1)
def _ct_grid() -> tuple[np.ndarray, np.ndarray]:
    ii, jj = np.mgrid[0 : CT_SHAPE[0], 0 : CT_SHAPE[1]].astype(np.float32)
    return ii, jj


def _third(value: float, start: float, stop: float) -> int:
    """Index (0, 1, 2) of the third of ``[start, stop]`` holding ``value`` (clamped)."""
    return int(min(max(np.floor(3.0 * (value - start) / (stop - start)), 0), 2))


# ------------------------------------------------------------------------------------------ X-ray
@dataclass(frozen=True)
class _XrayAnatomy:
    image: np.ndarray  # float32 grey levels without lesion and noise
    lung_visible: np.ndarray  # soft mask of lung not covered by heart / mediastinum
    lung_row: float
    lung_ry: float
    lung_rx: float
    lung_offset: float


def _xray_lung_half_width(anat: _XrayAnatomy, row: float) -> float:
    dy = (row - anat.lung_row) / anat.lung_ry
    power = 3.0 if dy > 0 else 2.0
    return float(anat.lung_rx * max(1.0 - abs(dy) ** power, 0.0) ** (1.0 / power))


def _xray_anatomy(rng: np.random.Generator) -> _XrayAnatomy:
    """Mirror-symmetric chest template with small per-patient jitter."""
    rows, cols = _xray_grid()
    scale = rng.uniform(0.95, 1.05)
    lung_row = _XR_LUNG_ROW + rng.uniform(-3.0, 3.0)
    lung_ry, lung_rx = _XR_LUNG_RY * scale, _XR_LUNG_RX * scale
    lung_offset = _XR_LUNG_OFFSET * rng.uniform(0.97, 1.03)
    body_val, lung_val = rng.uniform(135.0, 150.0), rng.uniform(50.0, 60.0)
    med_val, heart_val = rng.uniform(165.0, 180.0), rng.uniform(175.0, 190.0)
    lateral = np.abs(cols - _XR_MID)

    body_row, body_ry, body_rx = _XR_BODY
    body = _soft(np.sqrt(((rows - body_row) / body_ry) ** 2 + ((cols - _XR_MID) / body_rx) ** 2), body_rx, 3.0)
    image = 10.0 + (body_val - 10.0) * body
    # lungs: super-ellipses, rounder apex (power 2) and fuller base (power 3); mirrored about the midline
    dy = (rows - lung_row) / lung_ry
    dx = np.abs(lateral - lung_offset) / lung_rx
    power = np.where(dy > 0, 3.0, 2.0).astype(np.float32)
    lung = _soft((dx**power + np.abs(dy) ** power) ** (1.0 / power), lung_rx, 2.0)
    image = image * (1.0 - lung) + lung_val * lung
    # faint posterior rib arcs, descending laterally
    lung_top = lung_row - lung_ry
    u = (lateral - lung_offset) / lung_rx  # -1 medial edge, +1 lateral edge
    ribs = np.zeros_like(image)
    for k in range(7):
        centre = lung_top - 4.0 + 22.0 * scale * k + 10.0 * (u + 1.0) ** 2
        ribs += np.exp(-(((rows - centre) / 2.2) ** 2))
    image += rng.uniform(11.0, 15.0) * np.clip(ribs, 0.0, 1.0) * body
    mediastinum = _soft(np.abs(cols - _XR_MID) / _XR_MEDIASTINUM_HALF_WIDTH, _XR_MEDIASTINUM_HALF_WIDTH, 3.0)
    mediastinum = mediastinum * (rows < lung_row + lung_ry)
    image = image * (1.0 - mediastinum) + med_val * mediastinum
    heart_row, heart_ry, heart_rx = _XR_HEART
    heart = _soft(
        np.sqrt(((rows - heart_row * (lung_row / _XR_LUNG_ROW)) / heart_ry) ** 2 + ((cols - _XR_MID) / heart_rx) ** 2),
        heart_rx,
        2.5,
    )
    image = image * (1.0 - heart) + heart_val * heart
    lung_visible = lung * (1.0 - mediastinum) * (1.0 - heart)
    return _XrayAnatomy(image, lung_visible, lung_row, lung_ry, lung_rx, lung_offset)


def _xray_blob(rng: np.random.Generator, finding: str, row: float, col: float, size_px: float) -> np.ndarray:
    """Soft lesion shape (values in [0, 1]) centred at (row, col); ``size_px`` = diameter / extent."""
    rows, cols = _xray_grid()
    radius = size_px / 2.0
    if finding == "nodule":
        rho = np.sqrt((rows - row) ** 2 + (cols - col) ** 2) / radius
        return _soft(rho, radius, 1.2) * (0.85 + 0.15 * np.sqrt(np.clip(1.0 - rho**2, 0.0, 1.0)))
    if finding == "mass":
        theta = np.arctan2(rows - row, cols - col)
        phase3, phase5 = rng.uniform(0, 2 * np.pi, size=2)
        lobes = 1.0 + 0.08 * np.sin(3.0 * theta + phase3) + 0.05 * np.sin(5.0 * theta + phase5)
        rho = np.sqrt((rows - row) ** 2 + (cols - col) ** 2) / (radius * lobes)
        return _soft(rho, radius, 1.5)
    # consolidation: union of overlapping hazy patches, modulated by a patchy texture
    shape = np.zeros(XRAY_SHAPE, dtype=np.float32)
    for k in range(int(rng.integers(4, 7))):
        if k == 0:
            r_k, dr, dc = 0.35 * size_px, 0.0, 0.0
        else:
            r_k = rng.uniform(0.2, 0.35) * size_px
            dr, dc = rng.uniform(-0.2, 0.2, size=2) * size_px
        rho = np.sqrt((rows - row - dr) ** 2 + (cols - col - dc) ** 2) / r_k
        shape = np.maximum(shape, _soft(rho, r_k, 4.0))
    texture = 0.8 + 0.2 * np.clip(_smooth_noise(rng, XRAY_SHAPE, 24), -1.0, 1.0)
    return shape * texture


def _xray_effusion(anat: _XrayAnatomy, side_sign: float, depth_px: float) -> np.ndarray:
    """Soft fluid region at the lung base with a meniscus rising towards the lateral chest wall."""
    rows, cols = _xray_grid()
    lung_col = _XR_MID + side_sign * anat.lung_offset
    level = anat.lung_row + anat.lung_ry - depth_px  # fluid level at the lung's centre line
    lateral = np.clip((cols - lung_col) * side_sign / anat.lung_rx, 0.0, 1.0)
    surface = level - 0.35 * depth_px * lateral**2
    fluid = np.clip((rows - surface) / 2.0 + 0.5, 0.0, 1.0)
    side_half = (cols - _XR_MID) * side_sign > 0
    return fluid * side_half * anat.lung_visible


def synth_xray(
    finding: str, side: str, zone: str, size_mm: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """
    Render one synthetic PA chest radiograph.

    Args:
        finding: one of :data:`FINDINGS`.
        side: the patient's ``"left"`` (drawn on the IMAGE RIGHT) or ``"right"``; ``"none"`` if normal.
        zone: ``"upper"``, ``"middle"`` or ``"lower"`` third of the lung field (``"lower"`` for an
            effusion); ``"none"`` if normal.
        size_mm: lesion size (see :data:`SIZE_RANGES_MM`); ignored for a normal case.
        rng: random generator; the result is a deterministic function of its state.

    Returns:
        ``(image, lesion_mask)``: uint8 array of shape :data:`XRAY_SHAPE` (row 0 superior) and the
        boolean mask of the pixels where the lesion contributes at least half its intensity.

    Raises:
        ValueError: for an unknown finding / side / zone or a size outside :data:`SIZE_RANGES_MM`.
    """
    _check_case("xray", finding, side, zone, size_mm)
    anat = _xray_anatomy(rng)
    image = anat.image.copy()
    mask = np.zeros(XRAY_SHAPE, dtype=bool)
    if finding != "normal":
        side_sign = -1.0 if side == "right" else 1.0  # patient's right lung is on the image left
        size_px = float(size_mm) / XRAY_PIXEL_MM
        top, height = anat.lung_row - anat.lung_ry, 2.0 * anat.lung_ry
        amplitude = {
            "nodule": (85.0, 100.0), "mass": (105.0, 120.0), "consolidation": (70.0, 80.0), "effusion": (90.0, 100.0)
        }
        lesion = None
        for _ in range(_MAX_PLACEMENT_TRIES):
            if finding == "effusion":
                lesion = _xray_effusion(anat, side_sign, size_px)
                reference = None
            else:
                row = top + (ZONES.index(zone) + rng.uniform(0.25, 0.75)) * height / 3.0
                half_width = _xray_lung_half_width(anat, row)
                if finding == "nodule":
                    limit = 0.6 * max(half_width - size_px / 2.0 - 2.0, 0.0)
                else:
                    limit = (0.3 if finding == "mass" else 0.4) * half_width
                col = _XR_MID + side_sign * anat.lung_offset + rng.uniform(-limit, limit)
                reference = _xray_blob(rng, finding, row, col, size_px)
                lesion = reference * anat.lung_visible
            candidate = lesion > 0.5
            if not candidate.any():
                continue
            if reference is not None:
                needed = 0.9 if finding == "nodule" else 0.5
                if candidate.sum() < needed * (reference > 0.5).sum():
                    continue
            r_idx, c_idx = np.nonzero(candidate)
            wrong_zone = _third(r_idx.mean(), top, top + height) != ZONES.index(zone)
            if (c_idx.mean() - _XR_MID) * side_sign <= 0 or wrong_zone:
                continue
            mask = candidate
            break
        else:
            raise RuntimeError(
                f"could not place a {size_mm} mm {finding} in the {side} {zone} zone; use a smaller size_mm."
            )
        image += rng.uniform(*amplitude[finding]) * lesion
    image = image * rng.uniform(0.95, 1.05) + rng.uniform(-5.0, 5.0)
    image += 3.0 * _smooth_noise(rng, XRAY_SHAPE, 6)
    image += rng.normal(0.0, 2.5, size=XRAY_SHAPE).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask


# --------------------------------------------------------------------------------------------- CT
def ct_affine() -> np.ndarray:
    """
    RAS+ affine of the demo CTs: diagonal :data:`CT_SPACING_MM`, volume centre at world (0, 0, 0).

    Returns:
        4 x 4 float64 array (first voxel axis to the patient's Right, second Anterior, third Superior).
    """
    affine = np.diag([*CT_SPACING_MM, 1.0])
    affine[:3, 3] = [-(n - 1) / 2.0 * s for n, s in zip(CT_SHAPE, CT_SPACING_MM)]
    return affine


@dataclass(frozen=True)
class _CtAnatomy:
    volume: np.ndarray  # float32 HU without lesion and noise
    lung: np.ndarray  # bool lung cavities
    lung_z: tuple[int, int]  # first and last lung slice (inclusive)
    lung_offset: float
    lung_y: float
    lung_ax: float
    lung_ay: float


def _ct_taper(anat_z: tuple[int, int], z: np.ndarray | float) -> np.ndarray:
    """Relative lung cross-section scale along z: 1 at the base, narrowing towards the apex."""
    z0, z1 = anat_z
    t = np.clip((np.asarray(z, dtype=np.float32) - z0 + 0.5) / (z1 - z0 + 1.0), 0.0, 1.0)
    return (1.0 - t**2) ** 0.35


def _ct_anatomy(rng: np.random.Generator) -> _CtAnatomy:
    """Mirror-symmetric (along x) chest CT template with small per-patient jitter."""
    ii, jj = _ct_grid()
    scale = rng.uniform(0.95, 1.05)
    offset = _CT_LUNG_OFFSET * rng.uniform(0.97, 1.03)
    lung_y = _CT_LUNG_Y + rng.uniform(-1.5, 1.5)
    ax, ay = _CT_LUNG_AX * scale, _CT_LUNG_AY * scale
    lung_z = (_CT_LUNG_Z[0] + int(rng.integers(0, 2)), _CT_LUNG_Z[1] - int(rng.integers(0, 2)))
    body_scale = rng.uniform(0.97, 1.03)

    body_y, body_ax, body_ay = _CT_BODY
    body_rho = np.sqrt(((ii - _CT_MID) / (body_ax * body_scale)) ** 2 + ((jj - body_y) / (body_ay * body_scale)) ** 2)
    slab = np.full(CT_SHAPE[:2], _HU_AIR, dtype=np.float32)
    slab[body_rho <= 1.0] = _HU_FAT
    slab[body_rho <= 0.9] = _HU_SOFT
    spine_y, spine_r = _CT_SPINE
    slab[(ii - _CT_MID) ** 2 + (jj - spine_y) ** 2 <= spine_r**2] = _HU_BONE
    volume = np.repeat(slab[:, :, None], CT_SHAPE[2], axis=2)

    taper = np.zeros(CT_SHAPE[2], dtype=np.float32)
    taper[lung_z[0] : lung_z[1] + 1] = _ct_taper(lung_z, np.arange(lung_z[0], lung_z[1] + 1))
    taper = np.maximum(taper, 1e-6)[None, None, :]
    dx = (np.abs(ii - _CT_MID) - offset)[:, :, None] / (ax * taper)
    dy = (jj - lung_y)[:, :, None] / (ay * taper)
    lung = dx**2 + dy**2 <= 1.0
    lung[:, :, : lung_z[0]] = False
    lung[:, :, lung_z[1] + 1 :] = False
    volume[lung] = _HU_LUNG
    return _CtAnatomy(volume, lung, lung_z, offset, lung_y, ax, ay)


def _ct_blob_pv(
    rng: np.random.Generator, finding: str, centre: np.ndarray, size_mm: float
) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """
    Partial-volume fraction (3 x 3 x 3 supersampling) of a nodule / mass / consolidation.

    Returns:
        the bounding-box slices and the fraction array inside that box.
    """
    spacing = np.asarray(CT_SPACING_MM)
    half_extent_mm = {"nodule": 0.5, "mass": 0.6, "consolidation": 0.75}[finding] * size_mm + max(CT_SPACING_MM)
    lo = np.maximum(np.floor(centre - half_extent_mm / spacing).astype(int), 0)
    hi = np.minimum(np.ceil(centre + half_extent_mm / spacing).astype(int) + 1, CT_SHAPE)
    sub = np.array([-1.0 / 3.0, 0.0, 1.0 / 3.0])
    axes = [((np.arange(lo[a], hi[a])[:, None] + sub[None, :]).ravel() - centre[a]) * spacing[a] for a in range(3)]
    dx, dy, dz = np.meshgrid(*axes, indexing="ij")
    radius = size_mm / 2.0
    if finding == "nodule":
        inside = dx**2 + dy**2 + dz**2 <= radius**2
    elif finding == "mass":
        azimuth = np.arctan2(dy, dx)
        elevation = np.arctan2(dz, np.hypot(dx, dy))
        phase_a, phase_e = rng.uniform(0, 2 * np.pi, size=2)
        lobes = 1.0 + 0.08 * np.sin(3.0 * azimuth + phase_a) + 0.06 * np.cos(2.0 * elevation + phase_e)
        inside = dx**2 + dy**2 + dz**2 <= (radius * lobes) ** 2
    else:  # consolidation: union of overlapping spheres
        inside = dx**2 + dy**2 + dz**2 <= (0.35 * size_mm) ** 2
        for _ in range(int(rng.integers(3, 6))):
            ox, oy, oz = rng.uniform(-0.2, 0.2, size=3) * size_mm
            r_k = rng.uniform(0.2, 0.35) * size_mm
            inside |= (dx - ox) ** 2 + (dy - oy) ** 2 + (dz - oz) ** 2 <= r_k**2
    shape = tuple(int(h - l) for l, h in zip(lo, hi))
    pv = inside.reshape(shape[0], 3, shape[1], 3, shape[2], 3).mean(axis=(1, 3, 5))
    box = tuple(slice(int(l), int(h)) for l, h in zip(lo, hi))
    return box, pv.astype(np.float32)


def _ct_effusion(anat: _CtAnatomy, side_sign: float, size_mm: float) -> np.ndarray:
    """Dependent (dorsal) pleural fluid in the lowest lung slices; fraction array over the volume."""
    ii, jj = _ct_grid()
    z0, z1 = anat.lung_z
    n_slices = int(min(max(round(size_mm / CT_SPACING_MM[2]), 3), z1 - z0))
    fluid = np.zeros(CT_SHAPE, dtype=np.float32)
    side_half = (ii - _CT_MID) * side_sign > 0
    for k in range(z0, z0 + n_slices):
        taper = float(_ct_taper(anat.lung_z, k))
        posterior_edge = anat.lung_y - anat.lung_ay * taper
        depth_vox = size_mm / CT_SPACING_MM[1] * (1.0 - (k - z0) / n_slices)
        lateral = np.clip((np.abs(ii - _CT_MID) - anat.lung_offset) / (anat.lung_ax * taper), 0.0, 1.0)
        level = posterior_edge + depth_vox + 0.3 * depth_vox * lateral**2
        fluid[:, :, k] = (jj < level) & side_half & anat.lung[:, :, k]
    return fluid


def synth_ct(
    finding: str, side: str, zone: str, size_mm: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """
    Render one synthetic chest CT in HU (use :func:`ct_affine` as its affine).

    Args:
        finding: one of :data:`FINDINGS`.
        side: the patient's ``"left"`` (small first-axis index, RAS+) or ``"right"``; ``"none"`` if normal.
        zone: ``"upper"`` (highest slices), ``"middle"`` or ``"lower"`` third of the lung z-range
            (``"lower"`` for an effusion); ``"none"`` if normal.
        size_mm: lesion size (see :data:`SIZE_RANGES_MM`); ignored for a normal case.
        rng: random generator; the result is a deterministic function of its state.

    Returns:
        ``(volume, lesion_mask)``: int16 array of shape :data:`CT_SHAPE` (x, y, z) and the boolean
        mask of the voxels holding lesion (any partial volume, inside the lung cavity).

    Raises:
        ValueError: for an unknown finding / side / zone or a size outside :data:`SIZE_RANGES_MM`.
    """
    _check_case("ct", finding, side, zone, size_mm)
    anat = _ct_anatomy(rng)
    volume = anat.volume
    mask = np.zeros(CT_SHAPE, dtype=bool)
    if finding != "normal":
        side_sign = 1.0 if side == "right" else -1.0  # RAS+: the first axis points to the patient's right
        z0, z1 = anat.lung_z
        hu = {"nodule": (35.0, 55.0), "mass": (40.0, 60.0), "consolidation": (-120.0, -40.0), "effusion": (5.0, 15.0)}
        lesion_hu = rng.uniform(*hu[finding])
        for _ in range(_MAX_PLACEMENT_TRIES):
            if finding == "effusion":
                box = (slice(None), slice(None), slice(None))
                pv = _ct_effusion(anat, side_sign, float(size_mm))
                reference = None
            else:
                kc = z0 + (ZONES[::-1].index(zone) + rng.uniform(0.25, 0.75)) * (z1 - z0 + 1) / 3.0 - 0.5
                if finding == "nodule":  # between two slices, so that even 6 mm spans 2 slices
                    kc = np.floor(kc) + 0.5 + rng.uniform(-0.1, 0.1)
                taper = float(_ct_taper(anat.lung_z, kc))
                ax, ay = anat.lung_ax * taper, anat.lung_ay * taper
                radius_vox = size_mm / 2.0 / CT_SPACING_MM[0]
                if finding == "nodule":
                    lim_x, lim_y = (0.6 * max(a - radius_vox - 1.0, 0.0) for a in (ax, ay))
                else:
                    frac = 0.3 if finding == "mass" else 0.4
                    lim_x, lim_y = frac * ax, frac * ay
                centre = np.array(
                    [
                        _CT_MID + side_sign * anat.lung_offset + rng.uniform(-lim_x, lim_x),
                        anat.lung_y + rng.uniform(-lim_y, lim_y),
                        kc,
                    ]
                )
                box, reference = _ct_blob_pv(rng, finding, centre, float(size_mm))
                pv = reference * anat.lung[box]
            candidate = pv > 0
            if not candidate.any():
                continue
            if reference is not None and pv.sum() < (0.9 if finding == "nodule" else 0.6) * reference.sum():
                continue
            coords = np.nonzero(candidate)
            offsets = [0 if s.start is None else s.start for s in box]
            cx = float(coords[0].mean()) + offsets[0]
            cz = int(round(float((coords[2] + offsets[2]).mean())))  # as saved in "lesion_centre_voxel"
            if (cx - _CT_MID) * side_sign <= 0 or 2 - _third(cz + 0.5, z0, z1 + 1) != ZONES.index(zone):
                continue
            volume[box] = volume[box] * (1.0 - pv) + lesion_hu * pv
            mask[box] = candidate
            break
        else:
            raise RuntimeError(
                f"could not place a {size_mm} mm {finding} in the {side} {zone} lung; use a smaller size_mm."
            )
    volume += _HU_NOISE * rng.standard_normal(CT_SHAPE, dtype=np.float32)
    return np.clip(np.rint(volume), -1024, 3071).astype(np.int16), mask


# ---------------------------------------------------------------------------------------- reports
_PLACEHOLDER_PREFIX = ("Comparison: ___.", "Compared with the study of ___.", "INDICATION: ___ with cough.")
_PLACEHOLDER_SUFFIX = ("Findings discussed with Dr. ___ by telephone.", "Reported by ___.")

_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "xray": {
        "nodule": (
            "CHEST RADIOGRAPH. FINDINGS: {A} {size} mm nodule is seen in the {loc}. The heart size is normal. "
            "IMPRESSION: {Loc} nodule.",
            "PA chest radiograph. There is {a} {size} mm rounded nodular opacity in the {loc}. The cardiomediastinal "
            "silhouette is normal. IMPRESSION: {size} mm nodule, {loc}.",
            "Chest radiograph: well-circumscribed {size} mm pulmonary nodule projecting over the {loc}. "
            "IMPRESSION: Solitary {loc} nodule; CT is recommended.",
        ),
        "mass": (
            "CHEST RADIOGRAPH. FINDINGS: {A} {size} mm mass is present in the {loc}. The heart size is normal. "
            "IMPRESSION: {Loc} mass, suspicious for malignancy.",
            "PA chest radiograph. Large lobulated {size} mm mass in the {loc}. No pneumothorax. "
            "IMPRESSION: {Loc} mass measuring {size} mm.",
            "Chest radiograph: dense {size} mm mass projecting over the {loc}. IMPRESSION: {Side} lung mass in the "
            "{loc}; further evaluation with CT is advised.",
        ),
        "consolidation": (
            "CHEST RADIOGRAPH. FINDINGS: Patchy consolidation is seen in the {loc}, measuring about {size} mm. "
            "IMPRESSION: {Loc} consolidation, likely pneumonia.",
            "PA chest radiograph. Hazy airspace consolidation in the {loc} spanning {size} mm. "
            "IMPRESSION: {Loc} consolidation.",
            "Chest radiograph: ill-defined consolidation of approximately {size} mm in the {loc}. "
            "IMPRESSION: Consolidation in the {loc}, correlate for infection.",
        ),
        "effusion": (
            "CHEST RADIOGRAPH. FINDINGS: {Severity} {side} pleural effusion with a meniscus at the {side} lung base, "
            "{size} mm in depth. IMPRESSION: {Severity} {side} pleural effusion.",
            "PA chest radiograph. Blunting of the {side} costophrenic angle by {a} {size} mm pleural effusion in the "
            "{side} lower zone. IMPRESSION: {Side} pleural effusion.",
            "Chest radiograph: {severity} {side} pleural effusion layering at the {side} base, measuring {size} mm. "
            "IMPRESSION: {Side} effusion.",
        ),
        "normal": (
            "CHEST RADIOGRAPH. FINDINGS: The lungs are clear. The heart size is normal. No pneumothorax. "
            "IMPRESSION: No acute cardiopulmonary abnormality.",
            "PA chest radiograph. Clear lungs. Normal cardiomediastinal silhouette. "
            "IMPRESSION: Normal chest radiograph.",
            "Chest radiograph: no focal opacity. Heart and mediastinum are within normal limits. "
            "IMPRESSION: No acute cardiopulmonary process.",
        ),
    },
    "ct": {
        "nodule": (
            "CT CHEST. FINDINGS: {A} {size} mm solid nodule is seen in the {loc}. No lymphadenopathy. "
            "IMPRESSION: {Loc} pulmonary nodule, {size} mm.",
            "CT chest without contrast. There is a well-defined {size} mm pulmonary nodule in the {loc}. "
            "IMPRESSION: Solitary {size} mm nodule, {loc}.",
            "CT chest: {size} mm nodule in the {loc}. IMPRESSION: {Loc} nodule; follow-up CT is recommended.",
        ),
        "mass": (
            "CT CHEST. FINDINGS: A lobulated {size} mm soft-tissue mass is seen in the {loc}. "
            "IMPRESSION: {Loc} mass, suspicious for malignancy.",
            "CT chest without contrast. Large {size} mm mass in the {loc}. No pneumothorax. "
            "IMPRESSION: {Loc} mass measuring {size} mm.",
            "CT chest: solid {size} mm mass in the {loc}. IMPRESSION: {Side} lung mass; tissue sampling is advised.",
        ),
        "consolidation": (
            "CT CHEST. FINDINGS: Patchy airspace consolidation in the {loc}, about {size} mm in extent. "
            "IMPRESSION: {Loc} consolidation, likely pneumonia.",
            "CT chest without contrast. Irregular consolidation spanning {size} mm in the {loc}. "
            "IMPRESSION: {Loc} consolidation.",
            "CT chest: ill-defined {size} mm area of consolidation in the {loc}. IMPRESSION: Consolidation in the "
            "{loc}, correlate for infection.",
        ),
        "effusion": (
            "CT CHEST. FINDINGS: {Severity} {side} pleural effusion layering dependently at the {side} lung base, "
            "{size} mm in depth. IMPRESSION: {Severity} {side} pleural effusion.",
            "CT chest without contrast. Dependent {side} pleural effusion of {size} mm at the {side} lower lung. "
            "IMPRESSION: {Side} pleural effusion.",
            "CT chest: {severity} {side} pleural effusion at the {side} base, measuring {size} mm. "
            "IMPRESSION: {Side} effusion.",
        ),
        "normal": (
            "CT CHEST. FINDINGS: The lungs are clear without focal lesion. Normal mediastinum. "
            "IMPRESSION: Normal CT chest.",
            "CT chest without contrast. No acute intrathoracic abnormality.",
            "CT chest: clear lungs. Heart size is normal. IMPRESSION: No acute cardiopulmonary abnormality.",
        ),
    },
}


def _location(modality: str, side: str, zone: str, rng: np.random.Generator) -> str:
    """Lobe / zone wording: 'right upper lobe', 'left mid zone', ...; always names side and zone."""
    if zone == "middle" and (side == "left" or (modality == "xray" and rng.random() < 0.5)):
        return f"{side} mid zone" if modality == "xray" else f"{side} mid lung zone"
    if modality == "xray" and rng.random() < 0.5:
        return f"{side} {zone} zone"
    return f"{side} {zone} lobe"


def make_report(modality: str, finding: str, side: str, zone: str, size_mm: float, rng: np.random.Generator) -> str:
    """
    Write a short radiology-style report stating finding, side, zone and size.

    X-ray reports say "chest radiograph", CT reports "CT chest". About one in four reports holds a
    de-identification placeholder ``___`` (as in MIMIC-CXR) to exercise report cleaning.

    Args:
        modality: ``"xray"`` or ``"ct"``.
        finding: one of :data:`FINDINGS`.
        side: ``"left"`` / ``"right"`` (``"none"`` if normal).
        zone: ``"upper"`` / ``"middle"`` / ``"lower"`` (``"none"`` if normal).
        size_mm: lesion size; written rounded to whole mm.
        rng: random generator choosing template, wording and placeholder.

    Returns:
        the report text (one line, under 60 words).
    """
    if modality not in _TEMPLATES:
        raise ValueError(f"modality must be 'xray' or 'ct', got {modality!r}.")
    _check_case(modality, finding, side, zone, size_mm)
    templates = _TEMPLATES[modality][finding]
    text = templates[int(rng.integers(len(templates)))]
    if finding != "normal":
        size = int(round(float(size_mm)))
        loc = _location(modality, side, zone, rng)
        severity = "small" if size < 25 else ("moderate" if size < 40 else "large")
        article = "an" if str(size).startswith("8") or size in (11, 18) else "a"  # "an 8 mm", "an 11 mm"
        text = text.format(
            size=size, a=article, A=article.capitalize(), loc=loc, Loc=loc[0].upper() + loc[1:], side=side,
            Side=side.capitalize(), severity=severity, Severity=severity.capitalize(),
        )
    draw = rng.random()
    if draw < 0.15:
        text = f"{_PLACEHOLDER_PREFIX[int(rng.integers(len(_PLACEHOLDER_PREFIX)))]} {text}"
    elif draw < 0.25:
        text = f"{text} {_PLACEHOLDER_SUFFIX[int(rng.integers(len(_PLACEHOLDER_SUFFIX)))]}"
    return text


# -------------------------------------------------------------------------- slice index mapping
def lesion_slices_resampled(lesion_slices: Sequence[int], num_slices: int, target_slices: int = 32) -> list[int]:
    """
    Map original slice indices to the slices of a volume linearly resampled along z.

    The resampling is MONAI ``Resize`` with ``align_corners=False`` semantics: original slice ``z``
    covers the coordinate range ``[z, z + 1)`` and target slice ``t`` covers
    ``[t * D / T, (t + 1) * D / T)`` in original coordinates (``D = num_slices``,
    ``T = target_slices``). A target slice is returned when its range overlaps the range of any
    lesion slice. Computed in exact integer arithmetic. This is exactly the set of target slices
    that receive weight from a lesion slice under ``Resize(mode="area")`` (MONAI's default); under
    ``mode="trilinear"`` it is the same for the demo's 48 -> 32 (and e.g. 40 -> 32, 64 -> 32), while
    other ratios may differ by one neighbouring slice of small weight.

    Example: ``D = 48, T = 32``: slice 0 -> [0], slice 1 -> [0, 1], slice 2 -> [1], slice 47 -> [31].

    Args:
        lesion_slices: original slice indices, each in ``[0, num_slices)``.
        num_slices: the original number of slices ``D`` (>= 1).
        target_slices: the resampled number of slices ``T`` (>= 1).

    Returns:
        sorted unique target slice indices (empty if ``lesion_slices`` is empty).

    Raises:
        ValueError: for non-positive slice counts or an index outside ``[0, num_slices)``.
    """
    num_slices, target_slices = int(num_slices), int(target_slices)
    if num_slices < 1 or target_slices < 1:
        raise ValueError(f"num_slices and target_slices must be >= 1, got {num_slices} and {target_slices}.")
    result: set[int] = set()
    for position, z in enumerate(lesion_slices):
        if int(z) != z or not 0 <= int(z) < num_slices:
            raise ValueError(
                f"lesion_slices[{position}] = {z!r} is not a slice index in [0, {num_slices}); "
                "pass original slice indices of the volume."
            )
        z = int(z)
        first = (z * target_slices) // num_slices  # smallest t with (t + 1) * D > z * T
        last = -(-((z + 1) * target_slices) // num_slices) - 1  # largest t with t * D < (z + 1) * T
        result.update(range(first, last + 1))
    return sorted(result)


# ------------------------------------------------------------------------------------- planning
def _plan_modality(modality: str, n: int, rng: np.random.Generator) -> list[_Case]:
    """Balanced findings / sides / zones / sizes, grouped into patients (some with a follow-up)."""
    findings = [FINDINGS[i % len(FINDINGS)] for i in range(n)]
    patients: list[list] = []  # [finding, n_studies, side, zone, base size]
    for finding in FINDINGS:
        remaining = findings.count(finding)
        group: list[list] = []
        while remaining > 0:
            n_studies = 2 if remaining >= 2 and rng.random() < _FOLLOW_UP_PROB else 1
            group.append([finding, n_studies, "none", "none", 0.0])
            remaining -= n_studies
        if finding != "normal":
            zones = ("lower",) if finding == "effusion" else ZONES
            combos = [(s, z) for s in SIDES for z in zones]
            order = rng.permutation(len(combos))
            lo, hi = SIZE_RANGES_MM[modality][finding]
            for q, patient in enumerate(group):
                patient[2], patient[3] = combos[order[q % len(combos)]]
                patient[4] = rng.uniform(lo, hi)
        patients.extend(group)
    cases: list[_Case] = []
    prefix = "xr" if modality == "xray" else "ct"
    for p, index in enumerate(rng.permutation(len(patients))):
        finding, n_studies, side, zone, base = patients[index]
        for study in range(n_studies):
            size = 0.0
            if finding != "normal":
                lo, hi = SIZE_RANGES_MM[modality][finding]
                factor = 1.0 if study == 0 else 1.0 + rng.uniform(-0.15, 0.15)
                size = float(min(max(round(base * factor), lo), hi))
            cases.append(
                _Case(
                    case_id=f"{prefix}_{len(cases):04d}",
                    modality=modality,
                    finding=finding,
                    side=side,
                    zone=zone,
                    size_mm=size,
                    patient_id=f"demo-{prefix}-p{p:04d}",
                    seed=int(rng.integers(0, 2**63 - 1)),
                )
            )
    return cases


def _validation_patients(cases: Sequence[_Case], val_fraction: float, rng: np.random.Generator) -> set[str]:
    """
    Patients held out for validation: per modality, patients sorted by finding (random order inside
    a finding) and picked at evenly spaced ranks, so every finding gets its share.
    """
    chosen: set[str] = set()
    for modality in _MODALITY_CODE:
        finding_of: dict[str, str] = {}
        for case in cases:
            if case.modality == modality:
                finding_of.setdefault(case.patient_id, case.finding)
        pids = list(finding_of)
        n = len(pids)
        if n < 2 or val_fraction <= 0:
            continue
        keys = rng.random(n)
        ranked = sorted(range(n), key=lambda p: (FINDINGS.index(finding_of[pids[p]]), keys[p]))
        n_val = min(n - 1, max(1, int(round(val_fraction * n))))
        chosen.update(pids[ranked[int((q + 0.5) * n / n_val)]] for q in range(n_val))
    return chosen


# -------------------------------------------------------------------------------------- writing
def _write_nifti(path: Path, volume: np.ndarray) -> None:
    """Write a deterministic, fast gzip (level 1, mtime 0) NIfTI-1 file."""
    image = nib.Nifti1Image(volume, ct_affine())
    image.header.set_xyzt_units("mm")
    image.set_qform(ct_affine(), code=1)
    image.set_sform(ct_affine(), code=1)
    image.header["descrip"] = b"unimedi-monai synthetic demo CT"
    path.write_bytes(gzip.compress(image.to_bytes(), compresslevel=1, mtime=0))


def _render_case(root: Path, case: _Case) -> dict:
    """Render, save and describe one case; returns its datalist item."""
    image_rng = np.random.default_rng([case.seed, 0])
    report_rng = np.random.default_rng([case.seed, 1])
    item: dict = {}
    if case.modality == "xray":
        image, _ = synth_xray(case.finding, case.side, case.zone, case.size_mm, image_rng)
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
        item["lesion_centre_voxel"] = (
            [int(round(float(c.mean()))) for c in np.nonzero(mask)] if mask.any() else None
        )
    return item


def _arguments(n_xray: int, n_ct: int, seed: int, val_fraction: float) -> dict:
    return {"n_xray": n_xray, "n_ct": n_ct, "seed": seed, "val_fraction": val_fraction}


def _existing_state(out_dir: Path, arguments: dict) -> str:
    """'absent', 'empty', 'match', or a reason why ``out_dir`` is not the requested demo."""
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
    if manifest.get("format_version") != FORMAT_VERSION:
        return f"it holds demo format version {manifest.get('format_version')!r}, not {FORMAT_VERSION}"
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
    into a temporary sibling folder that is renamed into place at the end, so an interrupted run never
    leaves a half dataset behind. If ``out_dir`` already holds a complete demo generated with the
    same arguments, it is returned at once.

    Args:
        out_dir: folder to create (absent or empty), or that already holds this demo.
        n_xray: number of chest radiographs (>= 0).
        n_ct: number of chest CTs (>= 0); ``n_xray + n_ct`` must be >= 1.
        seed: non-negative seed of ``numpy.random.default_rng``.
        val_fraction: fraction of patients per modality held out for validation, in ``[0, 1)``.
        force: replace whatever ``out_dir`` holds (its contents are deleted) and regenerate.
        progress: show a progress bar on stderr.

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
    arguments = _arguments(int(n_xray), int(n_ct), int(seed), float(val_fraction))
    out_dir = Path(out_dir).absolute()
    datalist_path = out_dir / _DATALIST

    state = _existing_state(out_dir, arguments)
    if state == "match" and not force:
        return datalist_path
    if state not in ("absent", "empty", "match") and not force:
        raise FileExistsError(
            f"demo output folder {out_dir} cannot be used: {state}. Pass force=True (CLI: --force) to replace its "
            "contents, or choose a new or empty folder."
        )
    if force and state not in ("absent", "empty"):
        _check_force_target(out_dir)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        master = np.random.default_rng(arguments["seed"])
        cases = _plan_modality("xray", arguments["n_xray"], master) + _plan_modality("ct", arguments["n_ct"], master)
        val_patients = _validation_patients(cases, arguments["val_fraction"], master)
        for sub in ("xray", "ct", "reports"):
            (tmp / sub).mkdir()
        items = []
        started = time.perf_counter()
        bar = _progress_bar(len(cases), progress)
        # cases are independent (own seeds, own files); threads overlap numpy work with zlib compression,
        # both of which release the GIL. Results are consumed in order, so the output does not depend on timing.
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            for item in pool.map(lambda case: _render_case(tmp, case), cases):
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
            "generator": _GENERATOR, "format_version": FORMAT_VERSION, "arguments": arguments, "num_items": len(items)
        }
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _move_into_place(tmp, out_dir, arguments, force)
        if progress:
            print(
                f"unimedi demo: {len(items)} cases ({len(training)} training, {len(validation)} validation) written to "
                f"{out_dir} in {time.perf_counter() - started:.1f} s",
                file=sys.stderr,
            )
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return datalist_path


def _move_into_place(tmp: Path, out_dir: Path, arguments: dict, force: bool) -> None:
    """Rename the finished ``tmp`` folder to ``out_dir``, tolerating a concurrent identical writer."""
    old = None
    if out_dir.exists():
        if force and any(out_dir.iterdir()):
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}-{time.monotonic_ns()}")
            os.replace(out_dir, old)
        else:
            try:
                out_dir.rmdir()  # empty folder: make room for the rename
            except OSError:
                pass
    try:
        os.replace(tmp, out_dir)
    except OSError as exc:
        # another process (e.g. another rank) may have finished the same demo first
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and _existing_state(out_dir, arguments) == "match":
            return
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


class _NullBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, enabled: bool) -> Any:
    """tqdm progress bar on stderr, or a no-op when disabled or tqdm is not installed."""
    if not enabled:
        return _NullBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NullBar()
    return tqdm(total=total, desc="unimedi demo", unit="case", file=sys.stderr)


# ------------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    """
    Command line: ``python -m unimedi_monai.data.demo OUT_DIR [--n-xray N] [--n-ct N] [--seed S]
    [--val-fraction F] [--force] [--quiet]``; prints the datalist path.

    Returns:
        the process exit status (0 on success, 2 on invalid arguments or an unusable folder).
    """
    parser = argparse.ArgumentParser(
        prog="python -m unimedi_monai.data.demo",
        description="Generate the synthetic unimedi-monai demo dataset (chest X-rays, CTs, reports, datalist.json).",
    )
    parser.add_argument("out_dir", help="output folder (absent, empty, or holding the same demo)")
    parser.add_argument("--n-xray", type=int, default=240, help="number of chest radiographs (default 240)")
    parser.add_argument("--n-ct", type=int, default=120, help="number of chest CTs (default 120)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="validation fraction of patients (default 0.2)")
    parser.add_argument("--force", action="store_true", help="replace the contents of OUT_DIR and regenerate")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    try:
        path = generate_demo_dataset(
            args.out_dir,
            n_xray=args.n_xray,
            n_ct=args.n_ct,
            seed=args.seed,
            val_fraction=args.val_fraction,
            force=args.force,
            progress=not args.quiet,
        )
    except (ValueError, FileExistsError, NotADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
