"""The SETR-PUP network learns the demo lesions: the loss falls and the Dice on held-out demo X-rays
beats the trivial all-background and all-foreground masks (MONAI's DiceMetric, as the bundle)."""

from __future__ import annotations

import pytest
import torch
from conftest import segmentation_pipeline
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from monai.networks.utils import one_hot

from unimedi_monai.networks import UniMedISETRPUP
from unimedi_monai.segmentation import generate_lesion_demo, load_xray_segmentation_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 96


def _tensors(items):
    tf = segmentation_pipeline("validate", bundle="rsna_segmentation", image_size=SIZE, num_classes=2)
    out = [tf(dict(i)) for i in items]
    return torch.stack([o["image"] for o in out]), torch.stack([o["label"] for o in out])


def _dice(pred: torch.Tensor, label: torch.Tensor) -> float:
    metric = DiceMetric(include_background=False, reduction="mean", ignore_empty=True)
    metric(one_hot(pred, 2), one_hot(label, 2))
    return float(metric.aggregate())


def test_loss_falls_and_dice_beats_trivial_masks(tmp_path):
    torch.manual_seed(0)
    data = load_xray_segmentation_data(
        generate_lesion_demo(tmp_path / "demo", n_train=32, n_val=4, n_test=12, seed=0).parent
    )
    x_train, y_train = _tensors(data["training"])
    x_test, y_test = _tensors(data["test"])
    net = UniMedISETRPUP(2, backbone="tiny", decoder_channels=8)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    losses = []
    gen = torch.Generator().manual_seed(0)
    for _step in range(150):
        idx = torch.randint(0, len(x_train), (8,), generator=gen)
        loss = loss_fn(net(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.75 * first, (first, last)
    net.eval()
    with torch.no_grad():
        pred = net(x_test).argmax(1, keepdim=True).float()
    dice = _dice(pred, y_test)
    background = _dice(torch.zeros_like(y_test), y_test)
    foreground = _dice(torch.ones_like(y_test), y_test)
    assert background == 0.0 and foreground < 0.1
    print(
        f"demo Dice {dice:.3f} (all-background {background:.3f}, all-foreground {foreground:.3f}); loss {first:.3f} -> "
        f"{last:.3f}"
    )
    assert dice > max(background, foreground) + 0.2, (dice, background, foreground)
