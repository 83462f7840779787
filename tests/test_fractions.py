"""Label fractions: counts per class, determinism, stratification and errors."""

from __future__ import annotations

from collections import Counter

import pytest

from unimedi_monai.data.fractions import fraction_count, select_fraction


def _items(counts: dict[str, int]) -> list[dict]:
    return [{"image": f"{label}_{i}.png", "label": label} for label, n in counts.items() for i in range(n)]


@pytest.mark.parametrize("fraction", [0.01, 0.1, 1.0])
def test_stratified_fraction_counts_per_class(fraction):
    items = _items({"normal": 800, "pneumonia": 150, "covid": 50})
    subset = select_fraction(items, fraction, seed=3, stratify="label")
    counts = Counter(item["label"] for item in subset)
    for label, n in {"normal": 800, "pneumonia": 150, "covid": 50}.items():
        assert counts[label] == fraction_count(n, fraction)  # 1% of 50 still keeps one COVID image
    assert counts["covid"] >= 1 and len({i["image"] for i in subset}) == len(subset)


def test_fraction_is_deterministic_and_seed_dependent():
    items = _items({"a": 100, "b": 100})
    first = select_fraction(items, 0.1, seed=0, stratify="label")
    assert first == select_fraction(items, 0.1, seed=0, stratify="label")
    assert first != select_fraction(items, 0.1, seed=1, stratify="label")
    assert [items.index(i) for i in first] == sorted(items.index(i) for i in first)  # input order kept


def test_unstratified_and_multilabel():
    assert len(select_fraction(list(range(1000)), 0.2, seed=0)) == 200
    rows = [{"labels": [i % 2, 0, 1]} for i in range(40)]
    subset = select_fraction(rows, 0.1, seed=0, stratify="labels")
    assert Counter(tuple(r["labels"]) for r in subset) == {(0, 0, 1): 2, (1, 0, 1): 2}


def test_fraction_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        select_fraction([1, 2], 0.0)
    with pytest.raises(ValueError, match="entry 1 has no 'label'"):
        select_fraction([{"label": 0}, {"image": "x.png"}], 0.5, stratify="label")
