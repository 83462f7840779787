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
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

SIZE_LABELS = {"base": "ViT-B", "small": "ViT-S", "demo": "demo", "tiny": "tiny"}
DEFAULT_TOKENS = (197, 513, 769)
QUICK_TOKENS = (197, 513)
TRAIN_TARGET = 1.0
TEACHER_TARGET = 1.05
# fp32 outputs of our backbone and the MONAI blocks loaded with its weights must agree this closely.
EQUIVALENCE_ATOL = 1e-3


def _import_backbone() -> tuple[type[nn.Module], Callable[[Any], Any]]:
    """Import ``SharedBackbone`` and the preset resolver, from the checkout if not installed."""
    try:
        from unimedi_monai.networks.backbone import SharedBackbone
        from unimedi_monai.networks.presets import resolve_backbone_config
    except ModuleNotFoundError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from unimedi_monai.networks.backbone import SharedBackbone
        from unimedi_monai.networks.presets import resolve_backbone_config
    return SharedBackbone, resolve_backbone_config


@dataclass
class Timer:
    """Times one call of a function in milliseconds: CUDA events on GPU, ``time.perf_counter`` on CPU.

    Args:
        device: the device the timed work runs on.
    """

    device: torch.device

    def __call__(self, fn: Callable[[], Any]) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(self.device)
            return float(start.elapsed_time(end))
        start_s = time.perf_counter()
        fn()
        return (time.perf_counter() - start_s) * 1000.0


@dataclass
class Variants:
    """Named callables timed round-robin: each repeat runs every variant once, in turn.

    Args:
        fns: ``name -> callable`` doing one unit of work.
        timer: how to time a call.
    """

    fns: dict[str, Callable[[], Any]]
    timer: Timer
    times: dict[str, list[float]] = field(default_factory=dict)

    def raw(self) -> dict[str, list[float]]:
        """Every timed repeat of the last :meth:`run`, in milliseconds, rounded to 0.01 ms."""
        return {name: [round(t, 2) for t in values] for name, values in self.times.items()}

    def run(self, warmup: int, repeats: int) -> dict[str, float]:
        """Warm up every variant, then time ``repeats`` interleaved rounds.

        Returns:
            ``name -> median milliseconds``.
        """
        for _ in range(warmup):
            for fn in self.fns.values():
                self.timer(fn)
        self.times = {name: [] for name in self.fns}
        for _ in range(repeats):
            for name, fn in self.fns.items():
                self.times[name].append(self.timer(fn))
        return {name: statistics.median(values) for name, values in self.times.items()}


def build_monai_blocks(cfg: Any, save_attn: bool = False, flash: bool = False) -> nn.Module:
    """Build a MONAI ``ViT`` of the backbone's size; its ``blocks`` and ``norm`` are what is timed.

    Args:
        cfg: the :class:`BackboneConfig` to match (width, depth, heads, MLP size, qkv bias, dropout).
        save_attn: build the self-attention blocks with ``save_attn=True`` (full attention kept).
        flash: replace the blocks with ``TransformerBlock(..., use_flash_attention=True)``
            (``ViT`` itself does not take that argument).

    Returns:
        the ``ViT`` (its 16x16 patch embedding is built but never called).
    """
    from monai.networks.blocks import TransformerBlock
    from monai.networks.nets import ViT

    vit = ViT(
        in_channels=1,
        img_size=(16, 16),
        patch_size=(16, 16),
        hidden_size=cfg.hidden_size,
        mlp_dim=cfg.mlp_dim,
        num_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        classification=False,
        dropout_rate=cfg.dropout_rate,
        spatial_dims=2,
        qkv_bias=cfg.qkv_bias,
        save_attn=save_attn,
    )
    if flash:
        vit.blocks = nn.ModuleList(
            TransformerBlock(
                cfg.hidden_size,
                cfg.mlp_dim,
                cfg.num_heads,
                cfg.dropout_rate,
                qkv_bias=cfg.qkv_bias,
                use_flash_attention=True,
            )
            for _ in range(cfg.num_layers)
        )
    return vit


@torch.no_grad()
def copy_weights(ours: nn.Module, vit: nn.Module) -> None:
    """Load ``SharedBackbone`` block and final-norm weights into a MONAI ``ViT`` (same qkv layout).

    Args:
        ours: the source ``SharedBackbone``.
        vit: the MONAI ``ViT`` built by :func:`build_monai_blocks` for the same config.
    """
    pairs: list[tuple[nn.Module, nn.Module]] = [(ours.norm, vit.norm)]
    for src, dst in zip(ours.blocks, vit.blocks):
        pairs += [
            (src.norm1, dst.norm1),
            (src.qkv, dst.attn.qkv),
            (src.out_proj, dst.attn.out_proj),
            (src.norm2, dst.norm2),
            (src.mlp[0], dst.mlp.linear1),
            (src.mlp[3], dst.mlp.linear2),
        ]
    for src, dst in pairs:
        if src.weight.shape != dst.weight.shape:
            raise ValueError(
                f"weight shapes differ: ours {tuple(src.weight.shape)} vs MONAI {tuple(dst.weight.shape)}; "
                "build the MONAI ViT from the same BackboneConfig."
            )
        dst.weight.copy_(src.weight)
        if (src.bias is None) != (dst.bias is None):
            raise ValueError("qkv_bias differs between SharedBackbone and the MONAI ViT; build both alike.")
        if src.bias is not None:
            dst.bias.copy_(src.bias)


def monai_forward(vit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run a MONAI ``ViT``'s transformer blocks and final norm on already-embedded tokens."""
    for blk in vit.blocks:
        x = blk(x)
    return vit.norm(x)


def monai_cls_attention(vit: nn.Module) -> torch.Tensor:
    """Head- and layer-averaged [CLS]-query attention on the patch keys, read from ``save_attn`` matrices."""
    rows = [blk.attn.att_mat[:, :, 0, 1:].float().mean(dim=1) for blk in vit.blocks]
    return torch.stack(rows).mean(dim=0)


def check_equivalence(
    ours: nn.Module, monai_models: dict[str, nn.Module], tokens: torch.Tensor, full: torch.Tensor
) -> float:
    """Check (fp32, eval) that every MONAI variant computes what our backbone computes.

    Args:
        ours: the ``SharedBackbone``.
        monai_models: ``name -> ViT`` loaded with ``ours``' weights.
        tokens: ``(B, L - 1, hidden)`` input of ``ours``.
        full: ``(B, L, hidden)`` input of the MONAI blocks ([CLS] of ``ours`` prepended).

    Returns:
        the largest absolute difference over outputs (and the save_attn [CLS] attention).

    Raises:
        RuntimeError: outputs differ by more than ``EQUIVALENCE_ATOL``, i.e. the comparison would not
            be like for like.
    """
    modes = {m: m.training for m in [ours, *monai_models.values()]}
    for m in modes:
        m.eval()
    worst = 0.0
    with torch.no_grad(), torch.autocast(device_type=tokens.device.type, enabled=False):
        ref = ours(tokens, cls_attention="all")
        ref_seq = torch.cat([ref["cls"][:, None], ref["patches"]], dim=1)
        for name, vit in monai_models.items():
            diff = (monai_forward(vit, full) - ref_seq).abs().max().item()
            if name == "save_attn":
                diff = max(diff, (monai_cls_attention(vit) - ref["cls_attention"]).abs().max().item())
            if diff > EQUIVALENCE_ATOL:
                raise RuntimeError(
                    f"MONAI variant '{name}' differs from SharedBackbone by {diff:.2e} (> {EQUIVALENCE_ATOL}); "
                    "check that the weight mapping in copy_weights still matches both block layouts."
                )
            worst = max(worst, diff)
    for m, training in modes.items():
        m.train(training)
    return worst


def bench_size(
    preset: str, lengths: Sequence[int], args: argparse.Namespace, device: torch.device
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
    """Run both benchmarks for one backbone size at every sequence length.

    Args:
        preset: backbone preset name.
        lengths: sequence lengths including [CLS].
        args: parsed command-line options (batch, warmup, repeats, dtype).
        device: where to run.

    Returns:
        ``(train_rows, teacher_rows, max_abs_diff)``.
    """
    shared_backbone, _ = _import_backbone()
    torch.manual_seed(0)
    ours = shared_backbone({"preset": preset, "drop_path_rate": 0.0}).to(device)
    cfg = ours.config
    monai_models = {
        "plain": build_monai_blocks(cfg),
        "save_attn": build_monai_blocks(cfg, save_attn=True),
        "flash": build_monai_blocks(cfg, flash=True),
    }
    for vit in monai_models.values():
        copy_weights(ours, vit)
        vit.to(device)
    all_models = [ours, *monai_models.values()]
    if args.compile:  # every variant, ours and MONAI's alike, so the comparison stays fair
        for m in all_models:
            m.compile()
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    autocast = torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32)
    timer = Timer(device)
    train_rows, teacher_rows = [], []
    worst = 0.0
    for length in lengths:
        gen = torch.Generator(device="cpu").manual_seed(length)
        tokens = torch.randn(args.batch, length - 1, cfg.hidden_size, generator=gen).to(device)
        with torch.no_grad():
            full = torch.cat([ours.cls_token.expand(args.batch, -1, -1), tokens], dim=1).contiguous()
        worst = max(worst, check_equivalence(ours, monai_models, tokens, full))

        def zero_grads() -> None:
            for m in all_models:
                m.zero_grad(set_to_none=True)

        def ours_step() -> None:
            zero_grads()
            with autocast:
                out = ours(tokens)
                loss = out["cls"].float().mean() + out["patches"].float().mean()
            loss.backward()

        def monai_step(vit: nn.Module) -> Callable[[], None]:
            def step() -> None:
                zero_grads()
                with autocast:
                    y = monai_forward(vit, full)
                    loss = y[:, 0].float().mean() + y[:, 1:].float().mean()
                loss.backward()

            return step

        for m in all_models:
            m.train()
        train_variants = Variants(
            {
                "ours": ours_step,
                "monai": monai_step(monai_models["plain"]),
                "monai_save_attn": monai_step(monai_models["save_attn"]),
                "monai_flash": monai_step(monai_models["flash"]),
            },
            timer,
        )
        row_key = {"size": SIZE_LABELS.get(preset, preset), "preset": preset, "tokens": length, "batch": args.batch}
        train = train_variants.run(args.warmup, args.repeats)
        zero_grads()
        train_rows.append(
            {
                **row_key,
                **{f"{k}_ms": v for k, v in train.items()},
                "ratio_ours_monai": train["ours"] / train["monai"],
                "ratio_ours_monai_flash": train["ours"] / train["monai_flash"],
                "times_ms": train_variants.raw(),
            }
        )

        for m in all_models:
            m.eval()

        def teacher(mode: str | None) -> Callable[[], None]:
            def step() -> None:
                with torch.no_grad(), autocast:
                    ours(tokens, cls_attention=mode)

            return step

        def monai_teacher(vit: nn.Module, read_attention: bool) -> Callable[[], None]:
            def step() -> None:
                with torch.no_grad(), autocast:
                    monai_forward(vit, full)
                    if read_attention:
                        monai_cls_attention(vit)

            return step

        fwd_variants = Variants(
            {
                "ours": teacher(None),
                "ours_last": teacher("last"),
                "ours_all": teacher("all"),
                "monai": monai_teacher(monai_models["plain"], False),
                "monai_save_attn_cls": monai_teacher(monai_models["save_attn"], True),
            },
            timer,
        )
        fwd = fwd_variants.run(args.warmup, args.repeats)
        teacher_rows.append(
            {
                **row_key,
                **{f"{k}_ms": v for k, v in fwd.items()},
                "ratio_last_none": fwd["ours_last"] / fwd["ours"],
                "ratio_all_none": fwd["ours_all"] / fwd["ours"],
                "times_ms": fwd_variants.raw(),
            }
        )
        t_row, f_row = train_rows[-1], teacher_rows[-1]
        print(
            f"  {t_row['size']} L={length}: train ours/MONAI {t_row['ratio_ours_monai']:.3f}, "
            f"teacher last/none {f_row['ratio_last_none']:.3f} all/none {f_row['ratio_all_none']:.3f}",
            flush=True,
        )
    return train_rows, teacher_rows, worst


def _cpu_name() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (Linux), else what :mod:`platform` reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_average() -> float | None:
    """The 1-minute system load average, or None where the platform has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Render a Markdown table (floats with 1 decimal for ms, 3 for ratios)."""

    def cell(value: Any, header: str) -> str:
        if isinstance(value, float):
            return f"{value:.1f}" if "ms" in header else f"{value:.3f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v, h) for v, h in zip(row, headers)) + " |" for row in rows]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; defaults for batch, warm-up and repeats depend on the device."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "fp32", "bf16"], default="float32",
                        help="bfloat16 (bf16) uses autocast")
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
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "error: --device cuda was asked for but torch.cuda.is_available() is False; use --device cpu.",
            file=sys.stderr,
        )
        return 2
    _, resolve_backbone_config = _import_backbone()
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
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
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
    load = _load_average()
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
    meta["load_average_end"] = _load_average()
    meta["elapsed_s"] = time.perf_counter() - start
    # CPU seconds this process got per wall second and thread: well below 1 means it was starved.
    meta["cpu_utilisation"] = (time.process_time() - cpu_start) / (meta["elapsed_s"] * meta["threads"])

    print(f"\nMONAI blocks loaded with our weights; max |ours - MONAI| (fp32 outputs) = {worst:.2e}")
    print(f"\n1. Backbone forward+backward, median ms ({args.dtype}; target ours/MONAI <= {TRAIN_TARGET})\n")
    print(
        format_table(
            ["size", "tokens", "batch", "ours ms", "MONAI ms", "MONAI(save_attn) ms", "MONAI(flash) ms",
             "ours/MONAI", "ours/MONAI(flash)"],
            [
                [r["size"], r["tokens"], r["batch"], r["ours_ms"], r["monai_ms"], r["monai_save_attn_ms"],
                 r["monai_flash_ms"], r["ratio_ours_monai"], r["ratio_ours_monai_flash"]]
                for r in train_rows
            ],
        )
    )
    print(
        "\n2. Teacher forward (eval, no grad), median ms "
        f"(target with/without [CLS] attention <= {TEACHER_TARGET})\n"
    )
    print(
        format_table(
            ["size", "tokens", "batch", "ours ms", "ours+last ms", "ours+all ms", "last/none", "all/none",
             "MONAI ms", "MONAI(save_attn)+CLS ms"],
            [
                [r["size"], r["tokens"], r["batch"], r["ours_ms"], r["ours_last_ms"], r["ours_all_ms"],
                 r["ratio_last_none"], r["ratio_all_none"], r["monai_ms"], r["monai_save_attn_cls_ms"]]
                for r in teacher_rows
            ],
        )
    )
    missed = [f"train {r['size']} L={r['tokens']} ({r['ratio_ours_monai']:.3f})" for r in train_rows
              if r["ratio_ours_monai"] > TRAIN_TARGET]
    missed += [f"teacher {r['size']} L={r['tokens']} {k} ({r[f'ratio_{k}_none']:.3f})" for r in teacher_rows
               for k in ("last", "all") if r[f"ratio_{k}_none"] > TEACHER_TARGET]
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
