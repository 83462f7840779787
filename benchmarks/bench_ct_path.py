"""Can the CT path learn the finding at all? Supervised probes of the demo encoder's 3D path, in minutes.

Pre-training leaves the CT [CLS] collapsed (cosine 0.999 between CTs, retrieval at chance). This benchmark
asks whether that is the objective's fault or the CT path's: it trains each variant below with plain
supervision (cross-entropy on the demo CTs' finding, 5 classes) from random init, same data, steps, batch and
seed, and reports how well it fits the training CTs and how it does on held-out CTs. A variant that cannot
fit its training CTs under direct supervision will not learn them from reports either.

Variants (``--variants``):

- ``stem-max``: the 3D tokenizer's patch stem alone, tokens max-pooled, a linear head (the reference: a
  lesion covers a few of the 512 tokens, and a max keeps it);
- ``stem-mean``: the same, mean-pooled (the lesion diluted by 1/512, without the transformer);
- ``vit-cls``: stem + position embedding + the shared backbone, the [CLS] token alone;
- ``vit-mean``: the same backbone, its patch tokens mean-pooled;
- ``vit-max``: the same backbone, its patch tokens max-pooled (does the backbone keep the lesion in its
  tokens, and only its [CLS] fail to gather it?);
- ``vit-pooled``: the backbone's global feature as its ``pooling`` makes it (the [CLS] alone, or with
  ``--override "backbone={'preset': 'demo', 'pooling': 'cls_max'}"`` the [CLS] plus the layer-normalised
  token max), what pre-training aligns.

The network comes from ``bundles/pretrain/configs/train.yaml`` (``network_def``), with ``--override KEY=VALUE``
applied to that config (e.g. ``--override position_scale=0.028``), so a candidate fix is screened here before
a 25-minute pre-training run. Data: the demo CTs of ``--demo-dir`` (default ``bundles/pretrain/demo_data``,
generated there with the bundle's defaults when absent), its training section split by patient order into
``--n-train`` fitting CTs and the rest held out.

Usage::

    python benchmarks/bench_ct_path.py                         # all six variants, 200 steps each
    python benchmarks/bench_ct_path.py --variants vit-cls --override position_scale=0.028 --steps 100
"""

from __future__ import annotations

import argparse
import ast
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import common  # noqa: F401  (first: puts the checkout on sys.path when the package is not installed)
import torch
import torch.nn.functional as F
from common import format_table, load_average, write_json_results

from unimedi_monai.data.demo.spec import FINDINGS  # noqa: E402
from unimedi_monai.networks.attention_selection import attention_statistics  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("stem-max", "stem-mean", "vit-cls", "vit-mean", "vit-max", "vit-pooled")


def _parse_override(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--override needs KEY=VALUE, got {text!r}.")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value  # a plain string


def load_ct_data(demo_dir: Path, overrides: list[tuple[str, object]]) -> tuple[object, torch.Tensor, torch.Tensor]:
    """The bundle's network (random init) and its preprocessed training CTs with finding labels."""
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    parser = ConfigParser()
    parser.read_config(str(ROOT / "bundles/pretrain/configs/train.yaml"))
    parser["bundle_root"] = str(ROOT / "bundles/pretrain")
    parser["data_root"] = str(demo_dir)  # the demo folder, with the demo's defaults (backbone demo)
    for key, value in overrides:
        if key not in parser.config:
            raise SystemExit(f"--override {key}: no such key in bundles/pretrain/configs/train.yaml.")
        parser[key] = value
    net = parser.get_parsed_content("network_def")
    items = [i for i in parser.get_parsed_content("train#datalist") if i["modality"] == "ct"]
    if not items:
        raise SystemExit(f"{demo_dir}: the datalist's training section holds no CT.")
    preprocess = Compose(parser.get_parsed_content("ct_preprocessing"))
    images = torch.stack([preprocess(dict(item))["image"] for item in items])
    labels = torch.tensor([FINDINGS.index(item["finding"]) for item in items])
    return net, images, labels


def _features(
    net: object, variant: str, x: torch.Tensor, attention: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pooled features of ``x``, and the backbone's last-block [CLS] attention when ``attention`` (else None)."""
    encoder = net.encoder
    if variant.startswith("stem"):
        tokens = encoder.tokenizer_3d.proj(x, 0).flatten(2)  # (B, C, N)
        return (tokens.amax(2) if variant == "stem-max" else tokens.mean(2)), None
    out = encoder(encoder.embed_volume(x), cls_attention="last" if attention else None)
    if variant == "vit-mean":
        return out["patches"].mean(1), out["cls_attention"]
    if variant == "vit-max":
        return out["patches"].amax(1), out["cls_attention"]
    return out["cls" if variant == "vit-cls" else "pooled"], out["cls_attention"]


def train_variant(
    net: object, variant: str, data: tuple[torch.Tensor, ...], steps: int, batch: int, lr: float, seed: int
) -> dict[str, float]:
    """Train one variant from the network's init; return train / held-out accuracy and attention entropy."""
    x_train, y_train, x_test, y_test = data
    torch.manual_seed(seed)
    modules = [net.encoder.tokenizer_3d.proj] if variant.startswith("stem") else [net.encoder]
    width = net.encoder.hidden_size
    head = torch.nn.Linear(width, len(FINDINGS))
    params = [p for m in modules for p in m.parameters()] + list(head.parameters())
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.04)
    for m in modules:
        m.train()
    start = time.perf_counter()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(x_train), (batch,))
        loss = F.cross_entropy(head(_features(net, variant, x_train[idx])[0]), y_train[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - start
    for m in modules:
        m.eval()
    with torch.no_grad():
        f_train, _ = _features(net, variant, x_train)
        f_test, attention = _features(net, variant, x_test, attention=True)
        out = {
            "train_acc": float((head(f_train).argmax(1) == y_train).float().mean()),
            "test_acc": float((head(f_test).argmax(1) == y_test).float().mean()),
            "last_loss": sum(losses[-20:]) / len(losses[-20:]),
            "seconds": seconds,
            "attention_entropy": float("nan"),
        }
        if attention is not None:
            out["attention_entropy"] = attention_statistics(attention)[0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--steps", type=int, default=200, help="training steps per variant (default 200)")
    ap.add_argument("--batch", type=int, default=8, help="CTs per step (default 8)")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=72, help="training CTs fitted; the rest are held out")
    ap.add_argument("--demo-dir", type=Path, default=ROOT / "bundles/pretrain/demo_data")
    ap.add_argument("--override", type=_parse_override, action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (args.demo_dir / "datalist.json").is_file():
        print(f"[bench_ct_path] generating the demo data in {args.demo_dir}", flush=True)
        subprocess.run([sys.executable, "-m", "unimedi_monai.data.demo", str(args.demo_dir), "--quiet"], check=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    torch.manual_seed(args.seed)  # the network's init
    net, images, labels = load_ct_data(args.demo_dir, args.override)
    if not 0 < args.n_train < len(images):
        raise SystemExit(f"--n-train must be between 1 and {len(images) - 1} (the demo holds {len(images)} CTs).")
    data = (images[: args.n_train], labels[: args.n_train], images[args.n_train :], labels[args.n_train :])
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    majority_train = float(data[1].bincount(minlength=len(FINDINGS)).max()) / len(data[1])
    majority = float(data[3].bincount(minlength=len(FINDINGS)).max()) / len(data[3])
    print(
        f"CTs: {args.n_train} fitted, {len(data[2])} held out (majority class {majority:.3f}); "
        f"{args.steps} steps of {args.batch}, lr {args.lr}, seed {args.seed}, overrides {dict(args.override)}; "
        f"load {load_average()}",
        flush=True,
    )
    rows, results = [], {}
    for variant in args.variants:
        net.load_state_dict(initial)
        r = train_variant(net, variant, data, args.steps, args.batch, args.lr, args.seed)
        results[variant] = r
        rows.append(
            [
                variant,
                f"{r['train_acc']:.3f} ({majority_train:.3f})",
                f"{r['test_acc']:.3f} ({majority:.3f})",
                f"{r['last_loss']:.3f} ({math.log(len(FINDINGS)):.3f})",
                "-" if math.isnan(r["attention_entropy"]) else f"{r['attention_entropy']:.3f}",
                f"{r['seconds']:.0f}",
            ]
        )
        print(f"[bench_ct_path] {variant}: {r}", flush=True)
    headers = [
        "variant",
        "train acc (majority)",
        "held-out acc (majority)",
        "loss, last 20 steps (ln 5)",
        "[CLS] attention entropy / log N",
        "s",
    ]
    print(format_table(headers, rows))
    ref = results.get("stem-max")
    if ref is not None:
        for variant, r in results.items():
            if variant != "stem-max":
                print(f"{variant}: train accuracy {r['train_acc'] / max(ref['train_acc'], 1e-9):.2f}x stem-max's")
    if args.json:
        write_json_results({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, args.json)


if __name__ == "__main__":
    main()
