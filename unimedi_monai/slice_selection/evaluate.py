# SPDX-License-Identifier: Apache-2.0
"""LUNA16-style evaluation of slice selection: does a selected slice lie near a nodule centre?

Protocol (from the UniMedI authors' answers): for each CT holding nodules of at least 3 mm, the
model selects the top ``top_fraction`` (20%) of the CT's own slices; the CT counts as a *hit* when a
selected slice lies within ``tolerance`` (3) slices of a nodule centre. The accuracy (hits / CTs) is
reported next to the same figure for a random selection of the same number of slices per CT drawn
with a fixed seed (the paper: 76.1% against 53.7%), the exact expectation of that random figure
(per CT ``1 - C(n - m, k) / C(n, k)``, ``m`` slices lie within ``tolerance`` of a centre, averaged),
and the one-sided p-value of the observed hits under random selection (Poisson-binomial tail); the
formulas are those of :mod:`unimedi_monai.evaluation.slice_hits`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from unimedi_monai.evaluation.slice_hits import (
    near_lesion_mask,
    poisson_binomial_tail,
    position_prior_hit_rate,
    random_hit_probability,
)
from unimedi_monai.io.atomic_io import write_json_atomic
from unimedi_monai.slice_selection.plot import plot_slice_selection
from unimedi_monai.slice_selection.selector import SliceSelector

__all__ = ["evaluate_slice_selection"]

logger = logging.getLogger(__name__)


class _NoduleWindow:
    """``window_slices`` consecutive slices holding a nodule centre (one nodule drawn at random), placed at random."""

    def __init__(self, case: Mapping[str, Any], size: int, rng: np.random.Generator) -> None:
        self.case, self.size, self.rng = case, int(size), rng

    def __call__(self, num_slices: int, axis: int) -> tuple[int, int]:
        centres = _centres(self.case, axis, num_slices)
        if num_slices <= self.size:
            return 0, num_slices
        c = centres[int(self.rng.integers(len(centres)))]
        low, high = max(0, c - self.size + 1), min(c, num_slices - self.size)
        start = int(self.rng.integers(low, high + 1))
        return start, start + self.size


def _centres(case: Mapping[str, Any], axis: int, num_slices: int) -> list[int]:
    """The nodule centres' slice numbers along ``axis``, checked to lie in the image."""
    centres = sorted({int(round(float(v[axis]))) for v in case["nodules_voxel"]})
    outside = [c for c in centres if not 0 <= c < num_slices]
    if outside:
        raise ValueError(
            f"case '{case['id']}' ({case['image']}): nodule centre slice(s) {outside} outside the image's "
            f"{num_slices} slices; check the annotation coordinates."
        )
    return centres


def evaluate_slice_selection(
    selector: SliceSelector,
    cases: Sequence[Mapping[str, Any]],
    output_dir: str | os.PathLike,
    tolerance: int = 3,
    seed: int = 0,
    num_plots: int = 3,
    dataset: str = "luna16",
    query: str | None = None,
    window_slices: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the selection on every case and write ``metrics.json``, ``cases.json`` and a few PNGs.

    Baselines in ``metrics.json``: random selection of as many slices (``accuracy_random``, sampled;
    ``accuracy_random_expected``, exact; ``p_value_vs_random``) and, when every CT selects the same number of
    slices, the best fixed relative position(s) for every CT, chosen on these CTs (``accuracy_position_prior``
    at ``position_prior_fraction`` of the scored range): a selection that follows the image beats both.

    Args:
        selector: a :class:`~unimedi_monai.slice_selection.SliceSelector` (``top_fraction`` 0.2 in the protocol).
        cases: dicts with ``id``, ``image`` and ``nodules_voxel`` (``[[i, j, k], ...]`` in the file's
            index order), as built by :func:`~unimedi_monai.slice_selection.evaluation_cases`.
        output_dir: the folder of ``metrics.json`` (summary), ``cases.json`` (per CT) and
            ``slices/<id>.png`` (the first ``num_plots`` CTs, nodule centres marked).
        tolerance: a hit when a selected slice lies within this many slices of a nodule centre.
        seed: seed of the random-selection baseline (one draw per CT, in case order).
        num_plots: CTs drawn.
        dataset: name recorded in ``metrics.json`` (``"luna16"`` or ``"demo"``).
        query: the text of text-guided selection (network ``mode == "text"``) for every CT; None
            uses each case's ``report`` (the demo CTs have one).
        window_slices: score only this many consecutive slices per CT, holding a nodule centre (one
            nodule drawn per CT, the window placed at random, both seeded): the authors' "continuous
            set of 32 slices that contain nodules"; None scores the whole CT. ``top_fraction`` then
            applies to the window, and the random baseline draws from the window too.
        progress: show a progress bar.

    Returns:
        the metrics written to ``metrics.json``.
    """
    if isinstance(tolerance, bool) or int(tolerance) < 0:
        raise ValueError(f"tolerance must be a non-negative number of slices, got {tolerance!r}.")
    if not cases:
        raise ValueError("no CT to evaluate: the case list is empty.")
    tolerance = int(tolerance)
    out = Path(output_dir)
    if window_slices is not None and (isinstance(window_slices, bool) or int(window_slices) < 1):
        raise ValueError(f"window_slices must be a positive number of slices or null, got {window_slices!r}.")
    rng = np.random.default_rng(seed)
    window_rng = np.random.default_rng([seed, 1])
    records: list[dict[str, Any]] = []
    mode = getattr(selector.network, "mode", "attention")
    for index, case in enumerate(tqdm(cases, desc="slice selection", disable=not progress)):
        if mode == "text":
            text = query or case.get("report")
            if not text:
                raise ValueError(
                    f"case '{case['id']}' has no report to guide the selection; set the config key `query` "
                    "(e.g. 'pulmonary nodule') or use mode: attention."
                )
            selector.network.query = text
        window = _NoduleWindow(case, window_slices, window_rng) if window_slices else None
        selection = selector(case["image"], keep_volume=index < num_plots, window=window)
        n = selection.num_slices
        centres = _centres(case, selection.slice_axis, n)
        start, stop = selection.window or (0, n)
        k = len(selection.top_k)
        near = near_lesion_mask(centres, stop - start, tolerance, start)
        random_pick = np.sort(rng.choice(stop - start, size=k, replace=False)) + start
        records.append(
            {
                "id": str(case["id"]),
                "image": str(case["image"]),
                "num_slices": n,
                "window": selection.window,
                "k": k,
                "centres": centres,
                "selected": selection.top_k,
                "hit": bool(near[np.asarray(selection.top_k) - start].any()),
                "random_selected": [int(i) for i in random_pick],
                "random_hit": bool(near[random_pick - start].any()),
                "random_hit_probability": random_hit_probability(centres, stop - start, k, tolerance, start),
                **({"finding": case["finding"]} if "finding" in case else {}),
            }
        )
        if index < num_plots:
            plot_slice_selection(
                selection, out / "slices" / f"{records[-1]['id']}.png", markers=centres, marker_label="nodule centre"
            )
    hits = sum(r["hit"] for r in records)
    random_hits = sum(r["random_hit"] for r in records)
    probabilities = [r["random_hit_probability"] for r in records]
    metrics = {
        "dataset": dataset,
        "mode": mode,
        "query": (query or "per-case report") if mode == "text" else None,
        "num_cases": len(records),
        "num_nodules": int(sum(len(c["nodules_voxel"]) for c in cases)),
        "top_fraction": selector.top_fraction,
        "top_k": selector.top_k,
        "tolerance": tolerance,
        "window_slices": None if window_slices is None else int(window_slices),
        "seed": int(seed),
        "hits": int(hits),
        "accuracy": hits / len(records),
        "accuracy_random": random_hits / len(records),
        "accuracy_random_expected": float(np.mean(probabilities)),
        "p_value_vs_random": poisson_binomial_tail(probabilities, hits),
        "mean_slices_per_ct": float(np.mean([r["num_slices"] for r in records])),
        "mean_scored_per_ct": float(
            np.mean([(r["window"][1] - r["window"][0]) if r["window"] else r["num_slices"] for r in records])
        ),
        "mean_selected_per_ct": float(np.mean([r["k"] for r in records])),
    }
    # the position-only baseline: the best fixed relative position(s) in the scored range, the same for every CT
    ks = {r["k"] for r in records}
    if len(ks) == 1:
        spans = [(r["window"] or (0, r["num_slices"])) for r in records]
        prior = position_prior_hit_rate(
            [[c - a for c in r["centres"]] for r, (a, _) in zip(records, spans)],
            [b - a for a, b in spans],
            ks.pop(),
            tolerance,
        )
        metrics["accuracy_position_prior"] = prior["hit_rate"]
        metrics["position_prior_fraction"] = [(i + 0.5) / prior["num_positions"] for i in prior["positions"]]
    write_json_atomic({"cases": records}, out / "cases.json")
    write_json_atomic(metrics, out / "metrics.json")
    logger.info(
        "slice selection on %d %s CTs: accuracy %.3f, random %.3f (expected %.3f), p = %.3g",
        len(records),
        dataset,
        metrics["accuracy"],
        metrics["accuracy_random"],
        metrics["accuracy_random_expected"],
        metrics["p_value_vs_random"],
    )
    return metrics
