"""SourceBatchNorm: running statistics per input source, training exactly that of one BatchNorm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unimedi_monai.networks.source_batch_norm import SourceBatchNorm
from unimedi_monai.networks.vision_encoder import CT_SLICE_SOURCE, XRAY_SOURCE, UnifiedVisionEncoder


def _pair(channels: int = 6) -> tuple[SourceBatchNorm, nn.BatchNorm2d]:
    torch.manual_seed(0)
    ours, plain = SourceBatchNorm(channels, spatial_dims=2, num_sources=2), nn.BatchNorm2d(channels)
    with torch.no_grad():
        for m in (ours, plain):
            m.weight.copy_(torch.linspace(0.5, 2.0, channels))
            m.bias.copy_(torch.linspace(-1.0, 1.0, channels))
    return ours, plain


def test_training_output_is_that_of_one_batch_norm_and_each_source_keeps_its_statistics():
    ours, plain = _pair()
    bright, dark = torch.randn(8, 6, 5, 5) * 0.2 + 2.0, torch.randn(8, 6, 5, 5) * 3.0 - 4.0
    for _ in range(150):
        for x, source in ((bright, 0), (dark, 1)):
            torch.testing.assert_close(ours(x, source), plain(x))
    # each source converged to its own batch statistics; the plain BatchNorm holds a blend of both
    torch.testing.assert_close(ours.running_mean[0], bright.mean(dim=(0, 2, 3)), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.running_mean[1], dark.mean(dim=(0, 2, 3)), atol=1e-4, rtol=1e-4)
    assert (plain.running_mean - bright.mean(dim=(0, 2, 3))).abs().min() > 1.0
    # in eval mode each source is normalised as in training
    for x, source in ((bright, 0), (dark, 1)):
        ours.train()
        expected = ours(x, source)
        ours.eval()
        torch.testing.assert_close(ours(x, source), expected, atol=2e-2, rtol=2e-2)


def test_a_plain_batch_norm_state_dict_loads_into_every_source():
    ours, plain = _pair()
    plain(torch.randn(4, 6, 3, 3) + 5.0)
    ours.load_state_dict(plain.state_dict())
    assert ours.running_mean.shape == (2, 6)
    for source in (0, 1):
        torch.testing.assert_close(ours.running_mean[source], plain.running_mean)
        torch.testing.assert_close(ours.running_var[source], plain.running_var)
    again = SourceBatchNorm(6, spatial_dims=2, num_sources=2)
    again.load_state_dict(ours.state_dict())  # its own state dict round-trips
    torch.testing.assert_close(again.running_var, ours.running_var)


def test_bad_source_and_input_are_refused():
    bn = SourceBatchNorm(4, spatial_dims=3, num_sources=2)
    with pytest.raises(ValueError, match=r"source must be in \[0, 1\]"):
        bn(torch.zeros(2, 4, 2, 2, 2), source=2)
    with pytest.raises(ValueError, match="expects a"):
        bn(torch.zeros(2, 4, 2, 2))
    with pytest.raises(ValueError, match="num_sources"):
        SourceBatchNorm(4, num_sources=0)


def test_encoder_in_eval_mode_normalises_xrays_and_ct_slices_as_in_training():
    """The 2D conv stem serves X-rays and CT slices of different intensity: after training-mode passes of
    both, eval-mode tokens of each are those of training (with one set of statistics they were not)."""
    torch.manual_seed(0)
    enc = UnifiedVisionEncoder("tiny", xray_size=64, ct_size=(64, 64, 8), patch_size_3d=(16, 16, 4))
    xrays = torch.rand(6, 1, 64, 64) * 0.4 + 0.6
    volumes = torch.rand(3, 1, 64, 64, 8) * 0.1
    slices = torch.tensor([[1, 5], [2, 6], [0, 7]])
    enc.train()
    for _ in range(200):  # momentum 0.1: the initial statistics decay to 0.9 ** 200
        enc.embed_xray(xrays)
        enc.embed_slices(volumes, slices)
    train_x, train_s = enc.embed_xray(xrays), enc.embed_slices(volumes, slices)
    enc.eval()

    def error(tokens: torch.Tensor, reference: torch.Tensor) -> float:
        return float((tokens - reference).detach().norm() / reference.detach().norm())

    tok = enc.tokenizer_2d
    assert error(enc.embed_xray(xrays), train_x) < 0.02
    assert error(enc.embed_slices(volumes, slices), train_s) < 0.02
    # the other source's statistics (what a shared set drifts towards) normalise X-rays far off
    assert error(tok(xrays, source=CT_SLICE_SOURCE), tok(xrays, source=XRAY_SOURCE)) > 0.2
