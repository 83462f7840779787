"""Smoke check on real CTs: a short fine-tune on the TotalSegmentator example cases, then Dice agreement.

The two real CTs in ``../shared/data/totalsegmentator/`` (a 30-slice NIfTI crop and a 20-slice DICOM
series) come with TotalSegmentator label maps; their ids are mapped to the 13 BCV organs
(:data:`~unimedi_monai.segmentation.organs.TOTALSEGMENTATOR_TO_BCV`). The network is fine-tuned on
both cases for a few steps and its sliding-window predictions on the same cases are compared with
those label maps. This checks that real CTs (NIfTI and DICOM) flow through reading, resampling,
training and sliding-window inference, and that the network fits them; it is training-set
agreement with model predictions, not a benchmark Dice.

    python benchmarks/real_ct_smoke.py --data_dir ../shared/data/totalsegmentator \\
        --pretrained bundles/pretrain/models/model.pt --backbone demo --steps 60 --output eval_smoke/metrics.json

A check of this repository on the shared data, not a tool of the package: it lives with the
benchmarks (it used to be ``unimedi_monai.segmentation.smoke``).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import common  # noqa: F401  (puts the checkout on sys.path when the package is not installed)
import torch

__all__ = ["run_smoke", "smoke_transforms", "main"]

logger = logging.getLogger(__name__)

#: the bundle whose pre-processing the smoke check runs
BCV_TRAIN_YAML = Path(__file__).resolve().parents[1] / "bundles" / "bcv_segmentation" / "configs" / "train.yaml"
CASES = (("example_ct_sm.nii.gz", "example_seg.nii.gz"), ("example_ct_dicom", "example_seg_dicom.nii.gz"))


def smoke_transforms(pixdim: Sequence[float], roi_size: Sequence[int], num_classes: int) -> tuple:
    """The BCV bundle's training and validation pipelines (its train.yaml), TotalSegmentator label ids mapped
    to the BCV organs right after the grid check.

    Args:
        pixdim: resampling spacing.
        roi_size: crop / sliding-window size.
        num_classes: background + organs.

    Returns:
        ``(train transforms, validation transforms)``; training draws 2 crops per volume, organ:background 3:1.
    """
    from monai.bundle import ConfigParser

    from unimedi_monai.bundle import bundle_item

    preprocessing = ConfigParser.load_config_file(str(BCV_TRAIN_YAML))["preprocessing"]
    at = 1 + next(i for i, t in enumerate(preprocessing) if t["_target_"].endswith("CheckSameGridd"))
    remap = {
        "_target_": "unimedi_monai.segmentation.RemapLabelsd",
        "keys": "label",
        "mapping": "$unimedi_monai.segmentation.TOTALSEGMENTATOR_TO_BCV",
    }
    overrides = {
        "pixdim": list(pixdim),
        "roi_size": list(roi_size),
        "num_classes": num_classes,
        "preprocessing": preprocessing[:at] + [remap] + preprocessing[at:],
    }
    train_tf = bundle_item(BCV_TRAIN_YAML, "train#transforms", {**overrides, "num_samples": 2, "pos": 3.0, "neg": 1.0})
    return train_tf, bundle_item(BCV_TRAIN_YAML, "validate#transforms", overrides)


def run_smoke(
    data_dir: str | Path,
    output: str | Path,
    pretrained: str | Path | None = None,
    backbone: str = "demo",
    steps: int = 60,
    pixdim: Sequence[float] = (1.5, 1.5, 2.0),
    roi_size: Sequence[int] = (128, 128, 32),
    lr: float = 5e-4,
    feature_size: int = 16,
    seed: int = 0,
) -> dict:
    """Fine-tune on the TotalSegmentator example cases and write their Dice agreement to ``output``.

    Args:
        data_dir: the ``totalsegmentator`` folder.
        output: JSON file of the results (written atomically).
        pretrained: pre-training checkpoint for the encoder, or None (random init).
        backbone: backbone preset (must match ``pretrained``).
        steps: training iterations (batches of 2 volumes x 2 crops).
        pixdim: resampling spacing.
        roi_size: crop / sliding-window size.
        lr: AdamW learning rate.
        feature_size: decoder width.
        seed: random seed.

    Returns:
        the written summary (per-organ and mean Dice, the first and last training losses, settings).
    """
    from ignite.engine import Events
    from monai.data import CacheDataset, DataLoader
    from monai.engines import SupervisedEvaluator, SupervisedTrainer
    from monai.handlers import MeanDice, from_engine
    from monai.inferers import SlidingWindowInferer
    from monai.losses import DiceCELoss
    from monai.transforms import AsDiscreted, Compose
    from monai.utils import set_determinism

    from unimedi_monai.engines.handlers import ProgressBarHandler
    from unimedi_monai.io.atomic_io import write_json_atomic
    from unimedi_monai.io.checkpoint import load_weights
    from unimedi_monai.networks.unetr_decoder import UniMedIUNETR
    from unimedi_monai.segmentation.metrics import organ_dice_report, per_organ_dice
    from unimedi_monai.segmentation.organs import BCV_ORGANS

    set_determinism(seed=seed)
    data_dir = Path(data_dir)
    items = []
    for image, label in CASES:
        if not (data_dir / image).exists() or not (data_dir / label).exists():
            raise FileNotFoundError(
                f"smoke check: '{data_dir / image}' or '{data_dir / label}' is missing; pass --data_dir pointing at "
                "shared/data/totalsegmentator."
            )
        items.append({"image": str(data_dir / image), "label": str(data_dir / label)})
    num_classes = len(BCV_ORGANS) + 1
    train_tf, val_tf = smoke_transforms(pixdim, roi_size, num_classes)
    train_ds = CacheDataset(items, train_tf, progress=False)
    val_ds = CacheDataset(items, val_tf, progress=False)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    network = UniMedIUNETR(num_classes, backbone=backbone, feature_size=feature_size)
    load_weights(network, pretrained, source="student", init="pretrained" if pretrained else "random")
    network = network.to(device)
    loader = DataLoader(train_ds, batch_size=2, shuffle=True, num_workers=0)
    losses: list[float] = []
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=int(math.ceil(steps / len(loader))),
        train_data_loader=loader,
        network=network,
        optimizer=torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=1e-5),
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
        train_handlers=[
            ProgressBarHandler(output_transform=lambda out: {"loss": from_engine(["loss"], first=True)(out)})
        ],
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output[0]["loss"])))
    started = time.time()
    trainer.run()
    train_s = time.time() - started
    evaluator = SupervisedEvaluator(
        device=device,
        val_data_loader=DataLoader(val_ds, batch_size=1),
        network=network,
        inferer=SlidingWindowInferer(roi_size=roi_size, sw_batch_size=2, overlap=0.25),
        postprocessing=Compose(
            [AsDiscreted(keys=["pred", "label"], argmax=[True, False], to_onehot=[num_classes, num_classes])]
        ),
        key_val_metric={
            "mean_dice": MeanDice(include_background=False, output_transform=from_engine(["pred", "label"]))
        },
        additional_metrics={
            "organ_dice": MeanDice(
                include_background=False, reduction="mean_batch", output_transform=from_engine(["pred", "label"])
            )
        },
    )
    evaluator.run()
    k = max(1, min(5, len(losses) // 4))
    summary = organ_dice_report(
        per_organ_dice(evaluator, "organ_dice"),
        BCV_ORGANS,
        reference=(
            "TotalSegmentator 'total' predictions mapped to BCV ids (agreement on the fine-tuning cases, not ground "
            "truth)"
        ),
        cases=[c[0] for c in CASES],
        init="pretrained" if pretrained else "random",
        pretrained=str(pretrained) if pretrained else None,
        backbone=backbone,
        steps=len(losses),
        pixdim=list(pixdim),
        roi_size=list(roi_size),
        loss_first=sum(losses[:k]) / k,
        loss_last=sum(losses[-k:]) / k,
        train_seconds=round(train_s, 1),
    )
    write_json_atomic(summary, output)
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default="../shared/data/totalsegmentator")
    parser.add_argument("--output", default="eval_smoke/metrics.json")
    parser.add_argument(
        "--pretrained", default=None, help="pre-training checkpoint (models/model.pt); omit for random init"
    )
    parser.add_argument("--backbone", default="demo")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--pixdim", type=float, nargs=3, default=(1.5, 1.5, 2.0))
    parser.add_argument("--roi_size", type=int, nargs=3, default=(128, 128, 32))
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--feature_size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    summary = run_smoke(**vars(args))
    print(f"mean Dice agreement with TotalSegmentator (BCV organs): {summary['mean_dice']}")
    for name, value in summary["organ_dice"].items():
        print(f"  {name:26s} {'n/a' if value is None else f'{value:.3f}'}")
    print(
        f"loss {summary['loss_first']:.3f} -> {summary['loss_last']:.3f} over {summary['steps']} steps "
        f"({summary['train_seconds']} s)"
    )


if __name__ == "__main__":
    main()
