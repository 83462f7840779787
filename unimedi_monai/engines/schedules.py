# SPDX-License-Identifier: Apache-2.0
"""Per-iteration schedules, precomputed as arrays (as DINO's ``cosine_scheduler``)."""

from __future__ import annotations

import numpy as np

__all__ = ["cosine_schedule"]


def cosine_schedule(
    base_value: float,
    final_value: float,
    total_iterations: int,
    warmup_iterations: int = 0,
    warmup_start_value: float = 0.0,
) -> np.ndarray:
    """Linear warm-up from ``warmup_start_value`` to ``base_value``, then cosine to ``final_value``.

    Args:
        base_value: value at the end of warm-up.
        final_value: value at the last iteration.
        total_iterations: length of the schedule (one value per optimiser step).
        warmup_iterations: warm-up length (clipped to ``total_iterations``).
        warmup_start_value: value at iteration 0 when warming up.

    Returns:
        ``(total_iterations,)`` float64 array.
    """
    if total_iterations < 1:
        raise ValueError(f"a schedule needs at least one iteration, got total_iterations={total_iterations}.")
    warmup_iterations = int(min(max(warmup_iterations, 0), total_iterations))
    warmup = (
        np.linspace(warmup_start_value, base_value, warmup_iterations, endpoint=False)
        if warmup_iterations
        else np.array([])
    )
    steps = np.arange(total_iterations - warmup_iterations)
    denom = max(len(steps) - 1, 1)
    cosine = final_value + 0.5 * (base_value - final_value) * (1.0 + np.cos(np.pi * steps / denom))
    return np.concatenate([warmup, cosine]).astype(np.float64)
