# SPDX-License-Identifier: Apache-2.0
"""The synthetic chest CT: a mirror-symmetric template thorax in HU with one drawn lesion (or none)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from unimedi_monai.data.demo.spec import _MAX_PLACEMENT_TRIES, CT_SHAPE, CT_SPACING_MM, ZONES, _check_case, _third

__all__ = ["ct_affine", "synth_ct"]

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


@lru_cache(maxsize=1)
def _ct_grid() -> tuple[np.ndarray, np.ndarray]:
    ii, jj = np.mgrid[0 : CT_SHAPE[0], 0 : CT_SHAPE[1]].astype(np.float32)
    return ii, jj


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
    shape = tuple(int(h - low) for low, h in zip(lo, hi))
    pv = inside.reshape(shape[0], 3, shape[1], 3, shape[2], 3).mean(axis=(1, 3, 5))
    box = tuple(slice(int(low), int(h)) for low, h in zip(lo, hi))
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
