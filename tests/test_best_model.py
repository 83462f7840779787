"""The one best-model saver (evaluator key metric, atomic, rank 0, finite weights only) and the segmentation
key metric it is driven by (NaN-skipping mean organ Dice)."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine

from unimedi_monai.engines import BestModelSaver
from unimedi_monai.segmentation.metrics import MeanOrganDice, OrganDiceWriter

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _evaluator(score: float, epoch: int) -> Engine:
    engine = Engine(lambda e, b: None)
    engine.state.metrics = {"val_acc": score}
    engine.state.key_metric_name, engine.state.epoch = "val_acc", epoch
    return engine


def test_non_finite_weights_are_refused_and_the_best_file_stays(tmp_path):
    net = torch.nn.Linear(2, 2)
    path = tmp_path / "models" / "model.pt"
    saver = BestModelSaver(net, path)
    saver(_evaluator(0.5, 1))
    good = torch.load(path, weights_only=True)
    with torch.no_grad():
        net.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"non-finite at epoch 2 \(1 tensors, e.g. \['weight'\]\)"):
        saver(_evaluator(0.9, 2))
    kept = torch.load(path, weights_only=True)
    assert torch.equal(kept["weight"], good["weight"]) and torch.isfinite(kept["weight"]).all()
    saver(_evaluator(0.4, 3))  # not better: the NaN weights are not even looked at
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]  # no temporary left


def test_a_nan_key_metric_is_never_the_best(tmp_path):
    net = torch.nn.Linear(2, 2)
    path = tmp_path / "model.pt"
    saver = BestModelSaver(net, path)
    saver(_evaluator(float("nan"), 1))
    assert not path.exists() and saver.best is None
    saver(_evaluator(0.3, 2))
    assert path.is_file() and saver.best == pytest.approx(0.3)
    saver(_evaluator(float("nan"), 3))
    saver(_evaluator(0.3, 4))  # a tie keeps the earlier network
    assert saver.best == pytest.approx(0.3)
    with pytest.raises(KeyError, match="no key metric"):
        saver(Engine(lambda e, b: None))


def test_only_rank0_writes(tmp_path, monkeypatch):
    calls = []
    saver = BestModelSaver(torch.nn.Linear(2, 2), tmp_path / "model.pt", on_save=[calls.append])
    monkeypatch.setenv("RANK", "1")  # a torchrun worker other than rank 0 (no process group in this test)
    saver(_evaluator(0.7, 1))
    assert not (tmp_path / "model.pt").exists() and calls == []
    monkeypatch.setenv("RANK", "0")
    saver(_evaluator(0.8, 2))
    assert (tmp_path / "model.pt").is_file() and len(calls) == 1


def _one_hot(labels: torch.Tensor, classes: int = 3) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, classes).permute(2, 0, 1).float()


def test_mean_organ_dice_skips_absent_organs_and_matches_the_written_report(tmp_path):
    """Organ 2 is absent from case 1's reference: it counts for case 2 only, and the key metric equals metrics.json's
    mean."""
    from monai.handlers import MeanDice

    ref1, pred1 = torch.zeros(4, 4, dtype=torch.long), torch.zeros(4, 4, dtype=torch.long)
    ref1[:2], pred1[:1] = 1, 1  # organ 1: Dice 2*4 / (4 + 8) = 2/3; organ 2 in neither
    ref2 = torch.zeros(4, 4, dtype=torch.long)
    ref2[:1], ref2[2:] = 1, 2  # both organs predicted exactly: Dice 1
    batches = [(_one_hot(pred1)[None], _one_hot(ref1)[None]), (_one_hot(ref2)[None], _one_hot(ref2)[None])]
    engine = Engine(lambda e, batch: batch)
    MeanOrganDice().attach(engine, "val_mean_dice")
    MeanDice(include_background=False).attach(engine, "monai_mean")
    MeanDice(include_background=False, reduction="mean_batch").attach(engine, "val_organ_dice")
    writer = OrganDiceWriter(tmp_path / "metrics.json", ["liver", "spleen"])
    engine.data_loader = batches
    writer.attach(engine)
    engine.run(batches, max_epochs=1)
    organ1, organ2 = (2 / 3 + 1.0) / 2, 1.0
    assert engine.state.metrics["val_mean_dice"] == pytest.approx((organ1 + organ2) / 2)
    assert engine.state.metrics["monai_mean"] == pytest.approx(
        (2 / 3 + 1) / 2
    )  # MONAI's "mean": each case's organ mean, over the cases
    assert writer.last_report["mean_dice"] == pytest.approx(engine.state.metrics["val_mean_dice"], abs=1e-12)
    assert writer.last_report["organ_dice"] == {"liver": pytest.approx(organ1), "spleen": pytest.approx(organ2)}
