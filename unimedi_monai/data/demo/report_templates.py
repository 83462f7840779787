# SPDX-License-Identifier: Apache-2.0
"""Report templates of the demo: every report states the drawn finding, its side, zone and size."""

from __future__ import annotations

import numpy as np

from unimedi_monai.data.demo.spec import _check_case

__all__ = ["make_report"]

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
            size=size,
            a=article,
            A=article.capitalize(),
            loc=loc,
            Loc=loc[0].upper() + loc[1:],
            side=side,
            Side=side.capitalize(),
            severity=severity,
            Severity=severity.capitalize(),
        )
    draw = rng.random()
    if draw < 0.15:
        text = f"{_PLACEHOLDER_PREFIX[int(rng.integers(len(_PLACEHOLDER_PREFIX)))]} {text}"
    elif draw < 0.25:
        text = f"{text} {_PLACEHOLDER_SUFFIX[int(rng.integers(len(_PLACEHOLDER_SUFFIX)))]}"
    return text
