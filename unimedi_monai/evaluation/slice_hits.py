# SPDX-License-Identifier: Apache-2.0
"""
Slice "hit" metrics for the 3D slice-selection module.

UniMedI selects a few key slices of a CT volume (guided by the report / [CLS] attention). A
selection is a *hit* when at least one selected slice lies within ``tolerance`` slices of a slice
annotated as containing a lesion. These helpers compute the hit rate of a selection and the hit
rate a random selection of the same size would obtain (sampled and exact), which is the baseline
the selection must beat.

The one formula of that baseline is :func:`random_hit_probability` (``1 - C(n - m, k) / C(n, k)``
for ``k`` distinct slices out of ``n``, ``m`` of them within ``tolerance`` of a lesion slice); the
pre-training evaluation (:func:`unimedi_monai.evaluation.evaluate_pretraining`) and the
slice-selection tool (:func:`unimedi_monai.slice_selection.evaluate_slice_selection`) both use it.
A selection that ignores the image can beat random selection when lesions sit at typical depths (the demo's
lesion zones, real nodules' lobes): :func:`position_prior_hit_rate` is the hit rate of the best *fixed*
selection, the same relative slice positions for every volume, chosen on the evaluated volumes themselves
(an upper bound for any position-only selector). Attention that finds lesions must beat it, not only random.
It lives here, in the evaluation layer, the lowest layer that scores a selection: the data layer
only maps slices between grids (:mod:`unimedi_monai.data.slice_grid`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np

__all__ = [
    "slice_hit",
    "slice_hit_rate",
    "near_lesion_mask",
    "random_hit_probability",
    "random_slice_hit_rate",
    "random_hit_probabilities",
    "poisson_binomial_tail",
    "slice_hit_test",
    "position_prior_hit_rate",
]


def _check_tolerance(tolerance: int) -> int:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, np.integer)) or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative integer number of slices, got {tolerance!r}.")
    return int(tolerance)


def _as_int_list(values: Sequence[int], name: str) -> list[int]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must contain integer slice indices, got {v!r}.")
        out.append(int(v))
    return out


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer number of selected slices, got {k!r}.")


def _slices_per_volume(num_slices: int | Sequence[int], n_vol: int) -> list[int]:
    """``num_slices`` (one int for every volume, or one per volume) as one number per volume."""
    if isinstance(num_slices, (int, np.integer)) and not isinstance(num_slices, bool):
        return [int(num_slices)] * n_vol
    slices = _as_int_list(num_slices, "num_slices")
    if len(slices) != n_vol:
        raise ValueError(
            f"num_slices has {len(slices)} entries but lesion_per_volume has {n_vol} volumes; "
            "give one number per volume or a single int."
        )
    return slices


def slice_hit(selected: Sequence[int], lesion_slices: Sequence[int], tolerance: int = 1) -> bool:
    """
    Whether a slice selection hits a lesion.

    Args:
        selected: indices of the selected slices.
        lesion_slices: indices of the slices that contain a lesion.
        tolerance: maximum distance (in slices) between a selected and a lesion slice for a hit;
            ``0`` requires an exact match.

    Returns:
        True if some selected slice ``s`` and lesion slice ``l`` satisfy ``|s - l| <= tolerance``
        (False when either list is empty).
    """
    tolerance = _check_tolerance(tolerance)
    sel = _as_int_list(selected, "selected")
    les = _as_int_list(lesion_slices, "lesion_slices")
    if not sel or not les:
        return False
    les_arr = np.asarray(les)
    return bool(any(np.abs(les_arr - s).min() <= tolerance for s in sel))


def slice_hit_rate(
    selected_per_volume: Sequence[Sequence[int]],
    lesion_per_volume: Sequence[Sequence[int]],
    tolerance: int = 1,
) -> float:
    """
    Fraction of volumes whose selection hits a lesion (see :func:`slice_hit`).

    Volumes with an empty lesion list are skipped (nothing to hit).

    Args:
        selected_per_volume: selected slice indices of each volume.
        lesion_per_volume: lesion slice indices of each volume, same order and length.
        tolerance: hit tolerance in slices.

    Returns:
        hit rate in ``[0, 1]`` over the volumes that have at least one lesion slice.

    Raises:
        ValueError: if the two lists differ in length or no volume has a lesion slice.
    """
    if len(selected_per_volume) != len(lesion_per_volume):
        raise ValueError(
            f"selected_per_volume has {len(selected_per_volume)} volumes but lesion_per_volume has "
            f"{len(lesion_per_volume)}; give one entry per volume in the same order."
        )
    hits = [slice_hit(sel, les, tolerance) for sel, les in zip(selected_per_volume, lesion_per_volume) if len(les) > 0]
    if not hits:
        raise ValueError(
            f"none of the {len(lesion_per_volume)} volumes has a lesion slice, so the slice hit rate is undefined; "
            "evaluate on volumes with lesion annotations."
        )
    return float(np.mean(hits))


def near_lesion_mask(lesion_slices: Sequence[int], num_slices: int, tolerance: int, start: int = 0) -> np.ndarray:
    """Which of the slices ``start .. start + num_slices - 1`` lie within ``tolerance`` of a lesion slice.

    Args:
        lesion_slices: lesion (or nodule centre) slice indices; they may lie outside the scored range.
        num_slices: number of scored slices.
        tolerance: hit tolerance in slices.
        start: index of the first scored slice (a window of a longer volume).

    Returns:
        ``(num_slices,)`` bool.
    """
    les = np.asarray(list(lesion_slices), dtype=np.int64)
    return (np.abs(np.arange(start, start + num_slices)[:, None] - les[None, :]) <= tolerance).any(axis=1)


def random_hit_probability(
    lesion_slices: Sequence[int], num_slices: int, k: int, tolerance: int = 1, start: int = 0
) -> float:
    """Probability that ``k`` distinct slices drawn uniformly from ``start .. start + num_slices - 1`` include
    one within ``tolerance`` of a lesion slice: ``1 - C(n - m, k) / C(n, k)`` (all slices when ``k > n``).

    Args:
        lesion_slices: lesion (or nodule centre) slice indices.
        num_slices: number of slices drawn from (``n``).
        k: number of slices drawn.
        tolerance: hit tolerance in slices.
        start: index of the first slice drawn from.
    """
    m = int(near_lesion_mask(lesion_slices, num_slices, tolerance, start).sum())
    k = min(int(k), int(num_slices))
    return 1.0 - math.comb(num_slices - m, k) / math.comb(num_slices, k)


def _check_lesion_range(lesion: Sequence[int], n: int, volume: int) -> list[int]:
    """The lesion slices of volume ``volume`` as ints, checked to lie in ``[0, n)``."""
    les = _as_int_list(lesion, f"lesion_per_volume[{volume}]")
    if min(les) < 0 or max(les) >= n:
        raise ValueError(
            f"lesion_per_volume[{volume}] has slice indices {min(les)}..{max(les)} outside [0, {n}) "
            f"for a volume of {n} slices; check num_slices or the lesion annotation."
        )
    return les


def random_slice_hit_rate(
    lesion_per_volume: Sequence[Sequence[int]],
    num_slices: int | Sequence[int],
    k: int,
    tolerance: int = 1,
    seed: int = 0,
    trials: int = 100,
) -> dict[str, float]:
    """
    Hit rate of a random selection of ``k`` distinct slices per volume: the chance baseline.

    Volumes with an empty lesion list are skipped, as in :func:`slice_hit_rate`. If a volume has
    fewer than ``k`` slices, all its slices are selected.

    Args:
        lesion_per_volume: lesion slice indices of each volume (indices in ``[0, num_slices)``).
        num_slices: number of slices of every volume, or one number per volume.
        k: number of slices selected per volume.
        tolerance: hit tolerance in slices.
        seed: seed of the random generator used for ``"sampled"``.
        trials: number of random selections drawn per volume.

    Returns:
        dict with

        - ``"sampled"``: mean hit rate over ``trials`` random draws (fixed ``seed``);
        - ``"sampled_sem"``: standard error of that mean across trials;
        - ``"expected"``: exact expectation, the average over volumes of
          ``1 - C(n - m, k) / C(n, k)``, with ``n`` the number of slices and ``m`` the number of
          slices within ``tolerance`` of a lesion slice (hypergeometric probability of selecting
          at least one of them);
        - ``"num_volumes"``: number of volumes used.
    """
    tolerance = _check_tolerance(tolerance)
    _check_k(k)
    if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}.")
    n_vol = len(lesion_per_volume)
    slices = _slices_per_volume(num_slices, n_vol)
    rng = np.random.default_rng(seed)
    expected: list[float] = []
    sampled_hits: list[np.ndarray] = []  # one (trials,) boolean array per volume
    for v, (lesion, n) in enumerate(zip(lesion_per_volume, slices)):
        if len(lesion) == 0:
            continue
        if n < 1:
            raise ValueError(f"num_slices for volume {v} is {n}; volumes need at least one slice.")
        les = _check_lesion_range(lesion, n, v)
        near = near_lesion_mask(les, n, tolerance)
        k_eff = min(int(k), n)
        expected.append(random_hit_probability(les, n, k_eff, tolerance))
        # k distinct slices per trial: the first k of a random permutation of the n slices
        picks = np.argsort(rng.random((trials, n)), axis=1)[:, :k_eff]
        sampled_hits.append(near[picks].any(axis=1))
    if not expected:
        raise ValueError(
            f"none of the {n_vol} volumes has a lesion slice, so the random slice hit rate is undefined; "
            "evaluate on volumes with lesion annotations."
        )
    per_trial = np.stack(sampled_hits, axis=0).mean(axis=0)  # (trials,) hit rate of each draw
    sem = float(per_trial.std(ddof=1) / math.sqrt(trials)) if trials > 1 else float("nan")
    return {
        "sampled": float(per_trial.mean()),
        "sampled_sem": sem,
        "expected": float(np.mean(expected)),
        "num_volumes": len(expected),
    }


def random_hit_probabilities(
    lesion_per_volume: Sequence[Sequence[int]], num_slices: int, k: int, tolerance: int = 1
) -> list[float]:
    """:func:`random_hit_probability` of every volume with a lesion (volumes with an empty lesion list are
    skipped, as in :func:`slice_hit_rate`)."""
    tolerance = _check_tolerance(tolerance)
    out = []
    for v, lesion in enumerate(lesion_per_volume):
        if len(lesion) == 0:
            continue
        out.append(random_hit_probability(_check_lesion_range(lesion, num_slices, v), num_slices, k, tolerance))
    return out


def poisson_binomial_tail(probabilities: Sequence[float], successes: int) -> float:
    """``P(X >= successes)`` for ``X`` the number of successes of independent trials with these probabilities."""
    dist = np.zeros(len(probabilities) + 1)
    dist[0] = 1.0
    for p in probabilities:
        dist[1:] = dist[1:] * (1.0 - p) + dist[:-1] * p
        dist[0] *= 1.0 - p
    return float(min(1.0, max(0.0, dist[int(successes) :].sum())))


def slice_hit_test(
    selected_per_volume: Sequence[Sequence[int]],
    lesion_per_volume: Sequence[Sequence[int]],
    num_slices: int,
    tolerance: int = 1,
) -> dict[str, float]:
    """Hit rate of a selection against random selection of as many slices, with a one-sided p-value.

    Returns:
        ``hit_rate``, ``random_expected`` (exact), ``ratio``, ``p_value`` (probability that random
        selection hits at least as many volumes, Poisson-binomial over the volumes) and ``num_volumes``.
    """
    pairs = [(list(s), list(les)) for s, les in zip(selected_per_volume, lesion_per_volume) if len(les)]
    if not pairs:
        raise ValueError("no volume has a lesion slice; the slice hit test is undefined.")
    hits = sum(slice_hit(s, les, tolerance) for s, les in pairs)
    k = len(pairs[0][0])
    probs = random_hit_probabilities([les for _, les in pairs], num_slices, k, tolerance)
    rate, expected = hits / len(pairs), float(np.mean(probs))
    return {
        "hit_rate": rate,
        "random_expected": expected,
        "ratio": rate / expected if expected > 0 else float("inf"),
        "p_value": poisson_binomial_tail(probs, hits),
        "num_volumes": len(pairs),
    }


def position_prior_hit_rate(
    lesion_per_volume: Sequence[Sequence[int]],
    num_slices: int | Sequence[int],
    k: int = 1,
    tolerance: int = 1,
    max_combinations: int = 100_000,
) -> dict[str, Any]:
    """Hit rate of the best fixed selection of ``k`` slice positions, the same for every volume: the position-only
    baseline a content-driven selection must beat.

    Candidate positions are ``0 .. R - 1`` with ``R`` the largest ``num_slices``; candidate ``i`` selects slice
    ``floor((i + 0.5) * n / R)`` of a volume of ``n`` slices (slice ``i`` itself when every volume has ``R``
    slices). The best set is chosen on these very volumes, so the figure is an upper bound for any selector that
    looks at position only. Exhaustive over all ``C(R, k)`` sets when there are at most ``max_combinations``
    (always for ``k = 1``), otherwise greedy (each added position covers the most volumes not hit yet; then a
    lower bound of the best set, flagged by ``exact: False``). Volumes with an empty lesion list are skipped, as
    in :func:`slice_hit_rate`.

    Args:
        lesion_per_volume: lesion slice indices of each volume (indices in ``[0, num_slices)``).
        num_slices: number of slices of every volume, or one number per volume.
        k: number of fixed positions selected.
        tolerance: hit tolerance in slices.
        max_combinations: above this many candidate sets the greedy search is used.

    Returns:
        dict with ``hit_rate``, ``positions`` (the chosen candidate indices, ascending), ``num_positions``
        (``R``), ``exact`` and ``num_volumes``.

    Raises:
        ValueError: no volume has a lesion, ``k`` is not a positive integer, or ``num_slices`` does not fit.
    """
    tolerance = _check_tolerance(tolerance)
    _check_k(k)
    slices = _slices_per_volume(num_slices, len(lesion_per_volume))
    rows = []
    kept = [(v, les, n) for v, (les, n) in enumerate(zip(lesion_per_volume, slices)) if len(les)]
    if not kept:
        raise ValueError("no volume has a lesion slice; the position-prior hit rate is undefined.")
    r = max(n for _, _, n in kept)
    for v, les, n in kept:
        near = near_lesion_mask(_check_lesion_range(les, n, v), n, tolerance)
        rows.append(near[np.floor((np.arange(r) + 0.5) * n / r).astype(int)])
    covered = np.stack(rows)  # (volumes, R): candidate position i hits volume v
    k_eff = min(int(k), r)
    if math.comb(r, k_eff) <= max_combinations:
        best, best_hits = (), -1
        for combo in combinations(range(r), k_eff):
            hits = int(covered[:, list(combo)].any(axis=1).sum())
            if hits > best_hits:
                best, best_hits = combo, hits
        exact = True
    else:
        chosen: list[int] = []
        hit = np.zeros(covered.shape[0], dtype=bool)
        for _ in range(k_eff):
            gain = (covered & ~hit[:, None]).sum(axis=0)
            gain[chosen] = -1
            chosen.append(int(np.argmax(gain)))
            hit |= covered[:, chosen[-1]]
        best, best_hits, exact = tuple(sorted(chosen)), int(hit.sum()), False
    return {
        "hit_rate": best_hits / covered.shape[0],
        "positions": sorted(int(i) for i in best),
        "num_positions": int(r),
        "exact": exact,
        "num_volumes": int(covered.shape[0]),
    }
