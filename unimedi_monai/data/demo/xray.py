# SPDX-License-Identifier: Apache-2.0
"""The synthetic PA chest radiograph: a mirror-symmetric template chest, jittered per patient (slightly, or the
way real radiographs vary: framing, habitus, exposure, markers and devices), with one drawn lesion (or none)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from unimedi_monai.data.demo.spec import (
    _MAX_PLACEMENT_TRIES,
    XRAY_PIXEL_MM,
    XRAY_SHAPE,
    ZONES,
    _check_case,
    _smooth_noise,
    _soft,
    _third,
)

__all__ = ["XRAY_VARIATIONS", "XrayVariation", "synth_xray"]

# ---------------------------------------------------------------- X-ray template geometry (pixels)
_XR_MID = (XRAY_SHAPE[1] - 1) / 2.0  # mirror axis between the lungs (column 127.5)
_XR_LUNG_ROW = 118.0  # lung field centre row
_XR_LUNG_OFFSET = 56.0  # lung centre distance from the midline (columns)
_XR_LUNG_RY, _XR_LUNG_RX = 78.0, 36.0  # lung half-height / half-width
_XR_BODY = (140.0, 130.0, 118.0)  # body ellipse centre row, half-height, half-width
_XR_HEART = (170.0, 36.0, 30.0)  # heart centre row, half-height, half-width (centred on the midline)
_XR_MEDIASTINUM_HALF_WIDTH = 18.0


@dataclass(frozen=True)
class XrayVariation:
    """How much the demo X-rays differ between patients: the ranges of the per-patient uniform draws.

    Args:
        realistic: also vary what real radiographs vary and a template does not: the chest's framing (zoom,
            shift, rotation), body habitus and heart size, the exposure (gamma, window, a smooth brightness
            field), vascular markings, burned-in markers and ECG electrodes; patient, lesion and acquisition
            then draw from separate random streams.
        lung_scale: relative lung size (one draw for both axes, or one per axis when ``realistic``).
        lung_row_shift: vertical shift of the lung fields (pixels, +-).
        lung_offset: relative distance of each lung from the midline.
        body, lung, mediastinum, heart: grey levels of each tissue before exposure.
        ribs: amplitude of the rib arcs.
    """

    realistic: bool
    lung_scale: tuple[float, float]
    lung_row_shift: float
    lung_offset: tuple[float, float]
    body: tuple[float, float]
    lung: tuple[float, float]
    mediastinum: tuple[float, float]
    heart: tuple[float, float]
    ribs: tuple[float, float]


#: ``template``: one chest with a small global jitter, so the lesion is nearly all that differs between two
#: images (two of them correlate at 0.98, downsampled to 16x16 with the mean removed). ``patient``: the chest
#: varies the way real PA radiographs do (0.63, against 0.59 for the real X-rays of ``covid_cxr_notes``).
XRAY_VARIATIONS: dict[str, XrayVariation] = {
    "template": XrayVariation(
        realistic=False,
        lung_scale=(0.95, 1.05),
        lung_row_shift=3.0,
        lung_offset=(0.97, 1.03),
        body=(135.0, 150.0),
        lung=(50.0, 60.0),
        mediastinum=(165.0, 180.0),
        heart=(175.0, 190.0),
        ribs=(11.0, 15.0),
    ),
    "patient": XrayVariation(
        realistic=True,
        lung_scale=(0.9, 1.1),
        lung_row_shift=4.0,
        lung_offset=(0.94, 1.06),
        body=(125.0, 160.0),
        lung=(40.0, 70.0),
        mediastinum=(160.0, 185.0),
        heart=(170.0, 195.0),
        ribs=(9.0, 17.0),
    ),
}


@lru_cache(maxsize=1)
def _xray_grid() -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0 : XRAY_SHAPE[0], 0 : XRAY_SHAPE[1]].astype(np.float32)
    return rows, cols


@dataclass(frozen=True)
class _XrayAnatomy:
    rows: np.ndarray  # patient-frame row of every image pixel (the template's geometry is in this frame)
    cols: np.ndarray  # patient-frame column of every image pixel
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


def _xray_frame(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Patient-frame coordinates of every image pixel: the patient's position and the detector's framing.

    Real radiographs of different patients differ most in how the chest sits in the frame (magnification and
    collimation, a patient off-centre or slightly rotated), so each image gets its own zoom (0.9-1.3: the
    chest fills more or less of the frame), shift (up to 10 pixels) and in-plane rotation (up to 4 degrees).
    """
    rows, cols = _xray_grid()
    zoom = rng.uniform(0.9, 1.3)
    shift_r, shift_c = rng.uniform(-10.0, 10.0, size=2)
    angle = np.deg2rad(rng.uniform(-4.0, 4.0))
    cos, sin = np.cos(angle), np.sin(angle)
    centre_r, centre_c = (XRAY_SHAPE[0] - 1) / 2.0, _XR_MID
    dr, dc = (rows - centre_r - shift_r) / zoom, (cols - centre_c - shift_c) / zoom
    return centre_r + cos * dr - sin * dc, centre_c + sin * dr + cos * dc


def _xray_anatomy(rng: np.random.Generator, var: XrayVariation) -> _XrayAnatomy:
    """Mirror-symmetric chest template (in the patient frame) with per-patient jitter of the ranges in ``var``.

    With ``var.realistic`` the chest is also framed per patient (:func:`_xray_frame`) and the body and heart
    sizes vary; mirror symmetry about the patient's midline is kept, so the lesion is the only lateralised
    anatomy.
    """
    if var.realistic:
        rows, cols = _xray_frame(rng)
        scale_y, scale_x = rng.uniform(*var.lung_scale, size=2)
    else:
        rows, cols = _xray_grid()
        scale_y = scale_x = rng.uniform(*var.lung_scale)
    lung_row = _XR_LUNG_ROW + rng.uniform(-var.lung_row_shift, var.lung_row_shift)
    lung_ry, lung_rx = _XR_LUNG_RY * scale_y, _XR_LUNG_RX * scale_x
    lung_offset = _XR_LUNG_OFFSET * rng.uniform(*var.lung_offset)
    body_val, lung_val = rng.uniform(*var.body), rng.uniform(*var.lung)
    med_val, heart_val = rng.uniform(*var.mediastinum), rng.uniform(*var.heart)
    lateral = np.abs(cols - _XR_MID)

    body_row, body_ry, body_rx = _XR_BODY
    if var.realistic:
        body_ry, body_rx = body_ry * rng.uniform(0.9, 1.1), body_rx * rng.uniform(0.85, 1.2)
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
        centre = lung_top - 4.0 + 22.0 * scale_y * k + 10.0 * (u + 1.0) ** 2
        ribs += np.exp(-(((rows - centre) / 2.2) ** 2))
    image += rng.uniform(*var.ribs) * np.clip(ribs, 0.0, 1.0) * body
    mediastinum = _soft(np.abs(cols - _XR_MID) / _XR_MEDIASTINUM_HALF_WIDTH, _XR_MEDIASTINUM_HALF_WIDTH, 3.0)
    mediastinum = mediastinum * (rows < lung_row + lung_ry)
    image = image * (1.0 - mediastinum) + med_val * mediastinum
    heart_row, heart_ry, heart_rx = _XR_HEART
    heart_scale = rng.uniform(0.85, 1.25) if var.realistic else 1.0  # the cardiothoracic ratio varies
    heart = _soft(
        np.sqrt(
            ((rows - heart_row * (lung_row / _XR_LUNG_ROW)) / (heart_ry * heart_scale)) ** 2
            + ((cols - _XR_MID) / (heart_rx * heart_scale)) ** 2
        ),
        heart_rx * heart_scale,
        2.5,
    )
    image = image * (1.0 - heart) + heart_val * heart
    lung_visible = lung * (1.0 - mediastinum) * (1.0 - heart)
    return _XrayAnatomy(rows, cols, image, lung_visible, lung_row, lung_ry, lung_rx, lung_offset)


def _xray_exposure(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Per-image exposure and processing: a gamma curve, window (contrast, level) and a smooth brightness field
    (heel effect, scatter, uneven processing)."""
    grey = np.clip(image, 0.0, 255.0) / 255.0
    image = 255.0 * grey ** rng.uniform(0.7, 1.5)
    image = image * rng.uniform(0.8, 1.15) + rng.uniform(-15.0, 15.0)
    return image + 10.0 * _smooth_noise(rng, XRAY_SHAPE, 3)


def _xray_devices(rng: np.random.Generator, anat: _XrayAnatomy, image: np.ndarray) -> np.ndarray:
    """Burned-in side markers and text, and ECG electrodes, each present in some images only.

    Their side is random (not the lesion's), and electrodes are kept off the lung fields so that none of them
    looks like a nodule.
    """
    rows, cols = _xray_grid()
    out = image.copy()
    if rng.random() < 0.6:  # a lead marker ("L" / "R") near a top corner
        r0 = rng.uniform(6.0, 30.0)
        c0 = rng.uniform(8.0, 30.0) if rng.random() < 0.5 else rng.uniform(XRAY_SHAPE[1] - 40.0, XRAY_SHAPE[1] - 18.0)
        block = (rows >= r0) & (rows < r0 + 12.0) & (cols >= c0) & (cols < c0 + 10.0)
        out[block] = rng.uniform(220.0, 255.0)
    if rng.random() < 0.3:  # a line of burned-in text along the top edge
        r0, c0 = rng.uniform(2.0, 10.0), rng.uniform(10.0, 120.0)
        glyphs = (rows >= r0) & (rows < r0 + 6.0) & (cols >= c0) & (cols < c0 + rng.uniform(40.0, 110.0))
        out[glyphs & ((cols.astype(int) // 4) % 2 == 0)] = rng.uniform(200.0, 255.0)
    if rng.random() < 0.3:  # ECG electrodes on the chest wall
        placed, wanted = 0, int(rng.integers(2, 5))
        for _ in range(40):
            r, c = rng.uniform(0.0, XRAY_SHAPE[0]), rng.uniform(0.0, XRAY_SHAPE[1])
            disc = (rows - r) ** 2 + (cols - c) ** 2 <= 3.5**2
            if anat.lung_visible[disc].max(initial=0.0) > 0.05:
                continue
            out[disc] += 80.0
            placed += 1
            if placed == wanted:
                break
    return out


def _xray_blob(
    rng: np.random.Generator, anat: _XrayAnatomy, finding: str, row: float, col: float, size_px: float
) -> np.ndarray:
    """Soft lesion shape (values in [0, 1]) centred at patient-frame (row, col); ``size_px`` = diameter / extent."""
    rows, cols = anat.rows, anat.cols
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
    rows, cols = anat.rows, anat.cols
    lung_col = _XR_MID + side_sign * anat.lung_offset
    level = anat.lung_row + anat.lung_ry - depth_px  # fluid level at the lung's centre line
    lateral = np.clip((cols - lung_col) * side_sign / anat.lung_rx, 0.0, 1.0)
    surface = level - 0.35 * depth_px * lateral**2
    fluid = np.clip((rows - surface) / 2.0 + 0.5, 0.0, 1.0)
    side_half = (cols - _XR_MID) * side_sign > 0
    return fluid * side_half * anat.lung_visible


def synth_xray(
    finding: str, side: str, zone: str, size_mm: float, rng: np.random.Generator, variation: str = "template"
) -> tuple[np.ndarray, np.ndarray]:
    """
    Render one synthetic PA chest radiograph.

    Args:
        finding: one of :data:`FINDINGS`.
        side: the patient's ``"left"`` (drawn on the IMAGE RIGHT) or ``"right"``; ``"none"`` if normal.
        zone: ``"upper"``, ``"middle"`` or ``"lower"`` third of the lung field (``"lower"`` for an
            effusion); ``"none"`` if normal.
        size_mm: lesion size (see :data:`SIZE_RANGES_MM`); ignored for a normal case.
        rng: random generator; the result is a deterministic function of its state. With a ``realistic``
            variation it is spawned into three streams (patient, lesion, acquisition), so the same state renders
            the same patient, framing and exposure whatever the finding: a lesion case differs from its
            ``"normal"`` twin only by the lesion.
        variation: a key of :data:`XRAY_VARIATIONS`: how much the chest differs between patients.

    Returns:
        ``(image, lesion_mask)``: uint8 array of shape :data:`XRAY_SHAPE` (row 0 superior) and the
        boolean mask of the pixels where the lesion contributes at least half its intensity.

    Raises:
        ValueError: for an unknown finding / side / zone / variation or a size outside :data:`SIZE_RANGES_MM`.
    """
    _check_case("xray", finding, side, zone, size_mm)
    if variation not in XRAY_VARIATIONS:
        raise ValueError(f"variation must be one of {sorted(XRAY_VARIATIONS)}, got {variation!r}.")
    var = XRAY_VARIATIONS[variation]
    anatomy_rng = view_rng = rng
    if var.realistic:
        # independent streams for the patient, the lesion and the acquisition: the same generator state renders
        # the same patient and exposure whatever the finding, so a lesion is the only difference from its twin
        anatomy_rng, rng, view_rng = rng.spawn(3)
    anat = _xray_anatomy(anatomy_rng, var)
    image = anat.image.copy()
    mask = np.zeros(XRAY_SHAPE, dtype=bool)
    if finding != "normal":
        side_sign = -1.0 if side == "right" else 1.0  # patient's right lung is on the image left
        size_px = float(size_mm) / XRAY_PIXEL_MM
        top, height = anat.lung_row - anat.lung_ry, 2.0 * anat.lung_ry
        amplitude = {
            "nodule": (85.0, 100.0),
            "mass": (105.0, 120.0),
            "consolidation": (70.0, 80.0),
            "effusion": (90.0, 100.0),
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
                reference = _xray_blob(rng, anat, finding, row, col, size_px)
                lesion = reference * anat.lung_visible
            candidate = lesion > 0.5
            if not candidate.any():
                continue
            if reference is not None:
                needed = 0.9 if finding == "nodule" else 0.5
                if candidate.sum() < needed * (reference > 0.5).sum():
                    continue
            # side and zone are the patient's: judged in the patient frame
            wrong_zone = _third(anat.rows[candidate].mean(), top, top + height) != ZONES.index(zone)
            if (anat.cols[candidate].mean() - _XR_MID) * side_sign <= 0 or wrong_zone:
                continue
            mask = candidate
            break
        else:
            raise RuntimeError(
                f"could not place a {size_mm} mm {finding} in the {side} {zone} zone; use a smaller size_mm."
            )
        image += rng.uniform(*amplitude[finding]) * lesion
    if var.realistic:
        image += 6.0 * anat.lung_visible * _smooth_noise(anatomy_rng, XRAY_SHAPE, 40)  # vascular markings
        image = _xray_devices(view_rng, anat, _xray_exposure(view_rng, image))
    else:
        image = image * rng.uniform(0.95, 1.05) + rng.uniform(-5.0, 5.0)
    image += 3.0 * _smooth_noise(view_rng, XRAY_SHAPE, 6)
    image += view_rng.normal(0.0, 2.5, size=XRAY_SHAPE).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask
