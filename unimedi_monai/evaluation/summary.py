# SPDX-License-Identifier: Apache-2.0
"""Print the headline figures of a pre-training evaluation next to their chance levels.

python -m unimedi_monai.evaluation.summary bundles/pretrain/eval/metrics.json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from unimedi_monai.json_files import read_json_object

__all__ = ["summarize", "main"]

#: (label, metric key, baseline key, target): the target is a ratio ``value / baseline`` (a float),
#: ``("+", d)``: ``value - baseline >= d``, ``("<", p)``: ``value < p`` (no baseline), or None (shown only)
ROWS: tuple[tuple[str, str, str | None, Any], ...] = (
    ("image -> report R@1", "i2t_R@1", "chance_R@1", 3.0),
    ("report -> image R@1", "t2i_R@1", "chance_R@1", 3.0),
    ("image -> report R@5", "i2t_R@5", "chance_R@5", None),
    ("report -> image R@5", "t2i_R@5", "chance_R@5", None),
    ("X-ray i2t R@1", "i2t_R@1_xray", "chance_R@1_xray", 3.0),
    ("X-ray t2i R@1", "t2i_R@1_xray", "chance_R@1_xray", 3.0),
    ("CT i2t R@1", "i2t_R@1_ct", "chance_R@1_ct", 3.0),
    ("CT t2i R@1", "t2i_R@1_ct", "chance_R@1_ct", 3.0),
    ("CT slice hit rate", "slice_hit_rate", "slice_hit_rate_random", 2.0),
    ("slice hit p-value", "slice_hit_p_value", None, ("<", 0.01)),
    ("slice hit vs position", "slice_hit_rate", "slice_hit_rate_position_prior", 1.0),
    ("slice hit, centred", "slice_hit_rate_centred", "slice_hit_rate_random", None),
    ("centred hit p-value", "slice_hit_p_value_centred", None, None),
    ("CT->X-ray finding p@5", "align_ct2xray_p@5", "align_ct2xray_chance", 2.0),
    ("X-ray->CT finding p@5", "align_xray2ct_p@5", "align_xray2ct_chance", 2.0),
    ("X-ray [CLS] probe acc", "probe_acc_xray", "probe_acc_random_xray", ("+", 0.15)),
    ("CT [CLS] probe acc", "probe_acc_ct", "probe_acc_random_ct", ("+", 0.15)),
)


def summarize(metrics: Mapping[str, float]) -> tuple[str, bool]:
    """A table of metric, value, baseline, ratio and target; and whether every target is met."""
    lines = [f"{'metric':<24}{'value':>8}{'baseline':>10}{'ratio':>8}  target", "-" * 66]
    ok = True
    for label, key, base_key, target in ROWS:
        if key not in metrics:
            continue
        value = float(metrics[key])
        base = float(metrics.get(base_key, float("nan"))) if base_key else float("nan")
        ratio = value / base if base > 0 else float("inf")
        verdict = ""
        if isinstance(target, tuple) and target[0] == "+":
            met = value - base >= target[1]
            verdict = f">= +{target[1]:.2f} over baseline {'met' if met else 'NOT met'}"
        elif isinstance(target, tuple) and target[0] == "<":
            met = value < target[1]
            verdict = f"< {target[1]:g} {'met' if met else 'NOT met'}"
        elif target is not None:
            met = ratio >= target
            verdict = f">= {target:.1f}x {'met' if met else 'NOT met'}"
        else:
            met = True
        ok &= bool(met)
        shown_base = f"{base:>10.3f}" if base_key else f"{'':>10}"
        shown_ratio = f"{ratio:>7.2f}x" if base_key else f"{'':>8}"
        shown_value = f"{value:>8.3f}" if abs(value) >= 1e-3 or value == 0 else f"{value:>8.1e}"
        lines.append(f"{label:<24}{shown_value}{shown_base}{shown_ratio}  {verdict}")
    return "\n".join(lines), ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", type=Path, help="metrics.json written by evaluate.yaml")
    args = parser.parse_args(argv)
    if not args.metrics.is_file():
        print(f"error: {args.metrics} does not exist; run the evaluation first.", file=sys.stderr)
        return 1
    table, ok = summarize(read_json_object(args.metrics, "metrics file"))
    print(table)
    print("all targets met" if ok else "some targets not met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
