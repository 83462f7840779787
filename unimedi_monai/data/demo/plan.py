# SPDX-License-Identifier: Apache-2.0
"""Planning the demo: balanced findings / sides / zones / sizes, patients with follow-ups, the validation split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unimedi_monai.data.demo.spec import FINDINGS, SIDES, SIZE_RANGES_MM, ZONES, _Case

_MODALITY_CODE = {"xray": 1, "ct": 2}
_FOLLOW_UP_PROB = 0.25  # fraction of patients with a second (follow-up) study of the same finding


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
