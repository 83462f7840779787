"""Benchmark one full UniMedI pre-training step against the machine's measured matmul rate.

One step is what ``UniMedITrainer`` does per iteration, on a mixed batch (by default 8 X-rays 224x224
and 2 CTs 128x128x32 with their reports) already transformed and cached, as a cached dataset yields it:

``collate_mixed`` of the samples -> ``zero_grad`` -> ``UniMedI.forward`` (EMA-teacher passes with
[CLS] attention, attentive slice selection, attention-guided masking, masked student, the real
MiniLM report encoder, projection and distillation heads, L_vl + L_icl + L_pcl) -> ``backward`` ->
gradient clipping -> AdamW step -> EMA teacher update.

Reported per preset: step time (median of interleaved repeats), samples/s, the matmul FLOPs of one
step, the achieved FLOP/s and its fraction of the same device's measured GEMM rate (a 3072x3072
fp32 matmul on CPU, bf16 on GPU), timed in the same run, interleaved with the steps.

FLOP counting rules (``torch.utils.flop_counter.FlopCounterMode`` over one whole step): every
matrix product of the forward and backward passes, at 2 FLOPs per multiply-add: linear layers
(``mm``/``addmm``/``bmm``), convolutions (patch stems, forward and backward), and scaled-dot-product
attention (``q k^T`` and ``p v``, forward and backward; torch's formulas, also applied to the CPU flash kernels).
That covers the student (forward + backward), the teacher (forward only, no backward), the text encoder (forward;
backward of the layers that are trainable, all of MiniLM by default) and the heads. Element-wise work (GELU,
LayerNorm, softmax, masking, AdamW, EMA) is not counted: it is the overhead the fraction measures.

Targets: at least 0.70 of the fp32 GEMM rate on a 2-core CPU; at least 0.35 bf16 MFU on a GPU.

Usage::

    python benchmarks/bench_pretrain_step.py                          # ViT-B and demo presets, CPU
    python benchmarks/bench_pretrain_step.py --presets demo --repeats 3
    python benchmarks/bench_pretrain_step.py --profile                # also print the op profile of one step
    python benchmarks/bench_pretrain_step.py --device cuda --dtype bfloat16 --xray 64 --ct 16 --compile
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from common import (  # noqa: F401  (re-exported: the step pieces used to live here)
    GEMM_N,
    REPORTS,
    Timer,
    build_step,
    count_step_flops,
    cpu_name,
    cuda_missing,
    format_table,
    gemm_fn,
    load_average,
    make_samples,
    profile_step,
)

CPU_TARGET = 0.70
GPU_TARGET = 0.35


def bench_preset(preset: str, args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Time one preset's training step against the GEMM rate, interleaved; returns a result row."""
    ct_size = tuple(args.ct_size)
    samples = make_samples(args.xray, args.ct, ct_size)
    t0 = time.perf_counter()
    step, model, phases = build_step(preset, samples, device, dtype, args.compile, args.fused_adamw, ct_size)
    build_s = time.perf_counter() - t0
    timer = Timer(device)
    gemm, gemm_flops = gemm_fn(device, dtype, n=args.gemm_size)
    losses = [step() for _ in range(args.warmup)]
    gemm()
    flops, per_op = count_step_flops(step)
    step_ms: list[float] = []
    gemm_ms: list[float] = []
    for values in phases.values():
        values.clear()
    for _ in range(args.repeats):
        gemm_ms.append(timer(gemm))
        holder: list[float] = []
        step_ms.append(timer(lambda holder=holder, step=step: holder.append(step())))
        losses += holder
    med_step = statistics.median(step_ms)
    med_gemm = statistics.median(gemm_ms)
    gemm_rate = gemm_flops / (med_gemm / 1000.0)
    achieved = flops / (med_step / 1000.0)
    row: dict[str, Any] = {
        "preset": preset,
        "xray": args.xray,
        "ct": args.ct,
        "params_M": round(sum(q.numel() for q in model.parameters()) / 1e6, 1),
        "build_s": round(build_s, 1),
        "step_ms": med_step,
        "samples_per_s": (args.xray + args.ct) / (med_step / 1000.0),
        "gflop_per_step": flops / 1e9,
        "achieved_gflops": achieved / 1e9,
        "gemm_gflops": gemm_rate / 1e9,
        "fraction_of_gemm": achieved / gemm_rate,
        "per_op_gflop": {k: v / 1e9 for k, v in per_op.items()},
        "phase_ms": {k: statistics.median(v[-args.repeats :]) for k, v in phases.items()},
        "step_ms_all": [round(t, 1) for t in step_ms],
        "gemm_ms_all": [round(t, 2) for t in gemm_ms],
        "losses": [round(v, 4) for v in losses],
    }
    if args.profile:
        row["profile"] = profile_step(step)
    return row


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["base", "demo"], help="backbone presets to time")
    parser.add_argument("--xray", type=int, default=8, help="X-rays per batch (224x224)")
    parser.add_argument("--ct", type=int, default=2, help="CT volumes per batch (128x128x32)")
    parser.add_argument("--ct-size", type=int, nargs=3, default=[128, 128, 32], help="CT size H W D")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "bfloat16", "fp32", "bf16"],
        help="autocast dtype; default float32 on CPU, bfloat16 on CUDA",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the student and teacher backbones")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 1 CPU, 5 CUDA)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps (default 3 CPU, 20 CUDA)")
    parser.add_argument("--gemm-size", type=int, default=GEMM_N, help="n of the n x n GEMM baseline (3072)")
    parser.add_argument("--fused-adamw", action="store_true", help="AdamW(fused=True) instead of torch's default")
    parser.add_argument("--profile", action="store_true", help="print the op profile of one more step")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="write medians and raw timings here")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    args.dtype = {"bf16": "bfloat16", "fp32": "float32"}.get(args.dtype, args.dtype) or (
        "bfloat16" if cuda else "float32"
    )
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    args.repeats = args.repeats if args.repeats is not None else (20 if cuda else 3)
    if args.xray < 0 or args.ct < 0 or args.xray + args.ct == 0:
        parser.error("--xray and --ct must be >= 0 and not both 0")
    if args.repeats < 1 or args.warmup < 1:
        parser.error("--repeats and --warmup must be >= 1 (the first step allocates optimiser state)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table (and profiles), optionally write JSON; returns the exit status."""
    args = parse_args(argv)
    if cuda_missing(args.device):
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "compile": args.compile,
        "fused_adamw": args.fused_adamw,
        "batch": {"xray": args.xray, "ct": args.ct},
        "warmup": args.warmup,
        "repeats": args.repeats,
        "load_average_start": load_average(),
    }
    print(
        f"device: {args.device} ({meta['device']})  torch {meta['torch']}  threads {meta['threads']}  "
        f"dtype {args.dtype}  compile {args.compile}  batch {args.xray} X-rays + {args.ct} CTs  "
        f"warmup {args.warmup}  repeats {args.repeats}  load {meta['load_average_start']}",
        flush=True,
    )
    if device.type == "cpu" and (meta["load_average_start"] or 0.0) > 0.5:
        print(
            f"warning: 1-minute load average {meta['load_average_start']} on {os.cpu_count()} cores: "
            "other processes compete for the CPU; both the steps and the GEMM baseline will be slowed.",
            flush=True,
        )
    start, cpu_start = time.perf_counter(), time.process_time()
    rows = []
    for preset in args.presets:
        row = bench_preset(preset, args, device, dtype)
        rows.append(row)
        print(f"  {preset}: step {row['step_ms']:.0f} ms, {row['fraction_of_gemm']:.3f} of GEMM", flush=True)
    meta["elapsed_s"] = time.perf_counter() - start
    meta["cpu_utilisation"] = (time.process_time() - cpu_start) / (meta["elapsed_s"] * meta["threads"])
    meta["load_average_end"] = load_average()
    target = GPU_TARGET if device.type == "cuda" else CPU_TARGET
    gemm_label = "bf16" if device.type == "cuda" and dtype == torch.bfloat16 else "fp32"
    print(
        f"\n3. Pre-training step ({args.xray} X-rays 224^2 + {args.ct} CTs {'x'.join(map(str, args.ct_size))}, "
        f"{args.dtype}); "
        f"baseline: {args.gemm_size}x{args.gemm_size} {gemm_label} GEMM in the same run; target >= {target}\n"
    )
    print(
        format_table(
            [
                "preset",
                "params M",
                "step ms",
                "samples/s",
                "GFLOP/step",
                "achieved GFLOP/s",
                "GEMM GFLOP/s",
                "fraction of GEMM",
            ],
            [
                [
                    r["preset"],
                    f"{r['params_M']}",
                    r["step_ms"],
                    r["samples_per_s"],
                    r["gflop_per_step"],
                    r["achieved_gflops"],
                    r["gemm_gflops"],
                    r["fraction_of_gemm"],
                ]
                for r in rows
            ],
        )
    )
    for r in rows:
        print(
            f"\n{r['preset']}: median ms per part of the step: "
            + ", ".join(f"{k} {v:.0f}" for k, v in r["phase_ms"].items())
        )
        print(
            f"{r['preset']}: matmul GFLOP of one step by op: "
            + ", ".join(f"{k} {v:.1f}" for k, v in r["per_op_gflop"].items())
        )
        if "profile" in r:
            prof = r["profile"]
            print(
                f"{r['preset']}: profile of one step: {prof['total_ms']:.0f} ms of aten self time, "
                f"{prof['matmul_ms']:.0f} ms ({prof['matmul_ms'] / max(prof['total_ms'], 1e-9):.0%}) in matrix "
                f"products, {prof['other_ms']:.0f} ms elsewhere; top ops:"
            )
            print(format_table(["op", "self ms", "calls"], [list(t) for t in prof["top"]]))
    missed = [f"{r['preset']} ({r['fraction_of_gemm']:.3f})" for r in rows if r["fraction_of_gemm"] < target]
    print(f"\ntargets missed: {', '.join(missed) if missed else 'none'}")
    print(
        f"elapsed {meta['elapsed_s']:.0f} s, CPU utilisation {meta['cpu_utilisation']:.2f} per thread, "
        f"load {meta['load_average_start']} -> {meta['load_average_end']}"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
