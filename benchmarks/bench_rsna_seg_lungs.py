"""Real check of the 2D segmentation bundle: lung fields on 129 real chest X-rays, pre-trained vs random encoder.

``../shared/data/covid_cxr_notes/masks/`` holds 129 binary lung masks (255 = lung) of real frontal
X-rays in ``images/`` (see that folder's README). This script writes a 2D datalist of those
image / mask pairs (absolute paths; the data is read in place, never copied), split by patient
(``metadata.csv``'s ``patientid``) into training / validation / test, and runs the bundle itself
(``python -m monai.bundle run``: ``train.yaml``, then ``train.yaml`` + ``evaluate.yaml``) once with
``--init pretrained`` and once with ``--init random``, the same data, seed and settings. It prints the
test Dice / IoU of both (from each run's ``eval/metrics.json``) and of the trivial all-foreground mask.

The pre-trained encoder comes from ``--pretrained PATH`` (a pretrain bundle ``models/model.pt`` of
the same ``--backbone``), or, by default, from a pre-training run of the pretrain bundle on its
built-in demo data (synthetic X-rays and CTs; ``--pretrain-args`` sets its length) made here first.

Usage::

    python benchmarks/bench_rsna_seg_lungs.py                                   # demo pre-training, then both runs
    python benchmarks/bench_rsna_seg_lungs.py --pretrained bundles/pretrain/models/model.pt --json lungs.json
    python benchmarks/bench_rsna_seg_lungs.py --image-size 224 --epochs 40 --device cuda
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from common import REPO as REPO_ROOT  # first: puts the checkout on sys.path when the package is not installed
from common import run_bundle

from unimedi_monai.data.datalist import split_by_patient  # noqa: E402

BUNDLE = REPO_ROOT / "bundles" / "rsna_segmentation"
DEFAULT_SHARED = Path(os.environ.get("UNIMEDI_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def lung_items(root: Path) -> list[dict]:
    """``{"image", "label", "patient_id"}`` for every mask in ``root/masks`` (patient from metadata.csv)."""
    patients = {}
    with open(root / "metadata.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            patients[row["filename"]] = row["patientid"]
    items = []
    for mask in sorted((root / "masks").glob("*.png")):
        image = root / "images" / mask.name
        if not image.is_file():
            raise FileNotFoundError(f"{mask} has no image {image}.")
        items.append({"image": str(image), "label": str(mask), "patient_id": patients.get(mask.name, mask.name)})
    if not items:
        raise FileNotFoundError(f"no lung masks in {root / 'masks'}.")
    return items


def write_datalist(items: list[dict], folder: Path, test_fraction: float, val_fraction: float, seed: int) -> Path:
    """A datalist with patient-disjoint training / validation / test sections."""
    rest, test = split_by_patient(items, test_fraction, seed + 1)
    train, val = split_by_patient(rest, val_fraction, seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "datalist.json"
    path.write_text(
        json.dumps(
            {
                "description": "covid_cxr_notes lung masks (read in place)",
                "labels": {"0": "background", "1": "lung"},
                "training": train,
                "validation": val,
                "test": test,
            },
            indent=1,
        )
    )
    return path


def trivial_foreground_dice(datalist: Path, image_size: int) -> float:
    """Dice of an all-lung mask on the test images, at the bundle's resolution (MONAI's DiceMetric)."""
    import torch
    from monai.metrics import DiceMetric

    from unimedi_monai.bundle import bundle_item

    config = REPO_ROOT / "bundles" / "rsna_segmentation" / "configs" / "train.yaml"  # the bundle's own pipeline
    tf = bundle_item(config, "validate#transforms", {"image_size": image_size, "num_classes": 2})
    metric = DiceMetric(include_background=False)
    for item in json.loads(datalist.read_text())["test"]:
        label = tf(dict(item))["label"][None]
        metric(torch.ones_like(label), label)
    return float(metric.aggregate())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared-data", type=Path, default=DEFAULT_SHARED, help="folder holding covid_cxr_notes/")
    parser.add_argument("--workdir", type=Path, default=None, help="outputs (default: a temporary folder)")
    parser.add_argument(
        "--pretrained",
        type=Path,
        default=None,
        help="a pre-training models/model.pt (default: a demo pre-training run here)",
    )
    parser.add_argument(
        "--pretrain-args", default="", help='extra arguments of the demo pre-training run, e.g. "--max_epochs 6"'
    )
    parser.add_argument("--backbone", default="demo")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--decoder-channels", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument(
        "--label-fraction",
        type=float,
        default=1.0,
        help="share of the training X-rays used (the bundle's label_fraction)",
    )
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu | cuda (default: the bundle's choice)")
    parser.add_argument(
        "--inits", default="pretrained,random", help="which encoder initialisations to run (comma-separated)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)

    data_root = args.shared_data / "covid_cxr_notes"
    if not (data_root / "masks").is_dir():
        print(
            f"lung masks not found at {data_root / 'masks'}; clone with ../shared beside the repository or set "
            "UNIMEDI_SHARED_DATA."
        )
        return 2
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_rsna_seg_lungs-"))
    work.mkdir(parents=True, exist_ok=True)
    datalist = write_datalist(lung_items(data_root), work / "data", args.test_fraction, args.val_fraction, args.seed)
    sections = json.loads(datalist.read_text())
    sizes = {s: len(sections[s]) for s in ("training", "validation", "test")}

    inits = [i.strip() for i in args.inits.split(",") if i.strip()]
    if not inits or any(i not in ("pretrained", "random") for i in inits):
        parser.error(f"--inits must list pretrained and / or random, got {args.inits!r}")
    started = time.perf_counter()
    if "pretrained" not in inits:
        pretrained, source = Path("unused"), "none (random only)"
    elif args.pretrained is None:
        pretrain_root = work / "pretrain"
        pre_args = ["--backbone", args.backbone, "--num_workers", "0", *args.pretrain_args.split()]
        if args.device:
            pre_args += ["--device", f"$torch.device('{args.device}')"]
        run_bundle(REPO_ROOT / "bundles" / "pretrain", ["train.yaml"], pretrain_root, pre_args)
        pretrained = pretrain_root / "models" / "model.pt"
        source = f"demo pre-training run of bundles/pretrain (synthetic data; args: {' '.join(pre_args)})"
    else:
        pretrained, source = args.pretrained.resolve(), f"checkpoint {args.pretrained}"
    pretrain_s = time.perf_counter() - started

    common = [
        "--dataset",
        "datalist",
        "--dataset_dir",
        str(datalist.parent),
        "--class_names",
        "['lung']",
        "--backbone",
        args.backbone,
        "--image_size",
        str(args.image_size),
        "--decoder_channels",
        str(args.decoder_channels),
        "--max_epochs",
        str(args.epochs),
        "--val_interval",
        "1",
        "--batch_size",
        str(args.batch_size),
        "--lr",
        str(args.lr),
        "--num_workers",
        "0",
        "--seed",
        str(args.seed),
        "--label_fraction",
        str(args.label_fraction),
    ]
    if args.device:
        common += ["--device", f"$torch.device('{args.device}')"]
    results = {}
    for init in inits:
        root = work / f"lungs_{init}" if args.label_fraction == 1.0 else work / f"lungs_{init}_{args.label_fraction:g}"
        extra = ["--init", init, "--pretrained_path", str(pretrained)]
        t0 = time.perf_counter()
        log = run_bundle(BUNDLE, ["train.yaml"], root, common + extra)
        loaded = next(
            (line.split(" - ")[-1] for line in log.splitlines() if "pre-trained student encoder from" in line), None
        )
        if init == "pretrained" and loaded is None:
            raise RuntimeError(f"the pretrained run logged no encoder load:\n{log[-2000:]}")
        run_bundle(BUNDLE, ["train.yaml", "evaluate.yaml"], root, common)
        metrics = json.loads((root / "eval" / "metrics.json").read_text())
        best = json.loads((root / "eval" / "best_validation.json").read_text())
        results[init] = {
            "test_dice": metrics["dice"],
            "test_iou": metrics["iou"],
            "best_val_dice": best["mean_dice"],
            "best_epoch": best["epoch"],
            "seconds": round(time.perf_counter() - t0, 1),
            "overlays": metrics.get("overlays"),
            "encoder_load": loaded,
        }
    trivial = trivial_foreground_dice(datalist, args.image_size)

    print(
        f"lung segmentation on covid_cxr_notes/masks: {sizes['training']} train / {sizes['validation']} val / "
        f"{sizes['test']} test X-rays (patient split, seed {args.seed}); backbone {args.backbone}, "
        f"{args.image_size} px, {args.epochs} epochs, "
        f"label fraction {args.label_fraction:g}"
    )
    print(f"pre-trained encoder: {source}")
    print(f"{'init':<12}{'test Dice':>10}{'test IoU':>10}{'best val Dice':>15}{'epoch':>7}{'time s':>9}")
    for init, r in results.items():
        print(
            f"{init:<12}{r['test_dice']:>10.3f}{r['test_iou']:>10.3f}{r['best_val_dice']:>15.3f}{r['best_epoch']:>7}{r['seconds']:>9.0f}"
        )
    for init, r in results.items():
        if r["encoder_load"]:
            print(f"{init}: {r['encoder_load']}")
    print(f"{'all-lung':<12}{trivial:>10.3f}  (trivial mask)")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "sizes": sizes,
                    "settings": vars(args)
                    | {
                        "json": str(args.json),
                        "shared_data": str(args.shared_data),
                        "workdir": str(work),
                        "pretrained": str(pretrained),
                    },
                    "pretrained_source": source,
                    "pretrain_seconds": round(pretrain_s, 1),
                    "results": results,
                    "trivial_all_foreground_dice": trivial,
                },
                indent=2,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
