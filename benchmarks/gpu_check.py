"""GPU check: bf16 speed of the backbone, MFU of the pre-training step, the data pipeline's rate, and whether
the paper's configuration learns, in one script that fits in 8 minutes on one H200.

Sections (``--sections 1,2,3,4``; each records its wall time and a status: ``ok``, ``partial`` (a time cap
cut it short or a part failed; what was measured is kept), ``failed`` (the error is recorded) or ``skipped``):

1. **Backbone** (ViT-B, bf16 autocast, forward + backward, batch 32) at 197 / 513 / 769 tokens: our
   ``SharedBackbone`` against ``monai.networks.nets.ViT`` carrying the same weights (outputs checked to match),
   its plain path and its ``save_attn=True`` path (what [CLS] attention needs from MONAI; no flash attention
   there), and MONAI blocks with flash attention; the teacher forward with and without our [CLS]-attention
   extraction; then the same with ``torch.compile`` (compile time reported apart). Targets: at least 1.5x
   faster than MONAI's ``save_attn`` path, no slower than its plain path, [CLS]-attention extraction < 5%.
2. **Pre-training step** (batch 64, ``ct_fraction`` 0.25 from the bundle: 48 X-rays 224^2 + 16 CTs
   128x128x32) of the network the pre-training bundle builds (``network_def`` of
   ``bundles/pretrain/configs/train.yaml``, backbone ``base``), with the MiniLM default report encoder and with
   a BERT-base-shaped (768 wide, 12 layers) randomly initialised one: samples/s, peak GPU memory, MFU against
   the H200's dense bf16 peak (``--peak-tflops``, 989) and against a bf16 GEMM timed in the same run (the
   practical limit); below 35% MFU the top ops of a profiled step (by GPU time) are listed.
3. **Data pipeline**: the bundle's own dataset, sampler and collate (``train#dataset``, ``train#sampler``,
   ``train#dataloader`` of ``train.yaml`` pointed at a generated folder) on synthetic X-ray PNGs and JPEGs of
   2500x2048 px and CT ``.nii.gz`` of 512x512x300 (resampled to 128x128x32 by the bundle's transforms):
   decoded + transformed samples/s per ``num_workers`` and per cache mode, against section 2's step rate,
   with one plain sentence saying which limits a run and which setting removes the limit.
4. **Learning**: ``python -m monai.bundle run`` of the pre-training bundle (train.yaml + evaluate.yaml) with
   ``--backbone base`` (ViT-B/16, linear patch stem) on the built-in demo data for a time budget (about
   2.5 minutes of training), then the bundle's evaluation: retrieval R@1 per modality against chance, the
   attention slice hit rate against random selection, and the loss curves (``s4_training_curves.png``).

``--smoke`` runs every code path at tiny sizes on the CPU in about a minute (fp32; ``torch.compile`` with the
``eager`` backend, which traces with dynamo but generates no kernels).

Outputs in ``--out DIR``: ``gpu_check.json`` (rewritten atomically after every section, so a run killed by a
timeout keeps what it measured) and ``gpu_check.md`` (a table per section, ratios against the baselines
measured in the same run), ``s4_training_curves.png``.

Usage::

    python benchmarks/gpu_check.py --out gpu_check_out                # CUDA, all sections, 480 s budget
    python benchmarks/gpu_check.py --smoke --out /tmp/gpu_check       # CPU, tiny sizes
    python benchmarks/gpu_check.py --sections 1,2 --budget-s 200 --out out
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import multiprocessing
import os
import queue
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import (
    REPO,
    Deadline,
    Timer,
    bench_length,
    build_comparison,
    build_step,
    bundle_command,
    bundle_env,
    count_step_flops,
    cuda_missing,
    format_table,
    gemm_fn,
    load_average,
    machine_meta,
    make_samples,
    profile_step,
    write_json_results,
    write_text_atomic,
)

BUNDLE = REPO / "bundles" / "pretrain"
TRAIN_YAML = BUNDLE / "configs" / "train.yaml"
EVAL_YAML = BUNDLE / "configs" / "evaluate.yaml"
# NVIDIA H200 (SXM) data sheet: 1,979 TFLOP/s bf16 Tensor Core *with* 2:4 sparsity, i.e. 989 dense.
H200_BF16_DENSE_TFLOPS = 989.0
SECTIONS = {1: "backbone", 2: "pretrain_step", 3: "data_pipeline", 4: "learning"}
# share of --budget-s each section may use at most (the rest of the run's time is the hard limit)
SHARES = {1: 0.21, 2: 0.17, 3: 0.17, 4: 0.40}
SPEEDUP_SAVE_ATTN_TARGET = 1.5
PLAIN_RATIO_TARGET = 1.0
CLS_COST_TARGET = 1.05
MFU_TARGET = 0.35

PLANS: dict[str, dict[str, Any]] = {
    "gpu": {
        "s1": {
            "preset": "base",
            "tokens": [197, 513, 769],
            "compile_tokens": [769, 197, 513],
            "batch": 32,
            "warmup": 3,
            "repeats": 10,
            "compile_backend": "inductor",
        },
        "s2": {
            "preset": "base",
            "batch": 64,
            "ct_size": [128, 128, 32],
            "warmup": 3,
            "repeats": 10,
            "gemm_n": 8192,
            "bert": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
        },
        "s3": {
            "xray_px": [2500, 2048],
            "ct_shape": [512, 512, 300],
            "n_png": 4,
            "n_jpeg": 4,
            "n_ct_files": 2,
            "xray_items": 192,
            "ct_items": 64,
            "workers": [0, 4, 8, 16],
            "batch": 8,
            "window_s": 6.0,
            "batch_timeout_s": 25.0,
        },
        "s4": {
            "backbone": "base",
            "demo": {"n_xray": 240, "n_ct": 120, "seed": 0},
            "batch_size": None,
            "num_workers": 4,
            "overhead_s": 55.0,
            "default_step_s": 0.25,
        },
    },
    "smoke": {
        "s1": {
            "preset": "tiny",
            "tokens": [17, 33, 65],
            "compile_tokens": [17],
            "batch": 2,
            "warmup": 1,
            "repeats": 2,
            "compile_backend": "eager",
        },
        "s2": {
            "preset": "tiny",
            "batch": 4,
            "ct_size": [32, 32, 16],
            "warmup": 1,
            "repeats": 2,
            "gemm_n": 256,
            "bert": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128},
        },
        "s3": {
            "xray_px": [320, 256],
            "ct_shape": [64, 64, 40],
            "n_png": 1,
            "n_jpeg": 1,
            "n_ct_files": 1,
            "xray_items": 6,
            "ct_items": 2,
            "workers": [0, 1],
            "batch": 4,
            "window_s": 1.0,
            "batch_timeout_s": 60.0,
        },
        "s4": {
            "backbone": "tiny",
            "demo": {"n_xray": 16, "n_ct": 8, "seed": 0},
            "batch_size": 8,
            "num_workers": 0,
            "overhead_s": 40.0,
            "default_step_s": 0.5,
            "max_epochs": 1,
        },
    },
}


# ------------------------------------------------------------------------------------------ results


class Results:
    """The run's results: one JSON and one Markdown file, rewritten atomically after every section.

    Args:
        out: the output folder.
        meta: machine and run facts.
    """

    def __init__(self, out: Path, meta: dict[str, Any]) -> None:
        self.out = out
        self.json_path = out / "gpu_check.json"
        self.md_path = out / "gpu_check.md"
        self.data: dict[str, Any] = {"meta": meta, "sections": {}}
        self.md: dict[str, str] = {}

    def set(self, key: str, section: dict[str, Any], md: str) -> None:
        self.data["sections"][key] = section
        self.md[key] = md
        self.write()

    def write(self) -> None:
        self.data["meta"]["elapsed_s"] = round(time.perf_counter() - self.data["meta"]["_t0"], 1)
        data = {**self.data, "meta": {k: v for k, v in self.data["meta"].items() if not k.startswith("_")}}
        write_json_results(data, self.json_path)
        meta = data["meta"]
        head = [
            "# GPU check",
            "",
            f"- Date: {meta['date']}; device: {meta['device']} ({meta['device_type']}); torch {meta['torch']}"
            f" (CUDA {meta['cuda']}), MONAI {meta['monai']}, Python {meta['python']}; {meta['cpu_count']} CPU cores",
            f"- Command: `{meta['command']}`",
            f"- Mode: {'smoke (tiny sizes, CPU)' if meta['smoke'] else 'full'}; budget {meta['budget_s']:.0f} s, "
            f"elapsed {meta['elapsed_s']:.0f} s; dtype {meta['dtype']}",
            "",
        ]
        status = [
            [SECTIONS[i], s.get("status", "?"), f"{s.get('wall_s', 0.0):.1f}", s.get("note", "")]
            for i in sorted(SECTIONS)
            if (s := data["sections"].get(SECTIONS[i]))
        ]
        head += [format_table(["section", "status", "wall s", "note"], status), ""]
        body = [self.md[SECTIONS[i]] for i in sorted(SECTIONS) if SECTIONS[i] in self.md]
        write_text_atomic("\n".join(head + body) + "\n", self.md_path)


def run_section(
    results: Results,
    number: int,
    selected: Sequence[int],
    deadline: Deadline,
    budget_s: float,
    fn: Callable[[Deadline], tuple[dict[str, Any], str]],
) -> dict[str, Any]:
    """Run one section under its time cap; record it (also when it fails or is skipped)."""
    key = SECTIONS[number]
    title = f"## {number}. {key.replace('_', ' ')}\n"
    if number not in selected:
        section = {"status": "skipped", "note": "not selected (--sections)", "wall_s": 0.0}
        results.set(key, section, f"{title}\nskipped: not selected.\n")
        return section
    if deadline.left < 5:
        section = {"status": "skipped", "note": f"no time left of the {budget_s:.0f} s budget", "wall_s": 0.0}
        results.set(key, section, f"{title}\nskipped: no time left of the budget.\n")
        return section
    cap = deadline.sub(SHARES[number] * budget_s if number != max(selected) else deadline.left)
    print(f"\n== section {number} ({key}): up to {cap.seconds:.0f} s", flush=True)
    t0 = time.perf_counter()
    try:
        section, md = fn(cap)
    except Exception as err:  # recorded, and the next sections still run
        section = {
            "status": "failed",
            "error": f"{type(err).__name__}: {err}",
            "traceback": traceback.format_exc(),
            "note": f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}",
        }
        first = str(err).splitlines()[0] if str(err) else ""
        md = f"failed: `{type(err).__name__}: {first[:300]}`\n\n```\n{section['traceback'][-3000:]}\n```\n"
        print(section["traceback"], file=sys.stderr, flush=True)
    section["wall_s"] = round(time.perf_counter() - t0, 1)
    section["cap_s"] = round(cap.seconds, 1)
    section.setdefault("note", "")
    results.set(key, section, f"{title}\n{md}")
    print(f"== section {number}: {section['status']} in {section['wall_s']:.0f} s", flush=True)
    return section


def autocast_words(dtype: torch.dtype) -> str:
    return "float32 (no autocast)" if dtype == torch.float32 else f"{str(dtype).replace('torch.', '')} autocast"


def met(flag: bool) -> str:
    return "met" if flag else "NOT met"


# ------------------------------------------------------------------------------ 1. backbone


def section_backbone(
    cap: Deadline, plan: dict[str, Any], device: torch.device, dtype: torch.dtype, compile_scope: str = "blocks"
) -> tuple[dict, str]:
    """Ours against MONAI ``ViT`` (plain, ``save_attn``, flash) eager, then compiled; targets per length."""
    ours, monai_models = build_comparison(plan["preset"], device)
    rows: dict[str, list] = {"train": [], "teacher": [], "train_compiled": [], "teacher_compiled": []}
    notes, worst = [], 0.0
    eager_cap = cap.sub(0.4 * cap.seconds)
    for length in plan["tokens"]:
        if eager_cap.expired():
            notes.append(f"eager: time cap reached before {length} tokens")
            break
        t_row, f_row, diff = bench_length(
            ours, monai_models, plan["preset"], length, plan["batch"], plan["warmup"], plan["repeats"], dtype
        )
        worst = max(worst, diff)
        rows["train"].append(t_row)
        rows["teacher"].append(f_row)
        print(
            f"  eager L={length}: ours {t_row['ours_ms']:.1f} ms, MONAI {t_row['monai_ms']:.1f}, "
            f"save_attn {t_row['monai_save_attn_ms']:.1f}; [CLS] last/none {f_row['ratio_last_none']:.3f}",
            flush=True,
        )
    compile_info: dict[str, Any] = {"backend": plan["compile_backend"], "scope": compile_scope}
    # lengths x train/eval x [CLS] modes recompile the shared block code more often than dynamo's default limit
    # of 8 allows (past it, calls fall back to eager without a word)
    for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit", "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(
                torch._dynamo.config,
                name,
                max(getattr(torch._dynamo.config, name), 64 if "accumulated" not in name else 512),
            )
    try:
        for m in [ours, monai_models["plain"], monai_models["save_attn"]]:
            # "blocks": each transformer block compiled (PyTorch's regional compilation: the identical blocks share
            # one compiled graph, so compiling takes seconds, not minutes); "model": the whole module
            for part in m.blocks if compile_scope == "blocks" else [m]:
                part.compile(backend=plan["compile_backend"])
        for length in plan["compile_tokens"]:
            if cap.expired():
                notes.append(f"compile: time cap reached before {length} tokens")
                break
            t_row, f_row, _ = bench_length(
                ours,
                monai_models,
                plan["preset"],
                length,
                plan["batch"],
                max(plan["warmup"], 2),
                plan["repeats"],
                dtype,
                train_variants=("ours", "monai", "monai_save_attn"),
                teacher_variants=("ours", "ours_last", "monai_save_attn_cls"),
                check=False,
            )
            for row in (t_row, f_row):  # first call = compilation + one call; the median call is the rest
                row["compile_s"] = {
                    k: round(max(0.0, v - row[f"{k}_ms"]) / 1000.0, 2) for k, v in row["first_ms"].items()
                }
            rows["train_compiled"].append(t_row)
            rows["teacher_compiled"].append(f_row)
            print(
                f"  compiled L={length}: ours {t_row['ours_ms']:.1f} ms (compile {t_row['compile_s']['ours']:.1f} s)",
                flush=True,
            )
    except Exception as err:  # eager figures stay; the compile failure is recorded
        compile_info["error"] = f"{type(err).__name__}: {str(err)[:2000]}"
        notes.append(f"torch.compile failed: {type(err).__name__}")
    finally:
        torch._dynamo.reset()
    targets = []
    for mode, train_key, teacher_key in (
        ("eager", "train", "teacher"),
        ("compiled", "train_compiled", "teacher_compiled"),
    ):
        for t_row, f_row in zip(rows[train_key], rows[teacher_key]):
            L = t_row["tokens"]
            targets += [
                {
                    "mode": mode,
                    "tokens": L,
                    "target": f">= {SPEEDUP_SAVE_ATTN_TARGET}x faster than MONAI save_attn",
                    "value": t_row["speedup_vs_monai_save_attn"],
                    "met": t_row["speedup_vs_monai_save_attn"] >= SPEEDUP_SAVE_ATTN_TARGET,
                },
                {
                    "mode": mode,
                    "tokens": L,
                    "target": f"ours/MONAI plain <= {PLAIN_RATIO_TARGET}",
                    "value": t_row["ratio_ours_monai"],
                    "met": t_row["ratio_ours_monai"] <= PLAIN_RATIO_TARGET,
                },
                {
                    "mode": mode,
                    "tokens": L,
                    "target": f"[CLS] attention (last) / none <= {CLS_COST_TARGET}",
                    "value": f_row["ratio_last_none"],
                    "met": f_row["ratio_last_none"] <= CLS_COST_TARGET,
                },
            ]
    complete = (
        len(rows["train"]) == len(plan["tokens"])
        and len(rows["train_compiled"]) == len(plan["compile_tokens"])
        and "error" not in compile_info
    )
    section = {
        "status": "ok" if complete else "partial",
        "note": "; ".join(notes),
        "preset": plan["preset"],
        "batch": plan["batch"],
        "dtype": str(dtype).replace("torch.", ""),
        "max_abs_diff_vs_monai": worst,
        "compile": compile_info,
        "targets": targets,
        **rows,
    }
    md = [
        f"Preset `{plan['preset']}`, batch {plan['batch']}, {autocast_words(dtype)}, median of "
        f"{plan['repeats']} interleaved repeats after {plan['warmup']} warm-ups; MONAI models carry our weights "
        f"(max |diff| of fp32 outputs {worst:.1e}).",
        "",
        "Forward + backward, ms (ratios against MONAI measured in the same run):",
        "",
    ]
    hdr = [
        "mode",
        "tokens",
        "ours ms",
        "MONAI ms",
        "MONAI save_attn ms",
        "MONAI flash ms",
        "ours/MONAI",
        "speed-up vs save_attn",
        "ours/MONAI flash",
    ]
    table = []
    for mode, key in (("eager", "train"), ("compiled", "train_compiled")):
        for r in rows[key]:
            table.append(
                [
                    mode,
                    r["tokens"],
                    r["ours_ms"],
                    r["monai_ms"],
                    r["monai_save_attn_ms"],
                    r.get("monai_flash_ms", "-"),
                    r["ratio_ours_monai"],
                    r["speedup_vs_monai_save_attn"],
                    r.get("ratio_ours_monai_flash", "-"),
                ]
            )
    md += [format_table(hdr, table), "", "Teacher forward (eval, no grad), ms:", ""]
    table = []
    for mode, key in (("eager", "teacher"), ("compiled", "teacher_compiled")):
        for r in rows[key]:
            table.append(
                [
                    mode,
                    r["tokens"],
                    r["ours_ms"],
                    r["ours_last_ms"],
                    r.get("ours_all_ms", "-"),
                    r["ratio_last_none"],
                    r.get("ratio_all_none", "-"),
                    r.get("monai_ms", "-"),
                    r["monai_save_attn_cls_ms"],
                ]
            )
    md += [
        format_table(
            [
                "mode",
                "tokens",
                "ours ms",
                "ours+[CLS] last ms",
                "ours+[CLS] all ms",
                "last/none",
                "all/none",
                "MONAI ms",
                "MONAI save_attn+[CLS] ms",
            ],
            table,
        ),
        "",
    ]
    if rows["train_compiled"]:
        md += [
            f"Compile time (`torch.compile`, backend `{plan['compile_backend']}`, "
            f"{'each transformer block (regional compilation)' if compile_scope == 'blocks' else 'whole model'}), "
            "s, first call minus a steady call:",
            "",
            format_table(
                ["tokens", "ours", "MONAI", "MONAI save_attn"],
                [
                    [r["tokens"], r["compile_s"]["ours"], r["compile_s"]["monai"], r["compile_s"]["monai_save_attn"]]
                    for r in rows["train_compiled"]
                ],
            ),
            "",
        ]
    if "error" in compile_info:
        md += [f"torch.compile failed: `{compile_info['error'][:300]}`", ""]
    md += [
        "Targets:",
        "",
        format_table(
            ["mode", "tokens", "target", "value", "result"],
            [[t["mode"], t["tokens"], t["target"], t["value"], met(t["met"])] for t in targets],
        ),
        "",
    ]
    return section, "\n".join(md)


# ------------------------------------------------------------------------- 2. pre-training step


def bundle_parser(overrides: dict[str, Any], files: Sequence[Path] = (TRAIN_YAML,)) -> Any:
    """The pre-training bundle's config (``train.yaml``) with overrides, as ``monai.bundle run`` reads it."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    parser.read_meta(str(BUNDLE / "configs" / "metadata.json"))
    parser.update(overrides)
    return parser


def write_bert_folder(folder: Path, shape: dict[str, int]) -> Path:
    """A randomly initialised BERT-shaped report encoder saved as a local model folder (MiniLM's tokenizer)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from unimedi_monai.networks.text_encoder import default_text_model_path

    tok = AutoTokenizer.from_pretrained(str(default_text_model_path()), local_files_only=True)
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(tok), max_position_embeddings=512, **shape))
    tok.save_pretrained(str(folder))
    model.save_pretrained(str(folder))
    return folder


def bench_step_variant(
    name: str,
    text_model: str | None,
    plan: dict[str, Any],
    cap: Deadline,
    device: torch.device,
    dtype: torch.dtype,
    peak_tflops: float | None,
    profile: str,
) -> dict[str, Any]:
    """One full pre-training step of the bundle's network with one report encoder, against the GEMM rate."""
    base = bundle_parser({})
    ct_fraction = float(base.get_parsed_content("ct_fraction"))
    n_ct = min(plan["batch"] - 1, max(1, round(plan["batch"] * ct_fraction)))  # as MixedBatchSampler composes
    n_xray = plan["batch"] - n_ct
    parser = bundle_parser(
        {"backbone": plan["preset"], "text_model": text_model, "network_def#ct_size": plan["ct_size"]}
    )
    t0 = time.perf_counter()
    net = parser.get_parsed_content("network_def").to(device)
    fused = bool(parser.get_parsed_content("optimizer#fused")) if "fused" in parser["optimizer"] else False
    samples = make_samples(n_xray, n_ct, plan["ct_size"])
    step, model, phases = build_step(plan["preset"], samples, device, dtype, False, fused, plan["ct_size"], model=net)
    build_s = time.perf_counter() - t0
    gemm, gemm_flops = gemm_fn(device, dtype, n=plan["gemm_n"])
    timer = Timer(device)
    losses = [step() for _ in range(plan["warmup"])]
    gemm()
    flops, per_op = count_step_flops(step)
    for values in phases.values():
        values.clear()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    step_ms: list[float] = []
    gemm_ms: list[float] = []
    for i in range(plan["repeats"]):
        if i > 0 and cap.left < 2.0 * (step_ms[-1] / 1000.0) + 5.0:
            break
        gemm_ms.append(timer(gemm))
        holder: list[float] = []
        step_ms.append(timer(lambda holder=holder, step=step: holder.append(step())))
        losses += holder
    if device.type == "cuda":
        peak_gib, peak_source = torch.cuda.max_memory_allocated(device) / 2**30, "torch.cuda.max_memory_allocated"
    else:
        import resource

        peak_gib, peak_source = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "process max RSS (CPU)"
    med_step, med_gemm = statistics.median(step_ms), statistics.median(gemm_ms)
    achieved = flops / (med_step / 1000.0)
    gemm_rate = gemm_flops / (med_gemm / 1000.0)
    peak = peak_tflops * 1e12 if peak_tflops else gemm_rate
    row: dict[str, Any] = {
        "text_encoder": name,
        "text_model": text_model or "MiniLM-L6 (default)",
        "text_hidden": int(model.text_encoder.hidden_size),
        "trainable_text_layers": parser.get_parsed_content("text_trainable_layers"),
        "preset": plan["preset"],
        "xray": n_xray,
        "ct": n_ct,
        "fused_adamw": fused,
        "params_M": round(sum(q.numel() for q in model.parameters()) / 1e6, 1),
        "build_s": round(build_s, 1),
        "step_ms": med_step,
        "samples_per_s": plan["batch"] / (med_step / 1000.0),
        "tflop_per_step": flops / 1e12,
        "achieved_tflops": achieved / 1e12,
        "gemm_tflops": gemm_rate / 1e12,
        "peak_tflops": peak / 1e12,
        "mfu": achieved / peak,
        "fraction_of_gemm": achieved / gemm_rate,
        "peak_memory_gib": peak_gib,
        "peak_memory_source": peak_source,
        "phase_ms": {k: statistics.median(v) if v else float("nan") for k, v in phases.items()},
        "per_op_tflop": {k: v / 1e12 for k, v in per_op.items()},
        "step_ms_all": [round(t, 2) for t in step_ms],
        "gemm_ms_all": [round(t, 3) for t in gemm_ms],
        "repeats_done": len(step_ms),
        "losses": [round(v, 4) for v in losses],
        "losses_finite": all(math.isfinite(v) for v in losses),
    }
    if profile == "always" or (profile == "auto" and row["mfu"] < MFU_TARGET):
        row["profile"] = profile_step(step, top=15)
    del step, model, net
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def section_step(
    cap: Deadline,
    plan: dict[str, Any],
    device: torch.device,
    dtype: torch.dtype,
    peak_tflops: float | None,
    profile: str,
    workdir: Path,
) -> tuple[dict, str]:
    """The full step with the MiniLM default and with a BERT-base-shaped random-init report encoder."""
    bert_dir = write_bert_folder(workdir / "bert_base_random", plan["bert"])
    variants = [("minilm", None), ("bert_base_shaped_random", str(bert_dir))]
    rows, notes = [], []
    for i, (name, text_model) in enumerate(variants):
        if i > 0 and cap.left < 0.3 * cap.seconds:
            notes.append(f"time cap reached before {name}")
            break
        rows.append(
            bench_step_variant(
                name, text_model, plan, cap.sub(cap.left / (len(variants) - i)), device, dtype, peak_tflops, profile
            )
        )
        r = rows[-1]
        print(
            f"  {name}: {r['samples_per_s']:.1f} samples/s, MFU {r['mfu']:.3f}, {r['fraction_of_gemm']:.3f} of GEMM, "
            f"peak {r['peak_memory_gib']:.1f} GiB",
            flush=True,
        )
    peak_note = (
        f"{peak_tflops:.0f} TFLOP/s" + (" (H200 dense bf16 spec)" if peak_tflops == H200_BF16_DENSE_TFLOPS else "")
        if peak_tflops
        else "none given for this device: the measured GEMM rate stands in"
    )
    section = {
        "status": "ok" if len(rows) == len(variants) else "partial",
        "note": "; ".join(notes),
        "peak_tflops_used": peak_tflops,
        "peak_source": peak_note,
        "rows": rows,
        "targets": [
            {
                "text_encoder": r["text_encoder"],
                "target": f"MFU >= {MFU_TARGET}",
                "value": r["mfu"],
                "met": r["mfu"] >= MFU_TARGET,
            }
            for r in rows
        ],
    }
    md = [
        f"Batch {plan['batch']} ({rows[0]['xray'] if rows else '?'} X-rays 224^2 + {rows[0]['ct'] if rows else '?'} "
        f"CTs {'x'.join(map(str, plan['ct_size']))}), the bundle's network (`network_def`, backbone "
        f"`{plan['preset']}`), "
        f"AdamW as the bundle builds it, {autocast_words(dtype)}. Peak used for MFU: "
        f"{peak_note}; practical limit: a {plan['gemm_n']}^2 GEMM timed between the steps. FLOPs: every matrix "
        "product of the step (forward, backward, teacher passes, report encoder), from FlopCounterMode.",
        "",
    ]
    md.append(
        format_table(
            [
                "text encoder",
                "params M",
                "step ms",
                "samples/s",
                "TFLOP/step",
                "achieved TFLOP/s",
                "GEMM TFLOP/s",
                "MFU (of peak)",
                "of GEMM",
                "peak mem GiB",
                f"MFU >= {MFU_TARGET}",
            ],
            [
                [
                    r["text_encoder"],
                    r["params_M"],
                    r["step_ms"],
                    r["samples_per_s"],
                    r["tflop_per_step"],
                    r["achieved_tflops"],
                    r["gemm_tflops"],
                    r["mfu"],
                    r["fraction_of_gemm"],
                    r["peak_memory_gib"],
                    met(r["mfu"] >= MFU_TARGET),
                ]
                for r in rows
            ],
        )
    )
    md.append("")
    for r in rows:
        md.append(
            f"{r['text_encoder']}: median ms per part: " + ", ".join(f"{k} {v:.1f}" for k, v in r["phase_ms"].items())
        )
        if "profile" in r:
            prof = r["profile"]
            md += [
                "",
                f"{r['text_encoder']}: profile of one step, top 15 aten ops by self "
                f"{'CUDA' if device.type == 'cuda' else 'CPU'} time ({prof['total_ms']:.1f} ms in all, "
                f"{prof['matmul_ms']:.1f} ms in matrix products):",
                "",
                format_table(["op", "self ms", "calls"], [list(t) for t in prof["top"]]),
            ]
        md.append("")
    return section, "\n".join(md)


# --------------------------------------------------------------------------- 3. data pipeline


def synthetic_xray(shape: Sequence[int], seed: int) -> np.ndarray:
    """A chest-X-ray-like 8-bit picture: smooth anatomy-scale structure plus film grain (not compressible to
    nothing)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = int(shape[0]), int(shape[1])
    coarse = Image.fromarray((rng.random((24, 20)) * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    y, x = np.mgrid[0:h, 0:w]
    body = 1.0 - (((x - w / 2) / (0.45 * w)) ** 2 + ((y - h / 2) / (0.55 * h)) ** 2)
    img = 0.5 * np.asarray(coarse, np.float32) + 120.0 * np.clip(body, 0, 1) + rng.normal(0, 6, (h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


def generate_pipeline_data(root: str, plan: dict[str, Any]) -> dict[str, Any]:
    """Write the X-ray PNGs / JPEGs and CT ``.nii.gz`` files and a ``datalist.json`` listing them (run in a
    background process at the start, so that the files are ready when section 3 begins)."""
    from bench_ct_preprocessing import write_volume  # a sibling script: this folder is on sys.path (see common.py)
    from PIL import Image

    from unimedi_monai.data import write_datalist

    t0 = time.perf_counter()
    folder = Path(root)
    (folder / "xray").mkdir(parents=True, exist_ok=True)
    (folder / "ct").mkdir(parents=True, exist_ok=True)
    files: dict[str, list[str]] = {"png": [], "jpeg": [], "ct": []}
    for i in range(plan["n_png"] + plan["n_jpeg"]):
        kind = "png" if i < plan["n_png"] else "jpeg"
        path = folder / "xray" / f"xr_{i:03d}.{'png' if kind == 'png' else 'jpg'}"
        picture = Image.fromarray(synthetic_xray(plan["xray_px"], seed=i))
        picture.save(path, **({"format": "PNG"} if kind == "png" else {"format": "JPEG", "quality": 95}))
        files[kind].append(path.name)
    first = folder / "ct" / "ct_000.nii.gz"
    write_volume(first, plan["ct_shape"], (0.7, 0.7, 1.0))
    files["ct"].append(first.name)
    for i in range(1, plan["n_ct_files"]):  # copies: decoding cost is the same, writing one took the time
        shutil.copyfile(first, folder / "ct" / f"ct_{i:03d}.nii.gz")
        files["ct"].append(f"ct_{i:03d}.nii.gz")
    reports = (
        "Heart size is normal. The lungs are clear.",
        "Small nodule in the right upper lobe. No effusion.",
        "Patchy opacity at the left lung base.",
        "Mild cardiomegaly. Small bilateral pleural effusions.",
    )
    xrays = [f"xray/{n}" for n in files["png"] + files["jpeg"]]
    items = [
        {"image": xrays[i % len(xrays)], "report": reports[i % 4], "modality": "xray", "case": f"x{i}"}
        for i in range(plan["xray_items"])
    ]
    items += [
        {
            "image": f"ct/{files['ct'][i % len(files['ct'])]}",
            "report": reports[i % 4],
            "modality": "ct",
            "case": f"c{i}",
        }
        for i in range(plan["ct_items"])
    ]
    write_datalist(folder / "datalist.json", {"training": items})
    sizes = {k: [os.path.getsize(folder / ("xray" if k != "ct" else "ct") / n) for n in v] for k, v in files.items()}
    return {
        "seconds": time.perf_counter() - t0,
        "files": files,
        "mean_file_mb": {k: float(np.mean(v)) / 1e6 for k, v in sizes.items() if v},
    }


def _generate_worker(root: str, plan: dict[str, Any], queue: Any) -> None:
    try:
        queue.put(generate_pipeline_data(root, plan))
    except BaseException as err:  # reported to the parent, which records it
        queue.put({"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()})


def measure_loader(
    loader: Any, sampler: Any, window_s: float, workers: int, max_batches: int | None = None
) -> dict[str, Any]:
    """Samples/s a data loader delivers over about ``window_s`` seconds (epochs repeated as needed), or over
    ``max_batches`` batches when that comes first.

    Every pass starts a new epoch of the ``MixedBatchSampler`` (``set_epoch``, as the trainer does), so a pass
    cut short by an earlier measurement does not leave the next one empty. With ``workers`` processes the first
    wave of batches (one per worker, holding their start-up) is left out of the rate when more batches came;
    ``includes_startup`` says when it could not be.
    """
    t_start = time.perf_counter()
    arrivals: list[tuple[float, int]] = []
    done = False
    timed_out = False
    while not done:
        sampler.set_epoch(sampler.epoch + 1)
        try:
            for batch in loader:
                n = sum(len(batch[m]["report"]) for m in ("xray", "ct") if batch.get(m) is not None)
                arrivals.append((time.perf_counter(), n))
                if time.perf_counter() - t_start > window_s or (max_batches and len(arrivals) >= max_batches):
                    done = True
                    break
        except RuntimeError as err:  # DataLoader(timeout=...): a batch took longer than that
            if "timed out" not in str(err):
                raise
            timed_out = done = True
        if not arrivals and not timed_out:
            raise RuntimeError("the data loader yielded no batch; check the datalist and the sampler's batch size.")
    if not arrivals:
        return {
            "samples": 0,
            "batches": 0,
            "seconds": round(time.perf_counter() - t_start, 2),
            "first_batch_s": None,
            "samples_per_s": 0.0,
            "includes_startup": True,
            "timed_out": True,
        }
    total = sum(n for _, n in arrivals)
    skip = workers if len(arrivals) > workers + 1 else 0
    if skip:  # steady state: after the first wave (one batch per worker, with the workers' start-up)
        t0, rest = arrivals[skip - 1][0], arrivals[skip:]
        rate, includes = sum(n for _, n in rest) / max(rest[-1][0] - t0, 1e-9), False
    else:
        rate, includes = total / max(arrivals[-1][0] - t_start, 1e-9), workers > 0
    return {
        "samples": total,
        "batches": len(arrivals),
        "seconds": round(arrivals[-1][0] - t_start, 2),
        "first_batch_s": round(arrivals[0][0] - t_start, 2),
        "samples_per_s": rate,
        "includes_startup": includes,
        "timed_out": timed_out,
    }


def section_pipeline(
    cap: Deadline, plan: dict[str, Any], data_dir: Path, gen: dict[str, Any], step_rate: float | None, workdir: Path
) -> tuple[dict, str]:
    """The bundle's loader on generated files: per-format decode rate, then num_workers x cache modes."""
    if "error" in gen:
        raise RuntimeError(f"generating the pipeline's files failed: {gen['error']}")
    from torch.utils.data import DataLoader

    from unimedi_monai.data.dataset import CACHE_MODES

    notes: list[str] = []
    base = {
        "dataset_dir": str(data_dir),
        "bundle_root": str(workdir / "s3_bundle"),
        "batch_size": plan["batch"],
        "seed": 0,
    }
    parser = bundle_parser({**base, "cache": "none", "num_workers": 0})
    xray_tf = parser.get_parsed_content("train#xray_transforms")
    ct_tf = parser.get_parsed_content("train#ct_transforms")
    decode = []
    for kind, folder, tf in (("png", "xray", xray_tf), ("jpeg", "xray", xray_tf), ("ct", "ct", ct_tf)):
        times = []
        for name in gen["files"][kind]:
            t0 = time.perf_counter()
            out = tf({"image": str(data_dir / folder / name), "report": "No acute findings."})
            times.append(time.perf_counter() - t0)
        decode.append(
            {
                "format": kind,
                "ms_per_sample": 1000.0 * statistics.median(times),
                "samples_per_s_one_core": 1.0 / statistics.median(times),
                "output_shape": list(out["image"].shape),
                "file_mb": gen["mean_file_mb"][kind],
            }
        )
    print("  one process: " + ", ".join(f"{d['format']} {d['ms_per_sample']:.0f} ms" for d in decode), flush=True)
    collate = parser.get_parsed_content("train#dataloader#collate_fn")
    per_sample = {d["format"]: d["ms_per_sample"] / 1000.0 for d in decode}
    t_xray, t_ct = (per_sample["png"] + per_sample["jpeg"]) / 2, per_sample["ct"]
    max_w = max(plan["workers"])
    settings = [("none", w) for w in plan["workers"]] + [("memory", 0), ("memory", max_w), ("disk", max_w)]
    settings = [(c, w) for c, w in settings if c in CACHE_MODES]
    rows: list[dict[str, Any]] = []
    built: dict[str, tuple[Any, Any, float]] = {}
    for cache, workers in settings:
        if cap.left < plan["window_s"] + 3:
            notes.append(f"time cap reached before cache={cache} num_workers={workers}")
            break
        if cache not in built:
            # a cache fill cannot be interrupted: start it only when it should end inside the cap
            est = (
                1.5 * (plan["xray_items"] * t_xray + plan["ct_items"] * t_ct) / max(1, min(max_w, os.cpu_count() or 1))
            )
            if cache != "none" and est > cap.left - plan["window_s"] - 3:
                notes.append(
                    f"cache={cache} left out: filling it would take about {est:.0f} s, more than the time left"
                )
                continue
            t0 = time.perf_counter()
            p = bundle_parser(
                {**base, "cache": cache, "num_workers": max_w, "cache_dir": str(workdir / f"s3_cache_{cache}")}
            )
            built[cache] = (
                p.get_parsed_content("train#dataset"),
                p.get_parsed_content("train#sampler"),
                time.perf_counter() - t0,
            )
        dataset, sampler, build_s = built[cache]
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=workers,
            persistent_workers=workers > 0,
            timeout=max(2.0, min(plan["batch_timeout_s"], cap.left - 5)) if workers > 0 else 0,
        )
        row: dict[str, Any] = {"cache": cache, "num_workers": workers, "dataset_build_s": round(build_s, 2)}
        if cache == "disk":
            fill = measure_loader(
                loader,
                sampler,
                max(plan["window_s"], 0.5 * (cap.left - plan["window_s"] - 3)),
                workers,
                max_batches=len(sampler),
            )
            row["fill_epoch"] = fill
            notes += [] if fill["batches"] >= len(sampler) else ["disk: the first (cache-filling) epoch was cut short"]
        row.update(measure_loader(loader, sampler, plan["window_s"], workers))
        del loader
        row["vs_step"] = row["samples_per_s"] / step_rate if step_rate else None
        rows.append(row)
        print(
            f"  cache={cache} num_workers={workers}: {row['samples_per_s']:.1f} samples/s"
            + (f" (dataset build {build_s:.1f} s)" if cache == "memory" else ""),
            flush=True,
        )
    # the verdict
    verdict = "no loader setting was measured."
    if rows and step_rate:
        best_none = max((r for r in rows if r["cache"] == "none"), key=lambda r: r["samples_per_s"], default=None)
        fast = [r for r in rows if r["samples_per_s"] >= step_rate]
        cheapest = min(
            fast, key=lambda r: ({"none": 0, "disk": 1, "memory": 2}[r["cache"]], r["num_workers"]), default=None
        )
        if best_none and best_none["samples_per_s"] >= step_rate:
            verdict = (
                f"The GPU limits a real run: the loader without a cache delivers {best_none['samples_per_s']:.0f} "
                f"samples/s with num_workers={best_none['num_workers']}, at least the step's {step_rate:.0f} "
                f"samples/s; num_workers={cheapest['num_workers']} without a cache already keeps up."
            )
        elif cheapest:
            verdict = (
                f"The loader limits a real run without a cache: at most "
                f"{best_none['samples_per_s'] if best_none else float('nan'):.0f} samples/s against the step's "
                f"{step_rate:.0f} samples/s; cache={cheapest['cache']} with num_workers={cheapest['num_workers']} "
                f"({cheapest['samples_per_s']:.0f} samples/s) removes the limit"
                + (
                    " (the memory cache needs the decoded set to fit in RAM; disk works after one filling epoch)."
                    if cheapest["cache"] == "memory"
                    else "."
                )
            )
        else:
            best = max(rows, key=lambda r: r["samples_per_s"])
            verdict = (
                f"The loader limits a real run in every measured setting: the best, cache={best['cache']} with "
                f"num_workers={best['num_workers']}, delivers {best['samples_per_s']:.0f} samples/s against the "
                f"step's {step_rate:.0f} samples/s; more workers (CPU cores) or a cache closer to the GPU are needed."
            )
    elif rows:
        verdict = "Section 2 did not run, so there is no step rate to compare with; the loader rates stand alone."
    expected = len(settings)
    section = {
        "status": "ok" if len(rows) == expected and not notes else "partial",
        "note": "; ".join(notes),
        "generation": {k: v for k, v in gen.items() if k != "files"},
        "step_samples_per_s": step_rate,
        "decode": decode,
        "rows": rows,
        "verdict": verdict,
        "cpu_count": os.cpu_count(),
    }
    md = [
        f"Synthetic X-rays {plan['xray_px'][0]}x{plan['xray_px'][1]} px "
        f"(PNG {gen['mean_file_mb'].get('png', 0):.1f} MB, "
        f"JPEG {gen['mean_file_mb'].get('jpeg', 0):.1f} MB) and CTs {'x'.join(map(str, plan['ct_shape']))} int16 "
        f".nii.gz ({gen['mean_file_mb'].get('ct', 0):.0f} MB), through the bundle's `train#xray_transforms` / "
        f"`train#ct_transforms` (to 224^2 and 128x128x32), dataset (`build_pretrain_dataset`), `MixedBatchSampler` "
        f"(ct_fraction from train.yaml) and `collate_mixed`; loader batch {plan['batch']}, {plan['xray_items']} X-ray "
        f"and {plan['ct_items']} CT entries; {os.cpu_count()} CPU cores.",
        "",
        "One process, one sample (decode + deterministic and random transforms):",
        "",
        format_table(
            ["format", "ms/sample", "samples/s per core", "file MB"],
            [[d["format"], d["ms_per_sample"], d["samples_per_s_one_core"], d["file_mb"]] for d in decode],
        ),
        "",
        "Data loader, mixed batches:",
        "",
        format_table(
            [
                "cache",
                "num_workers",
                "samples/s",
                "loader/step",
                "batches",
                "steady state",
                "first batch s",
                "dataset build s",
                "disk fill samples/s",
            ],
            [
                [
                    r["cache"],
                    r["num_workers"],
                    r["samples_per_s"],
                    r["vs_step"] if r["vs_step"] else "-",
                    r["batches"],
                    "no (incl. start-up)" if r["includes_startup"] else "yes",
                    r["first_batch_s"],
                    r["dataset_build_s"],
                    r["fill_epoch"]["samples_per_s"] if "fill_epoch" in r else "-",
                ]
                for r in rows
            ],
        ),
        "",
        f"Step rate (section 2, MiniLM): {step_rate:.1f} samples/s." if step_rate else "Step rate: section 2 not run.",
        "",
        f"**{verdict}**",
        "",
    ]
    return section, "\n".join(md)


# ------------------------------------------------------------------------------ 4. learning


def section_learning(
    cap: Deadline, plan: dict[str, Any], device: torch.device, step_ms_64: float | None, workdir: Path, out: Path
) -> tuple[dict, str]:
    """``monai.bundle run`` of train.yaml + evaluate.yaml with the ViT-B backbone on the demo data, time-limited."""
    from monai.bundle import ConfigParser

    from unimedi_monai.data import MixedBatchSampler, generate_demo_dataset, load_datalist
    from unimedi_monai.evaluation import plot_training_curves, read_jsonl_history

    root = workdir / "s4_bundle"
    t0 = time.perf_counter()
    demo_dir = generate_demo_dataset(root / "demo_data", **plan["demo"], progress=False).parent
    gen_s = time.perf_counter() - t0
    train_items = load_datalist(demo_dir, sections=["training"])["training"]
    n_xray = sum(i["modality"] == "xray" for i in train_items)
    n_ct = len(train_items) - n_xray
    cfg = ConfigParser.load_config_file(str(TRAIN_YAML))
    batch = plan["batch_size"] or int(bundle_parser({"dataset_dir": None}).get_parsed_content("batch_size"))
    steps_per_epoch = len(MixedBatchSampler(n_xray, n_ct, batch_size=batch, ct_fraction=float(cfg["ct_fraction"])))
    train_s = max(10.0, cap.left - plan["overhead_s"])
    step_s = (step_ms_64 / 1000.0) * max(batch / 64, 0.25) * 1.5 if step_ms_64 else plan["default_step_s"]
    max_epochs = plan.get("max_epochs") or max(2, math.ceil(train_s / step_s / steps_per_epoch))
    extra = workdir / "s4_time_limit.yaml"
    runs = list(ConfigParser.load_config_file(str(TRAIN_YAML))["run"]) + list(
        ConfigParser.load_config_file(str(EVAL_YAML))["run"]
    )
    limit = f"$common.attach_time_limit(@train#trainer, {train_s:.1f})"  # benchmarks/common.py
    # one process trains, then evaluates (the evaluate.yaml run list after train.yaml's), under train.yaml's
    # `initialize`, which checks every output folder; the time limit stops training cleanly (model.pt still written)
    imports = [*cfg.get("imports", []), "$import common"]
    extra.write_text(json.dumps({"imports": imports, "initialize": cfg["initialize"], "run": [limit, *runs]}, indent=2))
    overrides = {
        "backbone": plan["backbone"],
        "demo": repr(plan["demo"]),
        "max_epochs": str(max_epochs),
        "num_workers": str(plan["num_workers"]),
        "checkpoint_interval": "100000",
    }
    if plan["batch_size"]:
        overrides["batch_size"] = str(plan["batch_size"])
    cmd = bundle_command((TRAIN_YAML, EVAL_YAML, extra), root, [a for k, v in overrides.items() for a in (f"--{k}", v)])
    env = bundle_env(Path(__file__).resolve().parent)  # benchmarks/ first: the extra YAML imports common
    print(
        f"  demo data: {n_xray} X-rays + {n_ct} CTs for training ({gen_s:.0f} s); {steps_per_epoch} steps/epoch; "
        f"max_epochs {max_epochs}; training limited to {train_s:.0f} s",
        flush=True,
    )
    t_run = time.perf_counter()
    timeout = max(20.0, cap.left - 2)
    try:
        proc = subprocess.run(
            cmd, cwd=REPO, env=env, capture_output=True, encoding="utf-8", errors="replace", timeout=timeout
        )
        rc, output, tail = proc.returncode, proc.stdout + proc.stderr, proc.stdout[-3000:] + "\n" + proc.stderr[-4000:]
    except subprocess.TimeoutExpired as err:
        output = "".join(
            x.decode("utf-8", "replace") if isinstance(x, bytes) else (x or "") for x in (err.stdout, err.stderr)
        )
        rc, tail = None, f"timed out after {timeout:.0f} s:\n{output[-4000:]}"
    run_s = time.perf_counter() - t_run
    stopped = "time limit of" in output
    log = root / "logs" / "train_log.jsonl"
    history = read_jsonl_history(log) if log.is_file() else {}
    curves = {}
    for key, values in history.items():
        v = [x for _, x in values]
        if key.startswith("loss") and v:
            k = max(1, len(v) // 5)
            curves[key] = {"first": float(np.mean(v[:k])), "last": float(np.mean(v[-k:])), "points": len(v)}
    png = None
    if history:
        keys = sorted(k for k in history if k.startswith("loss")) or None
        png = plot_training_curves(
            history,
            out / "s4_training_curves.png",
            keys=keys,
            smoothing_window=10,
            title=f"UniMedI {plan['backbone']} on the demo data ({device.type})",
        )
    metrics_path = root / "eval" / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    iterations = max((i for values in history.values() for i, _ in values), default=0)
    rows = []
    for suffix, label in (("", "all"), ("_xray", "X-ray"), ("_ct", "CT")):
        chance = metrics.get(f"chance_R@1{suffix}")
        for direction in ("i2t", "t2i"):
            value = metrics.get(f"{direction}_R@1{suffix}")
            if value is not None and chance is not None:
                rows.append(
                    {
                        "subset": label,
                        "direction": direction,
                        "R@1": value,
                        "chance_R@1": chance,
                        "ratio_to_chance": value / chance if chance else None,
                        "above_chance": value > chance,
                    }
                )
    slice_row = None
    if "slice_hit_rate" in metrics:
        hit, rnd = metrics["slice_hit_rate"], metrics.get("slice_hit_rate_random")
        slice_row = {
            "slice_hit_rate": hit,
            "random": rnd,
            "ratio_to_random": hit / rnd if rnd else None,
            "num_ct_with_lesion": metrics.get("num_ct_with_lesion"),
            "above_random": rnd is not None and hit > rnd,
        }
    falling = {k: c["last"] < c["first"] for k, c in curves.items()}
    learned = bool(rows) and all(r["above_chance"] for r in rows if r["subset"] == "all") and falling.get("loss", False)
    status = "ok" if rc == 0 and metrics else ("partial" if history else "failed")
    section = {
        "status": status,
        "note": "" if rc == 0 else f"bundle run exit {rc}",
        "returncode": rc,
        "command": shlex.join(cmd),
        "overrides": overrides,
        "time_limit_s": round(train_s, 1),
        "stopped_by_time_limit": stopped,
        "max_epochs": max_epochs,
        "steps_per_epoch": steps_per_epoch,
        "iterations_done": iterations,
        "bundle_run_s": round(run_s, 1),
        "demo_generation_s": round(gen_s, 1),
        "train_items": {"xray": n_xray, "ct": n_ct},
        "curves": curves,
        "losses_falling": falling,
        "retrieval": rows,
        "slice_hits": slice_row,
        "learned": learned,
        "metrics": metrics,
        "curves_png": str(png) if png else None,
    }
    if rc != 0:
        section["log_tail"] = tail
    md = [
        "`python -m monai.bundle run` of train.yaml + evaluate.yaml (one process) with "
        + ", ".join(f"`--{k} {v}`" for k, v in overrides.items())
        + f"; training time limit {train_s:.0f} s ({'reached' if stopped else 'not reached: max_epochs ended it'}): "
        f"{iterations} iterations ({steps_per_epoch} per epoch, batch {batch}); the bundle run took {run_s:.0f} s.",
        "",
        format_table(
            ["loss", "first 20% mean", "last 20% mean", "points", "falls"],
            [[k, c["first"], c["last"], c["points"], "yes" if falling[k] else "NO"] for k, c in curves.items()],
        ),
        "",
        "Held-out retrieval (the bundle's evaluation):",
        "",
        format_table(
            ["subset", "direction", "R@1", "chance R@1", "R@1 / chance", "above chance"],
            [
                [
                    r["subset"],
                    r["direction"],
                    r["R@1"],
                    r["chance_R@1"],
                    r["ratio_to_chance"],
                    "yes" if r["above_chance"] else "NO",
                ]
                for r in rows
            ],
        ),
        "",
    ]
    if slice_row:
        md += [
            format_table(
                ["attention slice hit rate", "random selection", "hit / random", "CTs with lesion"],
                [
                    [
                        slice_row["slice_hit_rate"],
                        slice_row["random"],
                        slice_row["ratio_to_random"],
                        slice_row["num_ct_with_lesion"],
                    ]
                ],
            ),
            "",
        ]
    md += [
        f"Loss curves: `{png.name}`." if png else "No training log was written.",
        "",
        f"**The configuration {'learns' if learned else 'does NOT show learning'} in this run** (loss falls and "
        "R@1 above chance over all held-out pairs).",
        "",
    ]
    if rc != 0:
        md += ["Bundle run output (tail):", "", "```", tail[-2500:], "```", ""]
    return section, "\n".join(md)


# ------------------------------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (gpu_check.json, gpu_check.md, PNG)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, every code path (about a minute)")
    parser.add_argument("--sections", default="1,2,3,4", help="comma-separated section numbers (default 1,2,3,4)")
    parser.add_argument("--budget-s", type=float, default=None, help="total time budget (default 480; smoke 240)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda, cpu with --smoke")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help=f"peak for MFU (default {H200_BF16_DENSE_TFLOPS:.0f} on CUDA, the H200's dense bf16; "
        "none on CPU: the measured GEMM rate stands in)",
    )
    parser.add_argument(
        "--profile",
        choices=["auto", "always", "never"],
        default=None,
        help="profile a step: auto = when MFU < 35%% (default; always with --smoke)",
    )
    parser.add_argument(
        "--compile-scope",
        choices=["blocks", "model"],
        default="blocks",
        help="section 1's torch.compile: each transformer block (default; seconds) or the whole model",
    )
    parser.add_argument(
        "--plan",
        choices=sorted(PLANS),
        default=None,
        help="sizes: gpu (default) or smoke (default with --smoke); e.g. --plan gpu --device cpu "
        "--sections 3 measures the full-size data pipeline on a machine without a GPU",
    )
    parser.add_argument("--tmp-dir", type=Path, default=None, help="where generated data goes (default: system temp)")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the generated data and bundle outputs")
    args = parser.parse_args(argv)
    try:
        args.sections = sorted({int(s) for s in str(args.sections).split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sections must be comma-separated numbers from 1 to 4, got {args.sections!r}")
    if not args.sections or not set(args.sections) <= set(SECTIONS):
        parser.error(f"--sections must name sections among 1,2,3,4, got {args.sections}")
    args.device = args.device or ("cpu" if args.smoke else "cuda")
    args.budget_s = args.budget_s or (240.0 if args.smoke else 480.0)
    args.profile = args.profile or ("always" if args.smoke else "auto")
    if args.peak_tflops is None and args.device == "cuda":
        args.peak_tflops = H200_BF16_DENSE_TFLOPS
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if cuda_missing(
        args.device,
        "install CUDA torch (UNIMEDI_TORCH_INDEX=https://download.pytorch.org/whl/cu128 bash scripts/setup_env.sh) "
        "or use --smoke",
    ):
        return 2
    deadline = Deadline(args.budget_s)
    plan = PLANS[args.plan or ("smoke" if args.smoke else "gpu")]
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="unimedi_gpu_check_", dir=args.tmp_dir))
    meta = {
        "_t0": deadline.start,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
        "command": " ".join(["python", "benchmarks/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
        "smoke": args.smoke,
        "budget_s": args.budget_s,
        "sections_selected": args.sections,
        "dtype": str(dtype).replace("torch.", ""),
        "plan": plan,
        "workdir": str(workdir),
        **machine_meta(device),
    }
    results = Results(args.out, meta)
    results.write()
    print(
        f"gpu_check: {meta['device']}, budget {args.budget_s:.0f} s, sections {args.sections}, out {args.out}",
        flush=True,
    )

    # section 3's files are written in the background while sections 1 and 2 use the accelerator
    gen_proc, gen_queue, data_dir = None, None, workdir / "pipeline_data"
    if 3 in args.sections:
        ctx = multiprocessing.get_context("spawn")
        gen_queue = ctx.Queue()
        gen_proc = ctx.Process(target=_generate_worker, args=(str(data_dir), plan["s3"], gen_queue), daemon=True)
        gen_proc.start()

    try:
        s1 = run_section(
            results,
            1,
            args.sections,
            deadline,
            args.budget_s,
            lambda cap: section_backbone(cap, plan["s1"], device, dtype, args.compile_scope),
        )
        s2 = run_section(
            results,
            2,
            args.sections,
            deadline,
            args.budget_s,
            lambda cap: section_step(cap, plan["s2"], device, dtype, args.peak_tflops, args.profile, workdir),
        )
        minilm = next((r for r in s2.get("rows", []) if r["text_encoder"] == "minilm"), None)
        step_rate = minilm["samples_per_s"] if minilm else None

        def pipeline(cap: Deadline) -> tuple[dict, str]:
            try:
                gen = gen_queue.get(timeout=max(1.0, cap.left - 10))  # type: ignore[union-attr]
            except queue.Empty:
                raise RuntimeError("the background process writing section 3's files did not finish in time") from None
            return section_pipeline(cap, plan["s3"], data_dir, gen, step_rate, workdir)

        run_section(results, 3, args.sections, deadline, args.budget_s, pipeline)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the bundle run of section 4 is another process on the same GPU
        run_section(
            results,
            4,
            args.sections,
            deadline,
            args.budget_s,
            lambda cap: section_learning(
                cap, plan["s4"], device, minilm["step_ms"] if minilm else None, workdir, args.out
            ),
        )
        del s1
    finally:
        if gen_proc is not None and gen_proc.is_alive():
            gen_proc.terminate()
        if not args.keep_tmp:
            shutil.rmtree(workdir, ignore_errors=True)
        results.data["meta"]["load_average_end"] = load_average()
        results.write()
    statuses = {k: s.get("status") for k, s in results.data["sections"].items()}
    print(f"\nwrote {results.json_path} and {results.md_path} in {deadline.elapsed:.0f} s: {statuses}", flush=True)
    return 0 if all(s in ("ok", "partial", "skipped") for s in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
