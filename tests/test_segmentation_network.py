"""UniMedIUNETR: shapes over presets and sizes, pre-trained encoder loading, tracing, parameter groups."""

from __future__ import annotations

import pytest
import torch

from unimedi_monai.io.checkpoint import CheckpointMismatchError, atomic_save, load_weights
from unimedi_monai.networks.unetr_decoder import UniMedIUNETR, decoder_strides, skip_layers_for
from unimedi_monai.segmentation.param_groups import segmentation_param_groups

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_skip_layers_and_strides():
    assert skip_layers_for(12) == (3, 6, 9, 12)
    assert skip_layers_for(4) == (1, 2, 3, 4)
    assert skip_layers_for(2) == (1, 1, 2, 2)
    assert decoder_strides((16, 16, 4)) == [(2, 2, 2), (2, 2, 2), (2, 2, 1), (2, 2, 1)]
    with pytest.raises(ValueError, match="powers of two"):
        decoder_strides((16, 16, 6))
    with pytest.raises(ValueError, match="powers of two"):
        decoder_strides((32, 32, 4))


@pytest.mark.parametrize(
    "backbone, size, out_channels",
    [
        ("tiny", (64, 64, 16), 14),
        ("demo", (32, 32, 8), 16),
        ({"preset": "tiny", "patch_stem": "linear"}, (64, 32, 24), 14),
        ("small", (32, 32, 8), 14),  # the 12-layer path (skips 3/6/9/12) that base shares
    ],
)
def test_output_shape(backbone, size, out_channels):
    net = UniMedIUNETR(out_channels, backbone=backbone, feature_size=4).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, *size))
    assert out.shape == (2, out_channels, *size)
    assert torch.isfinite(out).all()


def test_default_geometry_and_bad_input():
    net = UniMedIUNETR(14, backbone="tiny", feature_size=4).eval()
    assert net.encoder.tokenizer_3d.grid_size == (8, 8, 8)  # 128x128x32 with 16x16x4 patches
    with pytest.raises(ValueError, match="divisible by the patch size"):
        net(torch.randn(1, 1, 64, 64, 10))
    with pytest.raises(ValueError, match="out_channels"):
        UniMedIUNETR(1, backbone="tiny")
    with pytest.raises(ValueError, match="skip_layers"):
        UniMedIUNETR(14, backbone="tiny", skip_layers=(1, 2, 3, 9))


def test_trace_matches_eager():
    net = UniMedIUNETR(14, backbone="tiny", feature_size=4).eval()
    x = torch.randn(1, 1, 32, 32, 8)
    traced = torch.jit.trace(net, x)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), net(x))


@pytest.fixture(scope="module")
def pretrain_checkpoint(tmp_path_factory, text_encoder):
    """A pre-training checkpoint as the pretrain bundle writes it (UniMedI state dict), tiny preset."""
    from unimedi_monai.networks import UniMedI

    model = UniMedI("tiny", text_encoder=text_encoder)
    with torch.no_grad():  # trained-looking weights: student and teacher differ from any fresh init and each other
        for t in list(model.encoder.parameters()) + list(model.encoder.buffers()):
            if t.is_floating_point():
                t.add_(0.01 * torch.randn_like(t))
        for p in model.teacher.parameters():
            p.add_(0.01)
    path = tmp_path_factory.mktemp("pretrain") / "model.pt"
    atomic_save(model.state_dict(), path)
    return path, model


def test_load_pretrained_encoder_changes_encoder_not_decoder(pretrain_checkpoint):
    path, model = pretrain_checkpoint
    net = UniMedIUNETR(14, backbone="tiny", feature_size=4)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    report = load_weights(net, path, source="student").load_report
    after = net.state_dict()
    encoder_keys = [k for k in after if k.startswith("encoder.")]
    assert sorted(report["loaded"]) == sorted(k[len("encoder.") :] for k in encoder_keys)
    assert report["missing"] == []
    assert "mask_token" in report["unexpected"] and any(k.startswith("tokenizer_2d.") for k in report["unexpected"])
    source = model.state_dict()
    for k in encoder_keys:
        torch.testing.assert_close(after[k], source[k])
    unchanged = [k for k in encoder_keys if after[k].is_floating_point() and torch.equal(after[k], before[k])]
    assert unchanged == []
    for k in after:
        if not k.startswith("encoder."):
            assert torch.equal(after[k], before[k]), f"decoder weight {k} changed"


def test_load_teacher_encoder(pretrain_checkpoint):
    path, model = pretrain_checkpoint
    net = UniMedIUNETR(14, backbone="tiny", feature_size=4)
    load_weights(net, path, source="teacher")
    teacher = model.teacher["encoder"].state_dict()
    student = model.encoder.state_dict()
    key = "backbone.blocks.0.qkv.weight"
    torch.testing.assert_close(net.encoder.state_dict()[key], teacher[key])
    assert not torch.equal(net.encoder.state_dict()[key], student[key])


def test_load_errors(pretrain_checkpoint, tmp_path):
    path, _ = pretrain_checkpoint
    with pytest.raises(CheckpointMismatchError, match="shape mismatch"):
        load_weights(UniMedIUNETR(14, backbone="demo"), path, source="student")
    other = tmp_path / "other.pt"
    atomic_save({"head.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(CheckpointMismatchError, match="no keys starting with 'encoder.'"):
        load_weights(UniMedIUNETR(14, backbone="tiny"), other, source="student")
    with pytest.raises(FileNotFoundError, match="--init random"):
        load_weights(UniMedIUNETR(14, backbone="tiny"), tmp_path / "absent.pt", source="student", init="pretrained")
    with pytest.raises(ValueError, match="init must be one of"):
        load_weights(UniMedIUNETR(14, backbone="tiny"), None, source="student", init="imagenet")


def test_pretrained_or_random_init_and_param_groups(pretrain_checkpoint):
    path, _ = pretrain_checkpoint
    net = load_weights(UniMedIUNETR(14, backbone="tiny", feature_size=4), path, source="student", init="pretrained")
    assert net.load_report["missing"] == [] and net.load_report["loaded"]
    assert (
        load_weights(
            UniMedIUNETR(14, backbone="tiny", feature_size=4), path, source="student", init="random"
        ).load_report
        is None
    )
    groups = segmentation_param_groups(net, lr=1e-3, encoder_lr_scale=0.1)
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 1e-3])
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in net.encoder.parameters()}
