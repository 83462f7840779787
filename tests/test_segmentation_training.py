"""A short SupervisedTrainer run on organ phantoms lowers the DiceCE loss; Dice reports and best-model saving."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from conftest import segmentation_pipeline

from unimedi_monai.engines import BestModelSaver
from unimedi_monai.segmentation.metrics import OrganDiceWriter, mean_organ_dice, organ_dice_report

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_short_training_lowers_loss(tmp_path):
    from ignite.engine import Events
    from monai.data import CacheDataset, DataLoader
    from monai.engines import SupervisedTrainer
    from monai.losses import DiceCELoss
    from monai.utils import set_determinism

    from unimedi_monai.networks.unetr_decoder import UniMedIUNETR
    from unimedi_monai.segmentation.datalists import load_segmentation_datalist
    from unimedi_monai.segmentation.phantoms import generate_organ_phantoms

    set_determinism(seed=0)
    generate_organ_phantoms(tmp_path, "bcv", n_train=2, n_val=1, shape=(32, 32, 16))
    items = load_segmentation_datalist(tmp_path, "bcv")["training"]
    tf = segmentation_pipeline("train", roi_size=[32, 32, 8], num_classes=14, num_samples=2, pos=3.0, neg=1.0)
    loader = DataLoader(CacheDataset(items, tf, progress=False), batch_size=2, shuffle=True)
    net = UniMedIUNETR(14, backbone="tiny", feature_size=8)
    losses: list[float] = []
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=24,
        train_data_loader=loader,
        network=net,
        optimizer=torch.optim.AdamW(net.parameters(), lr=3e-3),
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output[0]["loss"])))
    trainer.run()
    set_determinism(seed=None)
    assert len(losses) == 24 and all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.85 * first, f"loss did not fall: {first:.3f} -> {last:.3f}"


def test_organ_dice_report_skips_absent_organs():
    report = organ_dice_report(torch.tensor([0.5, float("nan"), 1.0]), ["a", "b", "c"], epoch=3)
    assert report == {"mean_dice": 0.75, "organ_dice": {"a": 0.5, "b": None, "c": 1.0}, "epoch": 3}
    assert organ_dice_report([float("nan")], ["a"])["mean_dice"] is None
    with pytest.raises(ValueError, match="2 per-organ Dice values for 3 organ names"):
        organ_dice_report([0.1, 0.2], ["a", "b", "c"])


def _engine(values, epoch):
    return SimpleNamespace(
        state=SimpleNamespace(metrics={"val_organ_dice": torch.tensor(values)}, epoch=epoch), data_loader=[0, 1]
    )


def _evaluator(values, epoch):
    """An evaluator after a validation: per-organ Dice and, as its key metric, their mean (what MeanOrganDice
    computes)."""
    from ignite.engine import Engine

    engine = Engine(lambda e, b: None)
    engine.state.metrics = {
        "val_organ_dice": torch.tensor(values),
        "val_mean_dice": mean_organ_dice(torch.tensor(values)),
    }
    engine.state.key_metric_name, engine.state.epoch = "val_mean_dice", epoch
    engine.data_loader = [0, 1]
    return engine


def test_best_model_saver_keeps_the_best(tmp_path):
    net = torch.nn.Linear(2, 2)
    writer = OrganDiceWriter(
        tmp_path / "eval" / "metrics.json",
        ["liver", "spleen"],
        extra={"checkpoint": str(tmp_path / "models" / "model.pt")},
        record_epoch=True,
    )
    saver = BestModelSaver(net, tmp_path / "models" / "model.pt", on_save=[writer])
    saver(_evaluator([0.2, 0.4], 1))
    first = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert first["mean_dice"] == pytest.approx(0.3) and first["epoch"] == 1
    with torch.no_grad():
        net.weight.add_(1.0)
    saver(_evaluator([0.1, 0.1], 2))  # worse: nothing rewritten
    saved = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert not torch.equal(saved["weight"], net.weight)
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["epoch"] == 1
    saver(_evaluator([0.6, 0.8], 3))  # better: both files describe epoch 3
    saved = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert torch.equal(saved["weight"], net.weight)
    final = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert final["epoch"] == 3 and final["organ_dice"] == {"liver": pytest.approx(0.6), "spleen": pytest.approx(0.8)}
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["model.pt"]


def test_organ_dice_writer(tmp_path):
    writer = OrganDiceWriter(tmp_path / "metrics.json", ["liver", "spleen"], extra={"checkpoint": "m.pt"})
    writer(_engine([0.5, 0.7], 1))
    out = json.loads((tmp_path / "metrics.json").read_text())
    assert out["mean_dice"] == pytest.approx(0.6) and out["checkpoint"] == "m.pt"
    # per-case details (MeanDice save_details): an organ absent from every reference is null, not 0
    engine = _engine([0.5, 0.0], 2)
    engine.state.metric_details = {"val_organ_dice": torch.tensor([[0.4, float("nan")], [0.6, float("nan")]])}
    writer(engine)
    out = json.loads((tmp_path / "metrics.json").read_text())
    assert out["organ_dice"] == {"liver": pytest.approx(0.5), "spleen": None} and out["mean_dice"] == pytest.approx(0.5)
    with pytest.raises(KeyError, match="no metric 'other'"):
        OrganDiceWriter(tmp_path / "m.json", ["a"], metric_name="other")(_engine([0.5], 1))
