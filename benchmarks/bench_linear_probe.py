"""Benchmark the cached-feature linear probe (1% / 10% / 100% label fractions over 10k images).

Measures, in one process:

1. **Linear probe on cached features**: :func:`unimedi_monai.classification.train_linear_probe` on
   ``--n`` (10,000) synthetic feature vectors of the encoder's width (768 for ViT-B), 3 classes as in
   COVIDx, for the 1%, 10% and 100% label fractions (stratified, as the bundle draws them), with
   validation on ``--n-val`` vectors every 10 epochs. Synthetic features suffice: the probe's cost
   depends only on their number and width.
2. **Feature extraction** throughput: images per second of the frozen encoder
   (:class:`~unimedi_monai.networks.classifier.UniMedIClassifier.features`, eval, no grad) with the
   ``--preset`` backbone (``base`` = ViT-B/16) at 224x224, median over ``--batches`` batches after a warm-up.
3. **Baseline** measured in the same run: one training step of the linear layer *through* the frozen
   encoder (no cache: every epoch encodes the images again), per image. The table gives the time of
   the three fractions with the cache (one extraction pass over all images + the three probes)
   against without it (``epochs`` encoder passes over each fraction's images), projected from these
   per-image timings, and their ratio.

Usage::

    python benchmarks/bench_linear_probe.py                       # CPU, ViT-B, 10k features
    python benchmarks/bench_linear_probe.py --quick               # tiny preset, 2k features, 100 epochs
    python benchmarks/bench_linear_probe.py --device cuda --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import common  # noqa: F401  (first: puts the checkout on sys.path when the package is not installed)
import torch

from unimedi_monai.classification import get_task, train_linear_probe  # noqa: E402
from unimedi_monai.classification.tasks import fraction_indices  # noqa: E402
from unimedi_monai.networks.classifier import UniMedIClassifier  # noqa: E402

FRACTIONS = (0.01, 0.1, 1.0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _synthetic_features(n: int, centres: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` vectors around the class ``centres`` (COVIDx-like class shares 60 / 30 / 10%)."""
    gen = torch.Generator().manual_seed(seed)
    classes, width = centres.shape
    labels = torch.multinomial(torch.tensor([0.6, 0.3, 0.1][:classes]), n, replacement=True, generator=gen)
    return centres[labels] * 0.5 + torch.randn(n, width, generator=gen), labels


def _median_time(fn, device: torch.device, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000, help="training feature vectors (images)")
    p.add_argument("--n-val", type=int, default=1_000)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--preset", default="base", help="backbone preset for the extraction timing")
    p.add_argument("--batch", type=int, default=8, help="images per extraction batch")
    p.add_argument("--batches", type=int, default=3, help="timed extraction batches")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="tiny preset, 2k vectors, 100 epochs")
    p.add_argument("--json", default=None, help="write the figures to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.n_val, args.epochs, args.preset, args.batches = 2_000, 500, 100, "tiny", 2
    device = torch.device(args.device)
    if hasattr(os, "getloadavg") and os.getloadavg()[0] > (os.cpu_count() or 1) * 0.5:
        print(
            f"warning: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: timings are inflated by other "
            "processes"
        )
    torch.manual_seed(0)
    task = get_task("covidx")
    net = UniMedIClassifier(task.num_classes, args.preset, freeze_encoder=True).to(device).eval()
    width = net.feature_size

    # 1. linear probe on cached features
    centres = torch.randn(task.num_classes, width, generator=torch.Generator().manual_seed(0)) * 0.1
    x, y = _synthetic_features(args.n, centres, 1)
    vx, vy = _synthetic_features(args.n_val, centres, 2)
    items = [{"label": int(v)} for v in y]
    train_linear_probe(x[:64], y[:64], task, epochs=2, device=device)  # warm-up (lazy initialisation)
    probe = {}
    for pct in FRACTIONS:
        keep = fraction_indices(task, items, pct, seed=0)
        t0 = time.perf_counter()
        result = train_linear_probe(x[keep], y[keep], task, vx, vy, epochs=args.epochs, device=device)
        _sync(device)
        probe[pct] = {"n_train": len(keep), "seconds": time.perf_counter() - t0, "val_accuracy": result.best_metric}

    # 2. feature extraction throughput (frozen encoder, eval, no grad)
    images = torch.randn(args.batch, 1, 224, 224, device=device)
    with torch.no_grad():
        t_extract = _median_time(lambda: net.features(images), device, args.batches) / args.batch

    # 3. baseline: a training step of the head through the frozen encoder, per image
    head_opt = torch.optim.AdamW(net.head.parameters(), lr=1e-2)
    labels = torch.randint(0, task.num_classes, (args.batch,), device=device)
    loss_fn = task.loss()

    def step() -> None:
        loss = loss_fn(net(images), labels)
        head_opt.zero_grad()
        loss.backward()
        head_opt.step()

    t_through = _median_time(step, device, args.batches) / args.batch

    n_all = args.n + args.n_val
    cached_total = n_all * t_extract + sum(r["seconds"] for r in probe.values())
    uncached_total = sum(
        args.epochs * r["n_train"] * t_through + args.n_val * t_extract * (args.epochs // 10) for r in probe.values()
    )
    print(
        f"\nlinear probe, {args.n} training + {args.n_val} validation feature vectors of width {width}, "
        f"{args.epochs} epochs, device {device}"
    )
    print(f"{'data_pct':>8} {'n_train':>8} {'probe s':>9} {'val acc':>8}")
    for pct, r in probe.items():
        print(f"{pct:>8} {r['n_train']:>8} {r['seconds']:>9.2f} {r['val_accuracy']:>8.3f}")
    print(
        f"\nfeature extraction ({args.preset}, 224x224, batch {args.batch}): {t_extract * 1000:.1f} ms/image "
        f"({1 / t_extract:.1f} images/s); one pass over {n_all} images: {n_all * t_extract / 60:.1f} min"
    )
    print(f"baseline, head trained through the frozen encoder: {t_through * 1000:.1f} ms/image/step")
    print(
        f"1% + 10% + 100% runs: with the cache {cached_total / 60:.1f} min (projected from the timings above), "
        f"without {uncached_total / 3600:.1f} h; ratio without/with {uncached_total / cached_total:.0f}x"
    )
    out = {
        "device": str(device),
        "preset": args.preset,
        "width": width,
        "n": args.n,
        "n_val": args.n_val,
        "epochs": args.epochs,
        "probe": {str(k): v for k, v in probe.items()},
        "extract_s_per_image": t_extract,
        "through_encoder_s_per_image": t_through,
        "cached_total_s": cached_total,
        "uncached_total_s": uncached_total,
        "ratio": uncached_total / cached_total,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
