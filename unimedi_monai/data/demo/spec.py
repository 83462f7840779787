# SPDX-License-Identifier: Apache-2.0
"""What a demo case is: findings, sides, zones, size ranges, image geometry, the case check, shared drawing helpers."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["FINDINGS", "SIDES", "ZONES", "SIZE_RANGES_MM", "XRAY_SHAPE", "XRAY_PIXEL_MM", "CT_SHAPE", "CT_SPACING_MM"]

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
_MAX_PLACEMENT_TRIES = 200


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


def _third(value: float, start: float, stop: float) -> int:
    """Index (0, 1, 2) of the third of ``[start, stop]`` holding ``value`` (clamped)."""
    return int(min(max(np.floor(3.0 * (value - start) / (stop - start)), 0), 2))
