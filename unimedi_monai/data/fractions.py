# SPDX-License-Identifier: Apache-2.0
"""Label fractions: the 1% / 10% / 100% (classification) and 20% / 40% / 100% (segmentation) subsets.

Downstream protocols train on a fraction of the labelled training split, drawn once with a fixed
seed so that runs with different encoders see the same images. :func:`select_fraction` draws that
subset, stratified by class when a label is given so that every class keeps at least one example.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np


def _label_of(item: Mapping, index: int, label: str | Callable[[Mapping], Hashable]) -> Hashable:
    if callable(label):
        return label(item)
    if label not in item:
        raise ValueError(f"select_fraction: entry {index} has no '{label}' key; add it or pass another stratify key.")
    value = item[label]
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(np.asarray(value).ravel().tolist())  # multi-label rows stratify by their label pattern
    return value


def fraction_count(n: int, fraction: float) -> int:
    """How many of ``n`` items a fraction keeps: ``round(fraction * n)``, at least 1 when ``n > 0``."""
    return 0 if n == 0 else min(n, max(1, int(round(float(fraction) * n))))


def select_fraction(
    items: Sequence[Any],
    fraction: float,
    seed: int = 0,
    stratify: str | Callable[[Mapping], Hashable] | None = None,
) -> list[Any]:
    """Deterministic subset holding ``fraction`` of ``items``, optionally stratified by class.

    Without ``stratify`` the subset has :func:`fraction_count` ``(len(items), fraction)`` items. With
    ``stratify`` (an item key or a function of the item) each class ``c`` keeps
    ``fraction_count(n_c, fraction)`` items, so every class present in ``items`` is present in the
    subset. The draw depends only on ``seed``, ``fraction`` and the items' order; the subset keeps
    the input order. Subsets of a smaller fraction are not guaranteed to nest in larger ones.

    Args:
        items: the training items (datalist dictionaries or any objects when ``stratify`` is None).
        fraction: the share to keep, in ``(0, 1]``; ``1.0`` returns a copy of ``items``.
        seed: seed of the draw (``numpy.random.default_rng``).
        stratify: the item key holding the class label, or a function returning a hashable label.

    Returns:
        the selected items in their input order.

    Raises:
        ValueError: when ``fraction`` is outside ``(0, 1]`` or an item lacks the ``stratify`` key.

    Example::

        train_10pct = select_fraction(train, 0.1, seed=42, stratify="label")
    """
    fraction = float(fraction)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"data_pct / label fraction must be in (0, 1], got {fraction}.")
    if fraction == 1.0:
        return list(items)
    rng = np.random.default_rng(seed)
    if stratify is None:
        groups = {None: list(range(len(items)))}
    else:
        groups = {}
        for index, item in enumerate(items):
            groups.setdefault(_label_of(item, index, stratify), []).append(index)
    keep: list[int] = []
    for key in sorted(groups, key=lambda k: (type(k).__name__, str(k))):
        members = groups[key]
        chosen = rng.permutation(len(members))[: fraction_count(len(members), fraction)]
        keep.extend(members[i] for i in chosen)
    return [items[i] for i in sorted(keep)]
