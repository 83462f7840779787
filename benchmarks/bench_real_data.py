"""Real-data check of the pre-training recipe on the shared COVID-19 chest X-ray set with clinical notes.

Data: ``../shared/data/covid_cxr_notes`` (or ``$UNIMEDI_SHARED_DATA/covid_cxr_notes``): 201 training
and 61 validation X-ray / note pairs (split by patient) and the same images in the COVIDx layout.

1. Pre-train ``bundles/pretrain`` with the CPU-sized ``demo`` preset on ``datalist.json`` for
   ``--epochs`` epochs, then evaluate on its validation pairs: image->report and report->image
   R@5 against chance (target: at least 1.5x).
2. Linear probe of the COVIDx classes (``bundles/covidx_classification``, ``mode: linear_probe``,
   [CLS] features) from that encoder and from a random-init encoder of the same size: macro AUC
   on its test split (target: pre-trained above random init).

Usage::

    python benchmarks/bench_real_data.py --epochs 18          # prints a Markdown row per check
    python benchmarks/bench_real_data.py --epochs 2 --work /tmp/real   # a quick look

Exits with a message (code 0) when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from common import REPO, run_bundle  # first: puts the checkout on sys.path when the package is not installed


def data_dir() -> Path:
    base = Path(os.environ.get("UNIMEDI_SHARED_DATA", REPO.parent / "shared" / "data"))
    return base / "covid_cxr_notes"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=18)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--work", type=Path, default=REPO / "benchmarks" / "ablation_runs" / "real_data")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    data = data_dir()
    if not (data / "datalist.json").is_file():
        print(f"skipped: {data} not found (set UNIMEDI_SHARED_DATA to the shared data folder)")
        return 0
    start = time.time()
    pre = args.work / "pretrain"
    common = [
        "--dataset_dir",
        str(data),
        "--backbone",
        "demo",
        "--batch_size",
        str(args.batch_size),
        "--max_epochs",
        str(args.epochs),
        "--lr",
        "5e-4",
        "--teacher_momentum",
        "0.99",
        "--teacher_momentum_end",
        "0.996",
        "--mask_warmup_epochs",
        str(max(args.epochs // 2, 1)),
        "--num_workers",
        "0",
    ]
    if not (pre / "eval" / "metrics.json").is_file():
        run_bundle("pretrain", ["train.yaml"], pre, common)
        run_bundle("pretrain", ["train.yaml", "evaluate.yaml"], pre, common + ["--eval_probe", "false"])
    m = json.loads((pre / "eval" / "metrics.json").read_text())
    rows = {
        "pretrain_val": {
            k: m[k] for k in ("i2t_R@5", "t2i_R@5", "chance_R@5", "i2t_R@1", "t2i_R@1", "chance_R@1") if k in m
        }
    }
    probe = {}
    for init in ("pretrained", "random"):
        root = args.work / f"covidx_{init}"
        if not (root / "eval" / "metrics.json").is_file():
            run_bundle(
                "covidx_classification",
                ["train.yaml"],
                root,
                [
                    "--dataset_dir",
                    str(data / "covidx"),
                    "--backbone",
                    "demo",
                    "--init",
                    init,
                    "--pretrained_path",
                    str(pre / "models" / "model.pt"),
                    "--num_workers",
                    "0",
                ],
            )
        probe[init] = json.loads((root / "eval" / "metrics.json").read_text())
    rows["covidx_probe_auc"] = {init: probe[init].get("auc") for init in probe}
    v = rows["pretrain_val"]
    print(f"\n{args.epochs} epochs, demo preset, {time.time() - start:.0f} s\n")
    print("| check | value | baseline | ratio / difference | target |\n|---|---|---|---|---|")
    for d in ("i2t", "t2i"):
        ratio = v[f"{d}_R@5"] / v["chance_R@5"]
        print(
            f"| validation {d} R@5 | {v[f'{d}_R@5']:.3f} | chance {v['chance_R@5']:.3f} | {ratio:.2f}x | >= 1.5x "
            f"{'met' if ratio >= 1.5 else 'NOT met'} |"
        )
    a, b = rows["covidx_probe_auc"]["pretrained"], rows["covidx_probe_auc"]["random"]
    print(
        f"| COVIDx probe macro AUC | {a:.3f} | random init {b:.3f} | {a - b:+.3f} | > 0 "
        f"{'met' if a > b else 'NOT met'} |"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
