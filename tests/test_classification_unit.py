"""Classifier network, metrics, linear probe on cached features, fine-tuning steps, zero-shot and inference."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import classification_pipeline
from PIL import Image

from unimedi_monai.classification import (
    ClassificationMetric,
    MaskedBCEWithLogitsLoss,
    classification_metrics,
    confusion_matrix,
    extract_features,
    get_task,
    predict_to_json,
    run_settings,
    train_linear_probe,
    write_classification_report,
    zero_shot_probabilities,
)
from unimedi_monai.io.checkpoint import CheckpointMismatchError, atomic_save, load_weights
from unimedi_monai.networks.classifier import UniMedIClassifier
from unimedi_monai.networks.vision_encoder import UnifiedVisionEncoder


def _auc_reference(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney AUC: share of (positive, negative) pairs ranked correctly, ties count half."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    return float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg)))


def test_single_label_metrics_match_reference(tmp_path):
    task = get_task("covidx")
    rng = np.random.default_rng(0)
    labels = np.array([0] * 10 + [1] * 6 + [2] * 4)
    probs = rng.dirichlet([1, 1, 1], size=20)
    probs[labels == 2, 2] += 0.5  # COVID-19 well separated
    probs /= probs.sum(1, keepdims=True)
    m = classification_metrics(torch.tensor(probs), torch.tensor(labels), task)
    assert m["accuracy"] == pytest.approx(float((probs.argmax(1) == labels).mean()))
    per_class = [_auc_reference(probs[:, k], (labels == k).astype(int)) for k in range(3)]
    for k, name in enumerate(task.class_names):
        assert m[f"auc_{name}"] == pytest.approx(per_class[k], abs=1e-6)
    assert m["auc"] == pytest.approx(np.mean(per_class), abs=1e-6)
    assert m["chance_accuracy"] == pytest.approx(0.5)
    cm = confusion_matrix(torch.tensor(probs), torch.tensor(labels), task)
    assert cm.sum() == 20 and cm.trace() == int((probs.argmax(1) == labels).sum()) and cm[2].sum() == 4
    write_classification_report(torch.tensor(probs), torch.tensor(labels), task, tmp_path, {"mode": "linear_probe"})
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["accuracy"] == pytest.approx(m["accuracy"]) and report["settings"]["mode"] == "linear_probe"
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000


def test_binary_auc_and_multi_label_ignore():
    rsna = get_task("rsna")
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.2])
    labels = np.array([0, 0, 1, 1, 1, 0])
    probs = torch.tensor(np.stack([1 - scores, scores], 1))
    assert classification_metrics(probs, torch.tensor(labels), rsna)["auc"] == pytest.approx(
        _auc_reference(scores, labels)
    )

    chex = get_task("chexpert")
    y = torch.tensor([[1.0, 0, 0, 1, -1], [0, 1, 0, 0, 1], [1, -1, 1, 0, 0], [0, 0, 1, 1, 0]])
    p = torch.tensor(
        [[0.9, 0.2, 0.1, 0.8, 0.9], [0.1, 0.7, 0.4, 0.3, 0.8], [0.8, 0.9, 0.6, 0.4, 0.2], [0.3, 0.1, 0.7, 0.6, 0.1]]
    )
    m = classification_metrics(p, y, chex)
    assert m["auc_Atelectasis"] == 1.0 and m["auc_Cardiomegaly"] == 1.0  # the -1 (ignored) entry is left out
    assert m["accuracy_Cardiomegaly"] == 1.0 and m["accuracy"] == 1.0
    assert m["auc"] == pytest.approx(np.mean([m[f"auc_{n}"] for n in chex.class_names]))
    loss = MaskedBCEWithLogitsLoss()(torch.zeros(2, 2), torch.tensor([[1.0, -1.0], [0.0, -1.0]]))
    assert loss.item() == pytest.approx(np.log(2.0), abs=1e-6)  # only the two kept entries count
    metric = ClassificationMetric(chex, "auc")
    metric.update((torch.logit(p), y))
    assert metric.compute() == pytest.approx(m["auc"])


def test_linear_probe_learns_and_folds_standardisation():
    task = get_task("covidx")
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=gen) * 2.0

    def sample(n):
        y = torch.arange(n) % 3
        return centres[y] * 5 + 100 + torch.randn(
            n, 16, generator=gen
        ) * 3.0, y  # offset / scale: standardisation matters

    x, y = sample(90)
    vx, vy = sample(30)
    result = train_linear_probe(x, y, task, vx, vy, epochs=60, lr=0.05, val_interval=5)
    acc = (result.logits(vx).argmax(1) == vy).float().mean().item()
    assert acc > 0.9 and result.best_metric == pytest.approx(acc, abs=1e-6)
    assert result.history and {h["epoch"] for h in result.history} == set(range(5, 61, 5))


def _tiny_checkpoint(tmp_path):
    enc = UnifiedVisionEncoder("tiny")
    state = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    state["text_projection.weight"] = torch.zeros(2, 2)  # other UniMedI keys are ignored
    path = tmp_path / "pretrain.pt"
    atomic_save(state, path)
    return enc, path


def test_classifier_loads_encoder_and_traces(tmp_path):
    enc, path = _tiny_checkpoint(tmp_path)
    net = load_weights(UniMedIClassifier(3, "tiny", freeze_encoder=True), path, source="student")
    assert len(net.load_report["loaded"]) == len(enc.state_dict()) and not net.load_report["missing"]
    for k, v in enc.state_dict().items():
        assert torch.equal(net.encoder.state_dict()[k], v)
    net.train()
    assert not net.encoder.training and all(not p.requires_grad for p in net.encoder.parameters())
    assert net(torch.rand(2, 1, 224, 224)).shape == (2, 3)
    assert net(torch.rand(1, 1, 128, 128, 32)).shape == (1, 3)  # the 3D (CT) path
    net.eval()
    x = torch.rand(2, 1, 224, 224)
    traced = torch.jit.trace(net, x[:1])
    torch.testing.assert_close(traced(x), net(x))
    with pytest.raises(CheckpointMismatchError, match="shape mismatch"):
        load_weights(UniMedIClassifier(3, "demo"), path, source="student")


def test_classifier_weights_class_mismatch(tmp_path):
    atomic_save(UniMedIClassifier(5, "tiny").state_dict(), tmp_path / "model.pt")
    with pytest.raises(CheckpointMismatchError, match="predicts 5 classes but the config builds 3; set the 'dataset'"):
        load_weights(UniMedIClassifier(3, "tiny"), tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match="run train.yaml first"):
        load_weights(UniMedIClassifier(3, "tiny"), tmp_path / "none.pt")


def _pngs(tmp_path, n):
    items = []
    for i in range(n):
        img = np.zeros((48, 48), np.uint8)
        img[: 8 + 4 * i] = 200
        path = tmp_path / f"x{i}.png"
        Image.fromarray(img).save(path)
        items.append({"image": str(path), "label": i % 3, "patient_id": str(i)})
    return items


def test_feature_cache_is_reused_and_keyed_by_weights(tmp_path):
    items = _pngs(tmp_path, 4)
    net = UniMedIClassifier(3, "tiny", xray_size=32, patch_size_2d=8)
    tf = classification_pipeline(image_size=32)
    calls = []
    original = net.features
    net.features = lambda x: (calls.append(x.shape[0]), original(x))[1]
    first = extract_features(net, items, tf, tmp_path / "cache", {"image_size": 32}, batch_size=3, progress=False)
    assert first.shape == (4, net.feature_size) and calls == [3, 1]
    again = extract_features(net, items, tf, tmp_path / "cache", {"image_size": 32}, progress=False)
    assert calls == [3, 1] and torch.equal(first, again)  # served from the cache
    assert len(list((tmp_path / "cache").glob("features_*.pt"))) == 1
    with torch.no_grad():
        net.encoder.mask_token.add_(1.0)  # other weights: another key
    extract_features(net, items, tf, tmp_path / "cache", {"image_size": 32}, progress=False)
    assert len(list((tmp_path / "cache").glob("features_*.pt"))) == 2


def test_finetune_steps_lower_the_loss(tmp_path):
    from ignite.engine import Events
    from monai.engines import SupervisedTrainer

    items = _pngs(tmp_path, 6)
    net = UniMedIClassifier(3, "tiny", xray_size=32, patch_size_2d=8)
    task = get_task("covidx")
    loader = torch.utils.data.DataLoader(
        [classification_pipeline(image_size=32)(i) for i in items],
        batch_size=6,
        shuffle=False,
        collate_fn=lambda b: {
            "image": torch.stack([x["image"] for x in b]),
            "label": torch.stack([x["label"] for x in b]),
        },
    )
    losses = []
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=8,
        train_data_loader=loader,
        network=net,
        optimizer=torch.optim.AdamW(net.parameters(), lr=3e-3),
        loss_function=task.loss(),
        decollate=False,
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"].item()))
    trainer.run()
    assert len(losses) == 8 and np.mean(losses[-2:]) < 0.6 * np.mean(losses[:2])


def test_zero_shot_probabilities_and_inference_json(tmp_path):
    task = get_task("covidx")
    image = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8]]), dim=-1)
    classes = torch.eye(3)
    p = zero_shot_probabilities(image, classes, task, temperature=0.1)
    torch.testing.assert_close(p[0], torch.softmax(torch.tensor([10.0, 0.0, 0.0]), 0))
    assert p[1].argmax() == 2
    chex = get_task("chexpert")
    pm = zero_shot_probabilities(
        image, torch.eye(3)[[0, 1, 2, 0, 1]], chex, negative_emb=torch.tensor([0.0, 0.0, 1.0]), temperature=1.0
    )
    assert pm.shape == (2, 5) and pm[0, 0] > 0.5 > pm[1, 1]  # finding prompt closer / farther than the "normal" prompt
    torch.testing.assert_close(pm[1, 1], torch.sigmoid(torch.tensor(0.6 - 0.8)))

    items = _pngs(tmp_path, 3)
    net = UniMedIClassifier(3, "tiny", xray_size=32, patch_size_2d=8)
    written = predict_to_json(
        net,
        task,
        [i["image"] for i in items],
        classification_pipeline(image_size=32),
        tmp_path / "pred",
        progress=False,
    )
    assert [w.name for w in written] == ["x0.png.json", "x1.png.json", "x2.png.json"]
    out = json.loads(written[1].read_text())
    assert set(out["probabilities"]) == set(task.class_names) and sum(out["probabilities"].values()) == pytest.approx(
        1.0, abs=1e-5
    )
    assert out["prediction"] == max(out["probabilities"], key=out["probabilities"].get)


def test_run_settings_errors(tmp_path):
    task = get_task("covidx")
    with pytest.raises(ValueError, match="config key 'mode' must be one of"):
        run_settings(task, "probe", "random", 1.0, None, "tiny", 0)
    with pytest.raises(ValueError, match="config key 'data_pct' must be in"):
        run_settings(task, "finetune", "random", 0.0, None, "tiny", 0)
    with pytest.raises(FileNotFoundError, match="config key 'pretrained_path'.*set init to random"):
        run_settings(task, "finetune", "pretrained", 0.1, tmp_path / "none.pt", "tiny", 0)
    assert run_settings(task, "finetune", "random", 0.1, None, "tiny", 0)["checkpoint"] is None


def test_run_linear_probe_fractions_share_one_cache(tmp_path):
    from unimedi_monai.classification import run_linear_probe

    items = _pngs(tmp_path, 12)
    splits = {"training": items[:9], "validation": items[9:11], "test": items[11:]}
    net = UniMedIClassifier(3, "tiny", xray_size=32, patch_size_2d=8, freeze_encoder=True)
    task = get_task("covidx")
    kwargs = dict(
        transform=classification_pipeline(image_size=32),
        output_dir=tmp_path / "eval",
        model_path=tmp_path / "model.pt",
        cache_dir=tmp_path / "cache",
        epochs=5,
        val_interval=1,
        progress=False,
    )
    run_linear_probe(net, task, splits, data_pct=1.0, settings={"mode": "linear_probe"}, **kwargs)
    cached = sorted((tmp_path / "cache").glob("features_*.pt"))
    assert len(cached) == 3
    head = net.head.weight.detach().clone()
    run_linear_probe(net, task, splits, data_pct=0.1, **kwargs)
    assert sorted((tmp_path / "cache").glob("features_*.pt")) == cached  # no new features for another fraction
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["settings"]["num_train"] == 3  # one image per class
    assert not torch.equal(head, net.head.weight)  # the head was retrained and copied into the network
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert torch.equal(saved["head.weight"], net.head.weight.detach())
