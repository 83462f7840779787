"""The ignite pre-training engine: schedules applied, EMA teacher, checkpoints, resume, non-finite loss."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import pretrain_pipeline
from ignite.engine import Events
from torch.utils.data import DataLoader

from unimedi_monai.data import (
    MixedBatchSampler,
    build_pretrain_dataset,
    collate_mixed,
    load_datalist,
)
from unimedi_monai.data.demo import generate_demo_dataset
from unimedi_monai.engines import CheckpointHandler, JsonlStatsWriter, UniMedITrainer, param_groups, training_scalars
from unimedi_monai.io.checkpoint import list_checkpoints, safe_load
from unimedi_monai.networks import UniMedI

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def demo_items(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    generate_demo_dataset(root, n_xray=8, n_ct=4, seed=3, progress=False)
    items = load_datalist(root)
    return items["training"] + items["validation"]


@pytest.fixture(scope="module")
def dataset(demo_items):
    return build_pretrain_dataset(
        demo_items, pretrain_pipeline("xray"), pretrain_pipeline("ct"), cache="memory", progress=False
    )


def _trainer(dataset, text_encoder, ckpt_dir, max_epochs, handlers_extra=(), seed=0, mask_warmup=0):
    torch.manual_seed(seed)
    model = UniMedI("tiny", text_encoder=text_encoder, slice_top_k=2)
    opt = torch.optim.AdamW(param_groups(model, 0.04), lr=1e-3)
    sampler = MixedBatchSampler(dataset.num_xray, dataset.num_ct, batch_size=6, ct_fraction=0.34, seed=seed)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_mixed)
    ckpt = CheckpointHandler(ckpt_dir, {"network": model, "optimizer": opt}, interval=2, keep=2)
    trainer = UniMedITrainer(
        device="cpu",
        max_epochs=max_epochs,
        train_data_loader=loader,
        network=model,
        optimizer=opt,
        lr=1e-3,
        min_lr=1e-5,
        warmup_iterations=1,
        teacher_momentum=0.9,
        train_handlers=[ckpt, *handlers_extra],
        mask_warmup_iterations=mask_warmup,
    )
    return trainer, model, ckpt


def test_trainer_runs_schedules_ema_and_checkpoints(dataset, text_encoder, tmp_path):
    log = JsonlStatsWriter(tmp_path / "log.jsonl", training_scalars)
    trainer, model, ckpt = _trainer(
        dataset, text_encoder, tmp_path / "ckpt", max_epochs=2, handlers_extra=[log], mask_warmup=2
    )
    teacher_before = [t.clone() for t in model.student_teacher_pairs()[1]]
    trainer.run()
    total = trainer.state.iteration
    assert total == 2 * trainer.state.epoch_length
    # the optimiser saw the precomputed schedules
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(
        trainer.lr_schedule[total - 1] * trainer.optimizer.param_groups[0]["lr_scale"]
    )
    decayed = [g for g in trainer.optimizer.param_groups if g["apply_weight_decay"]]
    assert decayed and decayed[0]["weight_decay"] == pytest.approx(trainer.wd_schedule[total - 1])
    assert trainer.momentum_schedule[0] == pytest.approx(0.9) and trainer.momentum_schedule[-1] == pytest.approx(1.0)
    # the teacher moved (EMA) but is not the student
    student, teacher = model.student_teacher_pairs()
    assert any(not torch.equal(a, b) for a, b in zip(teacher, teacher_before))
    assert any(not torch.equal(s, t) for s, t in zip(student, teacher))
    # checkpoints: newest 2 kept, final weights written, every scalar logged per iteration
    iterations = [i for i, _ in list_checkpoints(tmp_path / "ckpt")]
    assert iterations[-1] == total and len(iterations) == 2
    final = safe_load(tmp_path / "ckpt" / "model.pt")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(final[k], v)
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == list(range(1, total + 1))
    assert {"loss", "loss_vl", "loss_icl", "loss_pcl", "temperature", "lr"} <= set(rows[0])
    # the self-distillation diagnostics are logged with every step
    assert {
        "icl_entropy_xray",
        "icl_kl",
        "icl_distinct_ct",
        "teacher_cls_cos_xray",
        "teacher_attn_entropy_ct",
        "slice_pos_mean",
        "pcl_log_k",
    } <= set(rows[-1])
    # the mask ratio ramps in: nothing masked at the first step, half after the warm-up
    assert [round(r["mask_ratio"], 2) for r in rows[:3]] == [0.0, 0.25, 0.5] and rows[-1][
        "mask_ratio"
    ] == pytest.approx(0.5)
    assert not list((tmp_path / "ckpt").glob("*.tmp"))


def test_resume_continues_from_latest_and_skips_truncated(dataset, text_encoder, tmp_path):
    trainer, _, _ = _trainer(dataset, text_encoder, tmp_path / "ckpt", max_epochs=2)
    trainer.run()
    n = trainer.state.iteration
    saved = safe_load(tmp_path / "ckpt" / f"checkpoint_{n:08d}.pt")
    # corrupt the newest checkpoint: resume must fall back to the previous one
    newest = tmp_path / "ckpt" / f"checkpoint_{n:08d}.pt"
    newest.write_bytes(newest.read_bytes()[:500])
    previous = list_checkpoints(tmp_path / "ckpt")[-2][0]
    trainer2, model2, ckpt2 = _trainer(dataset, text_encoder, tmp_path / "ckpt", max_epochs=3, seed=1)
    seen = []
    trainer2.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(e.state.iteration))
    trainer2.run()
    assert ckpt2.resumed_from.name == f"checkpoint_{previous:08d}.pt"
    assert seen[0] == previous + 1  # training continues right after the restored iteration
    assert trainer2.state.iteration == 3 * trainer2.state.epoch_length == n + trainer2.state.epoch_length
    assert saved["engine"]["iteration"] == n
    assert {"python", "numpy", "torch"} <= set(saved["rng"])  # every global random state is saved


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(dataset, text_encoder, tmp_path):
    trainer, model, _ = _trainer(dataset, text_encoder, tmp_path / "ckpt", max_epochs=2)
    original = model.forward
    calls = {"n": 0}

    def poisoned(**kwargs):
        calls["n"] += 1
        out = original(**kwargs)
        if calls["n"] == 3:
            out["loss"] = out["loss"] * float("nan")
        return out

    model.forward = poisoned
    with pytest.raises(FloatingPointError, match="iteration 3"):
        trainer.run()
    assert [i for i, _ in list_checkpoints(tmp_path / "ckpt")] == [2]
    assert not (tmp_path / "ckpt" / "model.pt").exists()


def test_teacher_temperature_warm_up(dataset, text_encoder, tmp_path):
    torch.manual_seed(0)
    model = UniMedI("tiny", text_encoder=text_encoder, slice_top_k=2, teacher_temperature=0.07)
    opt = torch.optim.AdamW(param_groups(model, 0.04), lr=1e-3)
    loader = DataLoader(
        dataset,
        batch_sampler=MixedBatchSampler(dataset.num_xray, dataset.num_ct, 6, 0.34, seed=0),
        collate_fn=collate_mixed,
    )
    seen = []
    trainer = UniMedITrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=loader,
        network=model,
        optimizer=opt,
        epoch_length=2,
        teacher_momentum_end=0.996,
        warmup_teacher_temperature=0.04,
        teacher_temperature_warmup_iterations=2,
    )
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED,
        lambda e: seen.append(
            (
                e.state.output["teacher_temperature"],
                model.icl_loss.teacher_temperature,
                model.pcl_loss.teacher_temperature,
            )
        ),
    )
    trainer.run()
    assert seen[0] == pytest.approx((0.04, 0.04, 0.04)) and seen[1] == pytest.approx((0.055, 0.055, 0.055))
    assert trainer.momentum_schedule[-1] == pytest.approx(0.996)
