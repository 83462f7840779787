"""Pieces shared by the benchmark scripts: timing, Markdown tables, machine facts, the like-for-like
comparison of our backbone with MONAI's ``ViT``, one pre-training step with its FLOP count and the GEMM
baseline, and atomic, incremental result files.

The scripts in this folder import it as ``from common import ...``: Python puts a script's own folder on
``sys.path``, so ``python benchmarks/<script>.py`` finds it from any working directory (the tests put this
folder on ``sys.path`` the same way). Importing it first is also what puts the checkout on ``sys.path``
when ``unimedi_monai`` is not installed: no script edits ``sys.path`` itself (see README.md).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("unimedi_monai") is None:
    sys.path.insert(0, str(REPO))  # a checkout without the package installed: use the checkout's

SIZE_LABELS = {"base": "ViT-B", "small": "ViT-S", "demo": "demo", "tiny": "tiny"}
# fp32 outputs of our backbone and the MONAI blocks loaded with its weights must agree this closely.
EQUIVALENCE_ATOL = 1e-3
GEMM_N = 3072


# ------------------------------------------------------------------------------------ timing and tables


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
    first_ms: dict[str, float] = field(default_factory=dict)

    def raw(self) -> dict[str, list[float]]:
        """Every timed repeat of the last :meth:`run`, in milliseconds, rounded to 0.01 ms."""
        return {name: [round(t, 2) for t in values] for name, values in self.times.items()}

    def run(self, warmup: int, repeats: int) -> dict[str, float]:
        """Warm up every variant, then time ``repeats`` interleaved rounds.

        The time of each variant's very first call is kept in :attr:`first_ms` (with ``torch.compile`` it
        holds the compilation).

        Returns:
            ``name -> median milliseconds``.
        """
        self.first_ms = {}
        for _ in range(warmup):
            for name, fn in self.fns.items():
                t = self.timer(fn)
                self.first_ms.setdefault(name, round(t, 2))
        self.times = {name: [] for name in self.fns}
        for _ in range(repeats):
            for name, fn in self.fns.items():
                t = self.timer(fn)
                self.first_ms.setdefault(name, round(t, 2))
                self.times[name].append(t)
        return {name: statistics.median(values) for name, values in self.times.items()}


def bundle_command(configs: Sequence[str | os.PathLike], root: Path, args: Sequence[str] = ()) -> list[str]:
    """``python -m monai.bundle run`` of ``configs`` (paths, merged in order; the first one's folder holds the
    bundle's metadata.json and logging.conf) with every output under ``root``."""
    cfg = Path(configs[0]).parent
    files = "[" + ",".join(f"'{c}'" for c in configs) + "]"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", files]
    cmd += ["--meta_file", str(cfg / "metadata.json"), "--logging_file", str(cfg / "logging.conf")]
    return cmd + ["--bundle_root", str(root), *args]


def bundle_env(*pythonpath: str | os.PathLike) -> dict[str, str]:
    """The environment of a bundle run: offline, CI mode (no progress-bar redraws), UTF-8, and ``pythonpath``
    then the checkout first on ``PYTHONPATH``."""
    path = [*map(str, pythonpath), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    return dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        CI="1",
        PYTHONUTF8="1",
        PYTHONPATH=os.pathsep.join(path),
    )


def run_bundle(bundle: str | os.PathLike, configs: Sequence[str], root: Path, args: Sequence[str]) -> str:
    """``python -m monai.bundle run`` of a bundle (its name under ``bundles/`` or its folder) with the
    ``configs`` merged in order and every output under ``root``, offline; returns the run's log.

    Raises:
        RuntimeError: the run failed, with the tail of its output.
    """
    folder = Path(bundle) if os.sep in str(bundle) or Path(bundle).is_absolute() else REPO / "bundles" / str(bundle)
    cmd = bundle_command([folder / "configs" / c for c in configs], root, args)
    proc = subprocess.run(cmd, cwd=REPO, env=bundle_env(), capture_output=True, encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(
            f"{folder.name} {' '.join(configs)} failed ({proc.returncode}) in {root}:\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout + proc.stderr


def cuda_missing(device: str, fix: str = "use --device cpu") -> bool:
    """True, after an error line on stderr that ends with ``fix``, when ``device`` is ``cuda`` and torch sees no
    CUDA device (the benchmark's ``main`` then returns 2)."""
    if device != "cuda" or torch.cuda.is_available():
        return False
    print(f"error: no CUDA device (torch.cuda.is_available() is False); {fix}.", file=sys.stderr)
    return True


def cpu_name() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (Linux), else what :mod:`platform` reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float | None:
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


# ------------------------------------------------------------------ our backbone against MONAI's ViT


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


TRAIN_VARIANTS = ("ours", "monai", "monai_save_attn", "monai_flash")
TEACHER_VARIANTS = ("ours", "ours_last", "ours_all", "monai", "monai_save_attn_cls")


def build_comparison(preset: str, device: torch.device) -> tuple[nn.Module, dict[str, nn.Module]]:
    """Our ``SharedBackbone`` (drop-path 0) and MONAI ``ViT`` models carrying its weights.

    Args:
        preset: backbone preset name (``"base"`` = ViT-B).
        device: where the models live.

    Returns:
        ``(ours, {"plain": ViT, "save_attn": ViT(save_attn=True), "flash": ViT with flash-attention blocks})``.
    """
    from unimedi_monai.networks.backbone import SharedBackbone

    torch.manual_seed(0)
    ours = SharedBackbone({"preset": preset, "drop_path_rate": 0.0}).to(device)
    cfg = ours.config
    monai_models = {
        "plain": build_monai_blocks(cfg),
        "save_attn": build_monai_blocks(cfg, save_attn=True),
        "flash": build_monai_blocks(cfg, flash=True),
    }
    for vit in monai_models.values():
        copy_weights(ours, vit)
        vit.to(device)
    return ours, monai_models


def bench_length(
    ours: nn.Module,
    monai_models: Mapping[str, nn.Module],
    preset: str,
    length: int,
    batch: int,
    warmup: int,
    repeats: int,
    dtype: torch.dtype,
    train_variants: Sequence[str] = TRAIN_VARIANTS,
    teacher_variants: Sequence[str] = TEACHER_VARIANTS,
    check: bool = True,
) -> tuple[dict[str, Any], dict[str, Any], float]:
    """Time the training step and the teacher forward of ours against MONAI's at one sequence length.

    1. Training step (forward + backward, variants in ``train_variants``): ``ours``, ``monai`` (plain ``ViT``),
       ``monai_save_attn`` and ``monai_flash``.
    2. Teacher forward (eval, no grad, variants in ``teacher_variants``): ``ours`` without [CLS] attention,
       ``ours_last`` / ``ours_all`` with it (``cls_attention="last"`` / ``"all"``), ``monai`` and
       ``monai_save_attn_cls`` (the ``save_attn`` forward plus reading the [CLS] rows).

    Args:
        ours: the ``SharedBackbone`` (possibly compiled).
        monai_models: :func:`build_comparison`'s MONAI models (possibly compiled).
        preset: the backbone preset name (labels the rows).
        length: sequence length including [CLS].
        batch: batch size.
        warmup: untimed calls of every variant first (the first one's time is kept as ``first_ms``: with
            ``torch.compile`` it holds the compilation).
        repeats: timed interleaved rounds (medians reported).
        dtype: autocast dtype (``torch.float32``: no autocast).
        train_variants: which training-step variants to time.
        teacher_variants: which teacher-forward variants to time.
        check: first check (fp32, eval) that every MONAI model computes what ours computes.

    Returns:
        ``(train_row, teacher_row, max_abs_diff)``; the rows hold ``<variant>_ms`` medians, the ratios whose
        two variants were timed, ``first_ms`` and every timed repeat (``times_ms``).
    """
    device = next(ours.parameters()).device
    cfg = ours.config
    autocast = torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32)
    timer = Timer(device)
    all_models = [ours, *monai_models.values()]
    gen = torch.Generator(device="cpu").manual_seed(length)
    tokens = torch.randn(batch, length - 1, cfg.hidden_size, generator=gen).to(device)
    with torch.no_grad():
        full = torch.cat([ours.cls_token.expand(batch, -1, -1), tokens], dim=1).contiguous()
    worst = check_equivalence(ours, dict(monai_models), tokens, full) if check else float("nan")

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

    train_fns = {
        "ours": ours_step,
        "monai": monai_step(monai_models["plain"]),
        "monai_save_attn": monai_step(monai_models["save_attn"]),
        "monai_flash": monai_step(monai_models["flash"]),
    }
    teacher_fns = {
        "ours": teacher(None),
        "ours_last": teacher("last"),
        "ours_all": teacher("all"),
        "monai": monai_teacher(monai_models["plain"], False),
        "monai_save_attn_cls": monai_teacher(monai_models["save_attn"], True),
    }
    row_key = {"size": SIZE_LABELS.get(preset, preset), "preset": preset, "tokens": length, "batch": batch}

    for m in all_models:
        m.train()
    variants = Variants({k: train_fns[k] for k in train_variants}, timer)
    train = variants.run(warmup, repeats)
    zero_grads()
    train_row: dict[str, Any] = {**row_key, **{f"{k}_ms": v for k, v in train.items()}}
    for name, (a, b) in {
        "ratio_ours_monai": ("ours", "monai"),
        "ratio_ours_monai_flash": ("ours", "monai_flash"),
        "speedup_vs_monai_save_attn": ("monai_save_attn", "ours"),
    }.items():
        if a in train and b in train:
            train_row[name] = train[a] / train[b]
    train_row["first_ms"] = variants.first_ms
    train_row["times_ms"] = variants.raw()

    for m in all_models:
        m.eval()
    variants = Variants({k: teacher_fns[k] for k in teacher_variants}, timer)
    fwd = variants.run(warmup, repeats)
    teacher_row: dict[str, Any] = {**row_key, **{f"{k}_ms": v for k, v in fwd.items()}}
    for name, key in (("ratio_last_none", "ours_last"), ("ratio_all_none", "ours_all")):
        if key in fwd and "ours" in fwd:
            teacher_row[name] = fwd[key] / fwd["ours"]
    teacher_row["first_ms"] = variants.first_ms
    teacher_row["times_ms"] = variants.raw()
    for m in all_models:
        m.train()
    return train_row, teacher_row, worst


# ------------------------------------------------------------------------ one pre-training step

REPORTS = (
    "Heart size is normal. The lungs are clear without focal consolidation, effusion or pneumothorax.",
    "Small nodule in the right upper lobe. No pleural effusion. Mediastinal contours are unremarkable.",
    "Patchy opacity at the left lung base, which may reflect atelectasis or early pneumonia.",
    "Mild cardiomegaly with pulmonary vascular congestion. Small bilateral pleural effusions.",
)
# aten ops whose time counts as matrix-product work in the profile summary.
_MATMUL_OPS = (
    "aten::mm",
    "aten::addmm",
    "aten::bmm",
    "aten::baddbmm",
    "aten::matmul",
    "aten::linear",
    "aten::convolution",
    "aten::_convolution",
    "aten::mkldnn_convolution",
    "aten::convolution_backward",
    "aten::_scaled_dot_product_flash_attention_for_cpu",
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
    "aten::_scaled_dot_product_efficient_attention",
    "aten::_scaled_dot_product_flash_attention",
    "aten::_efficient_attention_backward",
    "aten::_flash_attention_backward",
    "aten::_scaled_dot_product_efficient_attention_backward",
    "aten::_scaled_dot_product_flash_attention_backward",
)


def make_samples(n_xray: int, n_ct: int, ct_size: Sequence[int], seed: int = 0) -> list[dict[str, Any]]:
    """Transformed samples as a cached pre-training dataset yields them (X-rays first, then CTs).

    Args:
        n_xray: number of ``(1, 224, 224)`` X-rays.
        n_ct: number of ``(1, *ct_size)`` CT volumes.
        ct_size: CT size ``(H, W, D)``.
        seed: random seed of the synthetic intensities.

    Returns:
        a list of sample dicts with ``image``, ``report``, ``modality`` and ``index``.
    """
    g = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(n_xray + n_ct):
        is_ct = i >= n_xray
        shape = (1, *ct_size) if is_ct else (1, 224, 224)
        samples.append(
            {
                "image": torch.rand(shape, generator=g),
                "report": REPORTS[i % len(REPORTS)],
                "modality": "ct" if is_ct else "xray",
                "index": i,
            }
        )
    return samples


def build_step(
    preset: str,
    samples: list[dict[str, Any]],
    device: torch.device,
    dtype: torch.dtype,
    compile_backbone: bool,
    fused_adamw: bool = False,
    ct_size: Sequence[int] = (128, 128, 32),
    model: nn.Module | None = None,
) -> tuple[Callable[[], float], torch.nn.Module, dict[str, list[float]]]:
    """Build the model, optimiser and a closure running one training step.

    Args:
        preset: backbone preset (``"base"``, ``"small"``, ``"demo"``, ``"tiny"``).
        samples: the cached samples of one batch.
        device: where the step runs.
        dtype: autocast dtype (``torch.float32`` disables autocast).
        compile_backbone: ``torch.compile`` the student's and the teacher's backbones.
        fused_adamw: ``AdamW(fused=True)`` (one vectorised pass per parameter) instead of torch's default
            implementation (on CPU a loop of separate element-wise operations per parameter).
        ct_size: the CT input size ``(H, W, D)`` the model is built for.
        model: a ``UniMedI`` already built (e.g. from the pre-training bundle's ``network_def``) and on
            ``device``; None builds ``UniMedI(preset, ct_size=ct_size)`` with the default text encoder.

    Returns:
        ``(step, model, phases)``: ``step()`` runs one iteration and returns the loss; ``phases`` collects
        the milliseconds of each step's parts (``data``, ``forward``, ``backward``, ``optimizer``, ``ema``).
    """
    from unimedi_monai.data.collate import collate_mixed
    from unimedi_monai.engines.optim import param_groups
    from unimedi_monai.networks.unimedi import UniMedI

    torch.manual_seed(0)
    if model is None:
        model = UniMedI(preset, ct_size=tuple(ct_size)).to(device)
    model.train()
    if compile_backbone:
        model.encoder.backbone.compile(dynamic=False)
        model.teacher["encoder"].backbone.compile(dynamic=False)
    # as the pre-training bundle builds it (betas 0.9/0.98, torch's default implementation), or fused
    kind = {"fused": True} if fused_adamw else {}
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay=0.05), lr=1e-4, betas=(0.9, 0.98), **kind)
    amp = dtype != torch.float32
    collate = collate_mixed
    phases: dict[str, list[float]] = {k: [] for k in ("data", "forward", "backward", "optimizer", "ema")}

    def mark(t0: float, name: str) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        phases[name].append((now - t0) * 1000.0)
        return now

    def step() -> float:
        t = time.perf_counter()
        batch = collate(samples)
        xray, ct = batch["xray"], batch["ct"]
        xray_img = None if xray is None else xray["image"].to(device, non_blocking=True)
        ct_img = None if ct is None else ct["image"].to(device, non_blocking=True)
        t = mark(t, "data")
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=dtype, enabled=amp):
            out = model(
                xray=xray_img,
                xray_reports=None if xray is None else xray["report"],
                ct=ct_img,
                ct_reports=None if ct is None else ct["report"],
            )
        loss = out["loss"]
        t = mark(t, "forward")
        loss.backward()
        t = mark(t, "backward")
        params = [q for g in optimizer.param_groups for q in g["params"] if q.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, 3.0)  # as UniMedITrainer (grad_clip 3.0)
        optimizer.step()
        t = mark(t, "optimizer")
        model.update_teacher(0.996)
        mark(t, "ema")
        return float(loss.detach())

    return step, model, phases


def _cpu_attention_formulas() -> dict[Any, Callable[..., int]]:
    """FLOP formulas for the CPU flash-attention kernels, which ``FlopCounterMode`` does not know.

    torch's own formulas for the CUDA kernels: ``4 B H Lq Lk D`` forward (``q k^T`` and ``p v``) and
    ``10 B H Lq Lk D`` backward (the scores recomputed, then the gradients of ``v``, ``p``, ``q`` and ``k``).
    """
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten

    def forward(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    def backward(grad_shape: Any, query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
        return sdpa_backward_flop_count(grad_shape, query_shape, key_shape, value_shape)

    formulas: dict[Any, Callable[..., int]] = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        formulas[aten._scaled_dot_product_flash_attention_for_cpu] = forward
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        formulas[aten._scaled_dot_product_flash_attention_for_cpu_backward] = backward
    return formulas


def count_step_flops(step: Callable[[], float]) -> tuple[int, dict[str, int]]:
    """Matmul FLOPs of one step (see the module docstring for the rules) and their split by aten op.

    (``FlopCounterMode``'s per-module attribution is not used: with the backward passes of a model this
    size it credits work to the wrong modules; the per-op totals are exact.)
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=_cpu_attention_formulas()) as counter:
        step()
    total = int(counter.get_total_flops())
    per_op = {str(op).replace("aten.", ""): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return total, per_op


def gemm_fn(
    device: torch.device, dtype: torch.dtype, n: int = GEMM_N, calls: int = 3
) -> tuple[Callable[[], None], int]:
    """A closure running ``calls`` ``n x n`` matmuls, and its FLOP count (``2 n^3`` per matmul)."""
    gemm_dtype = torch.float32 if device.type == "cpu" or dtype == torch.float32 else dtype
    a = torch.randn(n, n, device=device, dtype=gemm_dtype)
    b = torch.randn(n, n, device=device, dtype=gemm_dtype)
    out = torch.empty(n, n, device=device, dtype=gemm_dtype)

    def run() -> None:
        for _ in range(calls):
            torch.mm(a, b, out=out)

    return run, 2 * n**3 * calls


def profile_step(step: Callable[[], float], top: int = 15) -> dict[str, Any]:
    """Profile one step and split its self time into matrix products and the rest.

    Returns:
        ``{"total_ms", "matmul_ms", "other_ms", "top": [(op, self ms, calls), ...]}``.
    """
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        step()
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    use_cuda = torch.cuda.is_available()

    def self_ms(e: Any) -> float:
        return (e.self_device_time_total if use_cuda else e.self_cpu_time_total) / 1000.0

    total = sum(self_ms(e) for e in events)
    matmul = sum(self_ms(e) for e in events if e.key in _MATMUL_OPS)
    ranked = sorted(events, key=self_ms, reverse=True)[:top]
    return {
        "total_ms": total,
        "matmul_ms": matmul,
        "other_ms": total - matmul,
        "top": [(e.key, round(self_ms(e), 1), int(e.count)) for e in ranked],
    }


# ---------------------------------------------------------------------------- machines and results


def machine_meta(device: torch.device) -> dict[str, Any]:
    """What ran the benchmark: device name, torch / MONAI / Python versions, threads, load average."""
    import monai

    meta: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "device_type": device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_start": load_average(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        meta["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        meta["gpu_count"] = torch.cuda.device_count()
    return meta


def finite_or_none(value: Any) -> Any:
    """``value`` with NaN / inf floats (also inside dicts and lists) replaced by None, so the JSON stays valid."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` to ``path`` atomically (a half-written file never appears under its name)."""
    from unimedi_monai.io.atomic_io import atomic_open

    with atomic_open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)  # readable like any other output (the temporary file was private)
    return Path(path)


def write_json_results(data: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write results as JSON atomically (non-finite floats as null)."""
    return write_text_atomic(json.dumps(finite_or_none(dict(data)), indent=2) + "\n", path)


@dataclass
class Deadline:
    """A wall-clock budget: the whole run's, or one section's inside it.

    Args:
        seconds: the budget from now.
    """

    seconds: float
    start: float = field(default_factory=time.perf_counter)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @property
    def left(self) -> float:
        return self.seconds - self.elapsed

    def expired(self) -> bool:
        return self.left <= 0

    def sub(self, seconds: float) -> Deadline:
        """A budget of ``seconds`` from now, cut to what is left of this one."""
        return Deadline(max(0.0, min(seconds, self.left)))


def attach_time_limit(engine: Any, seconds: float) -> Any:
    """Stop an ignite engine cleanly once ``seconds`` have passed since its run started.

    The engine finishes the current iteration, then ``terminate()`` ends the run; ignite still fires
    ``COMPLETED``, so final checkpoints (``CheckpointHandler``'s ``model.pt``) are written as after a full run.
    Used from a bundle config with ``benchmarks/`` on ``PYTHONPATH``: ``imports: [..., "$import common"]`` and
    ``"$common.attach_time_limit(@train#trainer, 180)"`` in ``run`` before the trainer runs.

    Args:
        engine: the trainer.
        seconds: training time budget.

    Returns:
        the engine.
    """
    from ignite.engine import Events

    state: dict[str, float] = {}

    def started(_: Any) -> None:
        state["t0"] = time.perf_counter()

    def check(e: Any) -> None:
        if time.perf_counter() - state.get("t0", time.perf_counter()) > seconds:
            e.logger.info("time limit of %.0f s reached after %d iterations: stopping", seconds, e.state.iteration)
            print(f"time limit of {seconds:.0f} s reached after {e.state.iteration} iterations", flush=True)
            e.terminate()

    engine.add_event_handler(Events.STARTED, started)
    engine.add_event_handler(Events.ITERATION_COMPLETED, check)
    return engine
