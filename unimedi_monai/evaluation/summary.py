"""Print the headline figures of a pre-training evaluation next to their chance levels.

    python -m unimedi_monai.evaluation.summary bundles/pretrain/eval/metrics.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ["summarize", "main"]

ROWS = (
    ("image -> report R@1", "i2t_R@1", "chance_R@1", 3.0),
    ("report -> image R@1", "t2i_R@1", "chance_R@1", 3.0),
    ("image -> report R@5", "i2t_R@5", "chance_R@5", None),
    ("report -> image R@5", "t2i_R@5", "chance_R@5", None),
    ("CT slice hit rate", "slice_hit_rate", "slice_hit_rate_random", 1.5),
)


def summarize(metrics: Mapping[str, float]) -> tuple[str, bool]:
    """A table of metric, value, baseline, ratio and target; and whether every target is met."""
    lines = [f"{'metric':<22}{'value':>8}{'baseline':>10}{'ratio':>8}  target", "-" * 60]
    ok = True
    for label, key, base_key, target in ROWS:
        if key not in metrics:
            continue
        value, base = float(metrics[key]), float(metrics.get(base_key, float("nan")))
        ratio = value / base if base > 0 else float("inf")
        verdict = ""
        if target is not None:
            met = ratio >= target
            ok &= met
            verdict = f">= {target:.1f}x {'met' if met else 'NOT met'}"
        lines.append(f"{label:<22}{value:>8.3f}{base:>10.3f}{ratio:>7.2f}x  {verdict}")
    return "\n".join(lines), ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", type=Path, help="metrics.json written by evaluate.yaml")
    args = parser.parse_args(argv)
    if not args.metrics.is_file():
        print(f"error: {args.metrics} does not exist; run the evaluation first.", file=sys.stderr)
        return 1
    table, ok = summarize(json.loads(args.metrics.read_text(encoding="utf-8")))
    print(table)
    print("all targets met" if ok else "some targets not met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
