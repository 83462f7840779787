"""Benchmark the shared transformer backbone against MONAI's ``ViT`` blocks.

Two measurements, in one process, on the same inputs, with warm-up iterations first and the
median of several timed repeats (variants are interleaved within each repeat so that drift of the
machine affects them alike):

1. **Training step** (forward + backward) of ``SharedBackbone`` against the transformer blocks and
   final norm of ``monai.networks.nets.ViT`` of the same size, same ``qkv_bias``, with and without
   ``save_attn=True`` (what a naive attentive selection reading ``att_mat`` would use), and against
   MONAI ``TransformerBlock``s built with ``use_flash_attention=True`` (``ViT`` does not expose that
   switch). Patch embedding is excluded on both sides: ``SharedBackbone`` gets ``(B, L - 1, hidden)``
   tokens and prepends its [CLS]; the MONAI blocks get the same ``(B, L, hidden)`` sequence.
   All MONAI models are loaded with our weights, and their outputs are checked to match ours, so
   every variant does the same work.
2. **Teacher forward** (``eval``, ``torch.no_grad``) with [CLS]-attention extraction
   (``cls_attention="last"`` / ``"all"``) against the same forward without it, plus MONAI's forward
   and MONAI's ``save_attn`` forward with the [CLS] rows read from ``att_mat`` for context.

Sequence lengths: 197 (196 X-ray patches + [CLS]), 513 (512 CT patches + [CLS]) and 769
(512 + 4 slices x 64 + [CLS]).

Targets: training step ours/MONAI <= 1.0 on CPU; teacher forward with [CLS] attention / without <= 1.05.

Usage::

    python benchmarks/bench_backbone.py                      # full CPU run (ViT-B and ViT-S)
    python benchmarks/bench_backbone.py --quick              # smoke run: ViT-S, 197 and 513 tokens
    python benchmarks/bench_backbone.py --device cuda --dtype bfloat16 --json results.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from common import (  # noqa: F401  (re-exported: the comparison pieces used to live here)
    EQUIVALENCE_ATOL,
    SIZE_LABELS,
    Timer,
    Variants,
    bench_length,
    build_comparison,
    build_monai_blocks,
    check_equivalence,
    copy_weights,
    cpu_name,
    cuda_missing,
    format_table,
    load_average,
    monai_cls_attention,
    monai_forward,
)

DEFAULT_TOKENS = (197, 513, 769)
QUICK_TOKENS = (197, 513)
TRAIN_TARGET = 1.0
TEACHER_TARGET = 1.05


def bench_size(
    preset: str, lengths: Sequence[int], args: argparse.Namespace, device: torch.device
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
    """Run both benchmarks for one backbone size at every sequence length.

    Args:
        preset: backbone preset name.
        lengths: sequence lengths including [CLS].
        args: parsed command-line options (batch, warmup, repeats, dtype, compile).
        device: where to run.

    Returns:
        ``(train_rows, teacher_rows, max_abs_diff)``.
    """
    ours, monai_models = build_comparison(preset, device)
    if args.compile:  # every variant, ours and MONAI's alike, so the comparison stays fair
        for m in [ours, *monai_models.values()]:
            m.compile()
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    train_rows, teacher_rows = [], []
    worst = 0.0
    for length in lengths:
        t_row, f_row, diff = bench_length(
            ours, monai_models, preset, length, args.batch, args.warmup, args.repeats, dtype
        )
        worst = max(worst, diff)
        train_rows.append(t_row)
        teacher_rows.append(f_row)
        print(
            f"  {t_row['size']} L={length}: train ours/MONAI {t_row['ratio_ours_monai']:.3f}, "
            f"teacher last/none {f_row['ratio_last_none']:.3f} all/none {f_row['ratio_all_none']:.3f}",
            flush=True,
        )
    return train_rows, teacher_rows, worst


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; defaults for batch, warm-up and repeats depend on the device."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "fp32", "bf16"],
        default="float32",
        help="bfloat16 (bf16) uses autocast",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile every variant (ours and MONAI's)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 2 on CPU, 32 on CUDA)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5 on CPU, 20 on CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up iterations (default 2 on CPU, 5 on CUDA)")
    parser.add_argument("--sizes", nargs="+", default=["base", "small"], help="backbone presets (default: base small)")
    parser.add_argument("--tokens", nargs="+", type=int, default=None, help="sequence lengths incl. [CLS]")
    parser.add_argument("--quick", action="store_true", help="smoke run: ViT-S at 197 and 513 tokens, 2 repeats")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the results to this JSON file")
    args = parser.parse_args(argv)
    gpu = args.device == "cuda"
    if args.quick:
        args.sizes = ["small"]
        args.tokens = args.tokens or list(QUICK_TOKENS)
        args.repeats = args.repeats or 2
        args.warmup = args.warmup if args.warmup is not None else 1
    args.tokens = args.tokens or list(DEFAULT_TOKENS)
    args.batch = args.batch or (32 if gpu else 2)
    args.repeats = args.repeats or (20 if gpu else 5)
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 2)
    args.dtype = {"bf16": "bfloat16", "fp32": "float32"}.get(args.dtype, args.dtype)
    for name in ("batch", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}.")
    if min(args.tokens) < 2:
        parser.error(f"--tokens values must be >= 2 ([CLS] + at least one patch), got {min(args.tokens)}.")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}.")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the tables and optionally write JSON; returns the exit status."""
    args = parse_args(argv)
    if cuda_missing(args.device):
        return 2
    from unimedi_monai.networks.presets import resolve_backbone_config

    for preset in args.sizes:
        try:
            resolve_backbone_config(preset)
        except ValueError as err:
            print(f"error: --sizes: {err}", file=sys.stderr)
            return 2
    import monai

    device = torch.device(args.device)
    meta: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "batch": args.batch,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "sizes": args.sizes,
        "tokens": args.tokens,
    }
    print(
        f"device: {args.device} ({meta['device']})  torch {meta['torch']}  monai {meta['monai']}  "
        f"threads {meta['threads']}  dtype {args.dtype}  batch {args.batch}  "
        f"warmup {args.warmup}  repeats {args.repeats}",
        flush=True,
    )
    load = load_average()
    meta["load_average_start"] = load
    if load is not None and device.type == "cpu" and load > 0.5:
        print(
            f"warning: 1-minute load average is {load:.2f} on {os.cpu_count()} cores before the run: other processes "
            "compete for the CPU and the timings will be noisy; rerun on an idle machine for figures to report.",
            flush=True,
        )
    start, cpu_start = time.perf_counter(), time.process_time()
    train_rows: list[dict[str, Any]] = []
    teacher_rows: list[dict[str, Any]] = []
    worst = 0.0
    for preset in args.sizes:
        t_rows, f_rows, diff = bench_size(preset, args.tokens, args, device)
        train_rows += t_rows
        teacher_rows += f_rows
        worst = max(worst, diff)
    meta["max_abs_diff_vs_monai"] = worst
    meta["load_average_end"] = load_average()
    meta["elapsed_s"] = time.perf_counter() - start
    # CPU seconds this process got per wall second and thread: well below 1 means it was starved.
    meta["cpu_utilisation"] = (time.process_time() - cpu_start) / (meta["elapsed_s"] * meta["threads"])

    print(f"\nMONAI blocks loaded with our weights; max |ours - MONAI| (fp32 outputs) = {worst:.2e}")
    print(f"\n1. Backbone forward+backward, median ms ({args.dtype}; target ours/MONAI <= {TRAIN_TARGET})\n")
    print(
        format_table(
            [
                "size",
                "tokens",
                "batch",
                "ours ms",
                "MONAI ms",
                "MONAI(save_attn) ms",
                "MONAI(flash) ms",
                "ours/MONAI",
                "ours/MONAI(flash)",
            ],
            [
                [
                    r["size"],
                    r["tokens"],
                    r["batch"],
                    r["ours_ms"],
                    r["monai_ms"],
                    r["monai_save_attn_ms"],
                    r["monai_flash_ms"],
                    r["ratio_ours_monai"],
                    r["ratio_ours_monai_flash"],
                ]
                for r in train_rows
            ],
        )
    )
    print(
        f"\n2. Teacher forward (eval, no grad), median ms (target with/without [CLS] attention <= {TEACHER_TARGET})\n"
    )
    print(
        format_table(
            [
                "size",
                "tokens",
                "batch",
                "ours ms",
                "ours+last ms",
                "ours+all ms",
                "last/none",
                "all/none",
                "MONAI ms",
                "MONAI(save_attn)+CLS ms",
            ],
            [
                [
                    r["size"],
                    r["tokens"],
                    r["batch"],
                    r["ours_ms"],
                    r["ours_last_ms"],
                    r["ours_all_ms"],
                    r["ratio_last_none"],
                    r["ratio_all_none"],
                    r["monai_ms"],
                    r["monai_save_attn_cls_ms"],
                ]
                for r in teacher_rows
            ],
        )
    )
    missed = [
        f"train {r['size']} L={r['tokens']} ({r['ratio_ours_monai']:.3f})"
        for r in train_rows
        if r["ratio_ours_monai"] > TRAIN_TARGET
    ]
    missed += [
        f"teacher {r['size']} L={r['tokens']} {k} ({r[f'ratio_{k}_none']:.3f})"
        for r in teacher_rows
        for k in ("last", "all")
        if r[f"ratio_{k}_none"] > TEACHER_TARGET
    ]
    print(f"\ntargets missed: {', '.join(missed) if missed else 'none'}")
    print(f"elapsed {meta['elapsed_s']:.0f} s, CPU utilisation {meta['cpu_utilisation']:.2f} per thread")
    if device.type == "cpu" and meta["cpu_utilisation"] < 0.85:
        print("warning: the process got much less CPU than its threads could use: the machine was shared.")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "train": train_rows, "teacher": teacher_rows}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
