"""Real-data check of the pre-training recipe on the shared COVID-19 chest X-ray set with clinical notes.

Data: ``../shared/data/covid_cxr_notes`` (or ``$UNIMEDI_SHARED_DATA/covid_cxr_notes``): 201 training
and 61 validation X-ray / note pairs (split by patient) and the same images in the COVIDx layout.

1. Pre-train ``bundles/pretrain`` with the CPU-sized ``demo`` preset on ``datalist.json`` for
   ``--epochs`` epochs, then evaluate on its validation pairs: image->report and report->image
   R@5 against chance (target: at least 1.5x).
2. Linear probe of the COVIDx classes (``bundles/covidx_classification``, ``mode: linear_probe``,
   [CLS] features) from that encoder and from a random-init encoder of the same size: macro AUC
   on its test split (target: pre-trained above random init).
3. Pixel baselines, measured in the same run, that say what these small splits allow: a ridge map
   from 16x16 pixels to the frozen report encoder's note embeddings (the same retrieval metric) and the
   bundle's linear probe on 16x16 pixels (the same AUC). Their settings are fixed, not searched.
4. How much X-rays differ between patients, real against demo: the mean correlation of two X-rays
   downsampled to 16x16 with each image's mean removed (the demo generator's X-rays should differ about as
   much as real ones; a copy of one template scores 1).

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

import numpy as np
import torch
from common import REPO, run_bundle  # before any unimedi_monai import: puts the checkout on sys.path if needed
from PIL import Image


def data_dir() -> Path:
    base = Path(os.environ.get("UNIMEDI_SHARED_DATA", REPO.parent / "shared" / "data"))
    return base / "covid_cxr_notes"


PIXELS = 16  # side of the downsampled X-ray the pixel baselines see
RIDGE = 100.0  # ridge penalty of the pixel -> note-embedding map


def _pixels(paths: list[str]) -> torch.Tensor:
    """Grey X-rays, centre-cropped square and downsampled to ``PIXELS x PIXELS``: ``(N, PIXELS**2)`` in 0..1."""
    out = []
    for path in paths:
        with Image.open(path) as im:
            im = im.convert("L")
            w, h = im.size
            s = min(w, h)
            box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
            out.append(np.asarray(im.crop(box).resize((PIXELS, PIXELS), Image.BILINEAR), np.float32).ravel() / 255.0)
    return torch.from_numpy(np.stack(out))


def pairwise_correlation(pixels: torch.Tensor) -> float:
    """Mean Pearson correlation between the rows of ``pixels`` ``(N, D)``, over all pairs of different rows."""
    x = pixels.double() - pixels.double().mean(dim=1, keepdim=True)
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    n = x.shape[0]
    return float(((x @ x.T).sum() - n) / (n * n - n))


def xray_variation(data: Path, work: Path, n_demo: int = 64) -> dict[str, float]:
    """:func:`pairwise_correlation` of the real training X-rays and of ``n_demo`` demo X-rays of each
    ``xray_variation`` (generated in ``work``), all as :func:`_pixels` sees them."""
    from unimedi_monai.data import load_datalist
    from unimedi_monai.data.demo import XRAY_VARIATIONS, generate_demo_dataset

    real = [i["image"] for i in load_datalist(data)["training"]]
    out = {"real": pairwise_correlation(_pixels(real)), "num_real": len(real), "num_demo": n_demo}
    for variation in XRAY_VARIATIONS:
        folder = work / f"demo_xrays_{variation}"
        demo = generate_demo_dataset(folder, n_xray=n_demo, n_ct=0, progress=False, xray_variation=variation)
        out[f"demo_{variation}"] = pairwise_correlation(
            _pixels(sorted(str(p) for p in (demo.parent / "xray").glob("*.png")))
        )
    return out


def pixel_baselines(data: Path) -> dict[str, float]:
    """Retrieval R@5 of a pixel ridge map into the frozen note embeddings, and the COVIDx macro AUC of the
    classification bundle's linear probe (:func:`train_linear_probe`, its defaults) on pixels (see the module
    docstring)."""
    from unimedi_monai.classification import classification_metrics, get_task, predict_probabilities, train_linear_probe
    from unimedi_monai.data import load_datalist
    from unimedi_monai.data.adapters.covidx import load_covidx
    from unimedi_monai.evaluation.retrieval import retrieval_recall
    from unimedi_monai.networks.text_encoder import ReportEncoder

    pairs = load_datalist(data)
    text = ReportEncoder(trainable_layers=0).eval()
    with torch.no_grad():
        notes = {s: text([i["report"] for i in pairs[s]]) for s in ("training", "validation")}
    x_tr, x_va = (_pixels([i["image"] for i in pairs[s]]) for s in ("training", "validation"))
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-3
    x_tr, x_va = (x_tr - mean) / std, (x_va - mean) / std
    t_mean = notes["training"].mean(0)
    eye = torch.eye(x_tr.shape[1])
    w = torch.linalg.solve(x_tr.T @ x_tr + RIDGE * eye, x_tr.T @ (notes["training"] - t_mean))
    rec = retrieval_recall(x_va @ w, notes["validation"] - t_mean, ks=(5,))
    out = {"ridge_i2t_R@5": rec["i2t_R@5"], "ridge_t2i_R@5": rec["t2i_R@5"]}

    covidx = load_covidx(data / "covidx")
    task = get_task("covidx")
    (p_tr, y_tr), (p_te, y_te) = (
        (_pixels([i["image"] for i in covidx[s]]), torch.tensor([int(i["label"]) for i in covidx[s]]))
        for s in ("training", "test")
    )
    probe = train_linear_probe(p_tr, y_tr, task)
    probs = predict_probabilities(p_te @ probe.weight.T + probe.bias, task)
    out["pixel_probe_auc"] = classification_metrics(probs, y_te, task)["auc"]
    return out


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
            k: m[k]
            for k in ("i2t_R@5", "t2i_R@5", "chance_R@5", "i2t_R@1", "t2i_R@1", "chance_R@1", "num_pairs")
            if k in m
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
    rows["covidx_test_counts"] = {k[len("count_") :]: n for k, n in probe["random"].items() if k.startswith("count_")}
    rows["pixel_baselines"] = pixel_baselines(data)
    rows["xray_variation"] = xray_variation(data, args.work)
    v, px = rows["pretrain_val"], rows["pixel_baselines"]
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
    print(
        f"| pixel ridge i2t / t2i R@5 (baseline) | {px['ridge_i2t_R@5']:.3f} / {px['ridge_t2i_R@5']:.3f} | "
        f"chance {v['chance_R@5']:.3f} | {px['ridge_i2t_R@5'] / v['chance_R@5']:.2f}x / "
        f"{px['ridge_t2i_R@5'] / v['chance_R@5']:.2f}x | |"
    )
    print(f"| pixel probe macro AUC (baseline) | {px['pixel_probe_auc']:.3f} | chance 0.500 | | |")
    var = rows["xray_variation"]
    for variation in ("template", "patient"):
        print(
            f"| X-ray pairwise correlation, 16x16: demo `{variation}` ({var['num_demo']}) against real "
            f"({var['num_real']}) | {var[f'demo_{variation}']:.3f} | real {var['real']:.3f} | "
            f"{var[f'demo_{variation}'] - var['real']:+.3f} | |"
        )
    counts = ", ".join(f"{n} {c}" for c, n in rows["covidx_test_counts"].items())
    print(f"\nCOVIDx test split: {counts}; validation pairs: {v.get('num_pairs', '?')}.")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
