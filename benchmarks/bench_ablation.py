"""Ablation of UniMedI's components on the built-in demo data (same data, steps and seeds per row).

Rows (each a set of ``bundles/pretrain`` overrides on top of the demo defaults):

- ``a``: VL contrastive only (no masking, no self-distillation, evenly spaced CT slices);
- ``b``: + attention-guided masking of the student (A-CLIP);
- ``c``: + L_icl and L_pcl (self-distillation);
- ``d``: + attentive slice selection = full UniMedI (the bundle's default: slices drawn by the teacher's
  attention mass in training, ``slice_selection sampled``; ``-- --slice_selection attention`` for the paper's top-k);
- ``e``: + the slice-report contrastive term ``L_slice`` (each CT's report against the best of its slices
  encoded alone; ``slice_report_weight`` 1.0; off in the default recipe).

Every row pre-trains with ``train.yaml`` for ``--epochs`` epochs (the demo's 24 steps each) and is
evaluated with ``evaluate.yaml`` on the held-out demo evaluation set (generated apart from training,
``--eval-n`` X-rays and CTs); each row runs for every seed of ``--seeds`` (the data stays the same,
the seed changes the initialisation and batch order). Columns: per-modality R@1 (both directions)
against chance, attention slice hit rate against the exact random expectation (and its p-value) and
against the best fixed slice for every CT (the position-only baseline),
cross-modal finding alignment (CT->X-ray, X-ray->CT p@5) against chance, report-guided slice selection
on the held-out CTs (the slice-selection bundle in ``text`` mode, the README demo's protocol) against the
random expectation and the best fixed position, and the [CLS] linear probe against a random-init encoder.
The mean over seeds, with the range over seeds in brackets, is printed as a Markdown table (and ``--json``).

Usage::

    python benchmarks/bench_ablation.py --epochs 18 --seeds 0 1            # the demo's length (slow on CPU)
    python benchmarks/bench_ablation.py --epochs 2 --rows a d --seeds 0    # a quick look
    python benchmarks/bench_ablation.py --rows a d --xray-variation patient --work RUNS_PATIENT   # realistic X-rays
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from common import REPO, run_bundle  # first: puts the checkout on sys.path when the package is not installed

#: rows a-d are the paper's components, so they leave out L_slice (this package's addition, row e)
NO_SLICE_REPORT = ["--slice_report_weight", "0.0"]

ROWS: dict[str, tuple[str, list[str]]] = {
    "a": (
        "VL contrastive only",
        ["--mask_ratio", "0.0", "--icl_weight", "0.0", "--pcl_weight", "0.0", "--slice_selection", "uniform"]
        + NO_SLICE_REPORT,
    ),
    "b": (
        "+ attention-guided masking",
        ["--icl_weight", "0.0", "--pcl_weight", "0.0", "--slice_selection", "uniform"] + NO_SLICE_REPORT,
    ),
    "c": ("+ L_icl and L_pcl", ["--slice_selection", "uniform"] + NO_SLICE_REPORT),
    "d": ("+ attentive slice selection (UniMedI)", NO_SLICE_REPORT),
    "e": ("+ slice-report contrastive L_slice", ["--slice_report_weight", "1.0"]),
}

COLUMNS = (
    ("X-ray i2t R@1", "i2t_R@1_xray", "chance_R@1_xray"),
    ("X-ray t2i R@1", "t2i_R@1_xray", "chance_R@1_xray"),
    ("CT i2t R@1", "i2t_R@1_ct", "chance_R@1_ct"),
    ("CT t2i R@1", "t2i_R@1_ct", "chance_R@1_ct"),
    ("slice hit", "slice_hit_rate", "slice_hit_rate_random"),
    ("slice hit vs fixed slice", "slice_hit_rate", "slice_hit_rate_position_prior"),
    ("slice hit, centred scores", "slice_hit_rate_centred", "slice_hit_rate_random"),
    ("CT->X-ray p@5", "align_ct2xray_p@5", "align_ct2xray_chance"),
    ("X-ray->CT p@5", "align_xray2ct_p@5", "align_xray2ct_chance"),
    ("report-guided slice hit", "text_slice_hit", "text_slice_hit_random"),
    ("report-guided vs fixed slice", "text_slice_hit", "text_slice_hit_position_prior"),
    ("X-ray probe", "probe_acc_xray", "probe_acc_random_xray"),
    ("CT probe", "probe_acc_ct", "probe_acc_random_ct"),
)


def eval_demo(eval_n: int, xray_variation: str) -> str:
    """The held-out evaluation set's generator arguments (as a bundle override value)."""
    args = {"n_xray": eval_n, "n_ct": eval_n, "seed": 1000, "val_fraction": 0.0, "xray_variation": xray_variation}
    return repr(args)


def text_slice_selection(root: Path, eval_n: int, xray_variation: str) -> dict[str, float]:
    """Report-guided slice selection of a run's weights on the held-out CTs, the README demo's protocol: the
    slice-selection bundle in ``text`` mode, each CT's report as the query, the best slice of the whole CT,
    a hit within 3 slices of the lesion; against the exact random expectation and the best fixed position."""
    out = root / "slice_text"
    path = out / "eval" / "metrics.json"
    if not path.is_file():
        run_bundle(
            "slice_selection",
            ["inference.yaml", "evaluate.yaml"],
            out,
            [
                "--model_path",
                str(root / "models" / "model.pt"),
                "--backbone",
                "demo",
                "--demo_dir",
                str(root / "demo_eval_data"),
                "--demo",
                eval_demo(eval_n, xray_variation),
                "--demo_sections",
                "['training']",
                "--mode",
                "text",
                "--top_k",
                "1",
                "--top_fraction",
                "$None",
                "--window_slices",
                "$None",
                "--num_plots",
                "0",
            ],
        )
    m = json.loads(path.read_text())
    return {
        "text_slice_hit": m["accuracy"],
        "text_slice_hit_random": m["accuracy_random_expected"],
        "text_slice_hit_position_prior": m["accuracy_position_prior"],
        "text_slice_p_value": m["p_value_vs_random"],
    }


def run_row(
    row: str,
    seed: int,
    epochs: int,
    work: Path,
    eval_n: int,
    xray_variation: str,
    extra: list[str],
    train_eval: bool = False,
) -> dict[str, float]:
    """Pre-train and evaluate one row with one seed (each stage reused when its output exists); returns its
    metrics.json with the report-guided slice selection's figures added, and with ``train_eval`` the same
    evaluation on training pairs, its keys prefixed ``train_``."""
    root = work / f"{row}_seed{seed}"
    metrics_path = root / "eval" / "metrics.json"
    if not metrics_path.is_file():
        pretrain_row(root, row, seed, epochs, work, eval_n, xray_variation, extra)
    metrics = {**json.loads(metrics_path.read_text()), **text_slice_selection(root, eval_n, xray_variation)}
    if train_eval:
        metrics.update(
            {
                f"train_{k}": v
                for k, v in training_pairs_evaluation(root, row, seed, epochs, eval_n, xray_variation, extra).items()
            }
        )
    return metrics


def training_pairs_evaluation(
    root: Path, row: str, seed: int, epochs: int, eval_n: int, xray_variation: str, extra: list[str]
) -> dict[str, float]:
    """``evaluate.yaml`` of a trained row on the first ``eval_n`` X-rays and ``eval_n`` CTs of its own training
    section (pairs it was trained on), in ``root/eval_train``: held-out figures far below these mean the row
    memorised its training pairs instead of learning what generalises."""
    path = root / "eval_train" / "metrics.json"
    if not path.is_file():
        first = "[x for x in t if x['modality'] == '{}'][:" + str(eval_n) + "]"
        items = (
            f"$(lambda t: {first.format('xray')} + {first.format('ct')})"
            "(unimedi_monai.data.load_datalist(@data_root, @datalist, sections=['training'])['training'])"
        )
        run_bundle(
            "pretrain",
            ["train.yaml", "evaluate.yaml"],
            root,
            row_overrides(row, seed, epochs, xray_variation, extra)
            + ["--eval_items", items, "--eval_dir", str(root / "eval_train")],
        )
    return json.loads(path.read_text())


def row_overrides(row: str, seed: int, epochs: int, xray_variation: str, extra: list[str]) -> list[str]:
    """The bundle overrides of one row and seed (training and evaluation)."""
    return (
        ["--max_epochs", str(epochs), "--mask_warmup_epochs", str(max(epochs // 2, 1)), "--seed", str(seed)]
        + ["--demo#xray_variation", xray_variation]
        + ROWS[row][1]
        + extra
    )


def pretrain_row(
    root: Path, row: str, seed: int, epochs: int, work: Path, eval_n: int, xray_variation: str, extra: list[str]
) -> None:
    """``train.yaml``, then ``evaluate.yaml`` on the held-out set, of one row and seed in ``root``."""
    if (work / "demo_data").is_dir() and not (root / "demo_data").exists():
        root.mkdir(parents=True, exist_ok=True)
        os.symlink(work / "demo_data", root / "demo_data")  # one generated training set for every row
        os.symlink(work / "demo_eval_data", root / "demo_eval_data")
    common = row_overrides(row, seed, epochs, xray_variation, extra)
    run_bundle("pretrain", ["train.yaml"], root, common)
    run_bundle(
        "pretrain",
        ["train.yaml", "evaluate.yaml"],
        root,
        common + ["--eval_demo", eval_demo(eval_n, xray_variation)],
    )
    if not (work / "demo_data").exists():
        os.symlink(root / "demo_data", work / "demo_data")
        os.symlink(root / "demo_eval_data", work / "demo_eval_data")


def table(results: dict[str, list[dict[str, float]]], prefix: str = "") -> str:
    """The Markdown table of ``results`` (mean over seeds, baseline, range over seeds); ``prefix`` selects the
    keys of another evaluation (``train_``: the training pairs)."""
    columns = [(name, prefix + key, prefix + base) for name, key, base in COLUMNS if not prefix or "text_" not in key]
    head = "| row | " + " | ".join(c[0] for c in columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 1)]
    for row, runs in results.items():
        cells = []
        for _, key, base in columns:
            vals = [r[key] for r in runs if key in r]
            bases = [r[base] for r in runs if base in r]
            if not vals:
                cells.append("n/a")
                continue
            v, b = sum(vals) / len(vals), sum(bases) / max(len(bases), 1)
            spread = f" [{min(vals):.3f}-{max(vals):.3f}]" if len(vals) > 1 else ""
            cells.append(f"{v:.3f} ({b:.3f}){spread}")
        lines.append(f"| {row}: {ROWS[row][0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=18, help="pre-training epochs per row (the demo: 18 x 24 steps)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--eval-n", type=int, default=128, help="X-rays and CTs of the held-out evaluation set")
    p.add_argument(
        "--xray-variation",
        choices=("template", "patient"),
        default="template",
        help="the demo X-rays' per-patient variation (training and held-out sets; one --work folder per value)",
    )
    p.add_argument(
        "--work", type=Path, default=REPO / "benchmarks" / "ablation_runs", help="run folders (reused when complete)"
    )
    p.add_argument(
        "--train-eval",
        action="store_true",
        help="also evaluate every row on --eval-n X-rays and CTs of its training pairs (the generalisation gap)",
    )
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("overrides", nargs="*", help="extra bundle overrides for every row, e.g. --batch_size 8 (after --)")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, float]]] = {}
    start = time.time()
    for row in args.rows:
        for seed in args.seeds:
            t = time.time()
            results.setdefault(row, []).append(
                run_row(
                    row, seed, args.epochs, args.work, args.eval_n, args.xray_variation, args.overrides, args.train_eval
                )
            )
            print(f"[ablation] row {row} seed {seed}: {time.time() - t:.0f} s", flush=True)
    print(
        f"\n{args.epochs} epochs x 24 steps, demo X-rays `{args.xray_variation}`, seeds {args.seeds}, "
        "mean over seeds [min-max over seeds]; value "
        f"(baseline: chance, random selection, the best fixed slice or random-init probe); "
        f"{time.time() - start:.0f} s in all\n"
    )
    print(table(results))
    if args.train_eval:
        print(
            f"\nThe same evaluation on the first {args.eval_n} X-rays and {args.eval_n} CTs (or all there are) of "
            "each row's training pairs:\n"
        )
        print(table(results, prefix="train_"))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
