"""Attention-guided masking and attentive slice selection on constructed attention maps."""

from __future__ import annotations

import math

import pytest
import torch

from unimedi_monai.networks.attention_selection import (
    attention_guided_mask,
    attention_statistics,
    gather_slices,
    sample_slices,
    slice_scores,
    top_k_slices,
)


def test_mask_takes_lowest_scores_at_ratio():
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.3], [0.0, 0.4, 0.2, 0.8]])
    mask = attention_guided_mask(scores, 0.5)
    assert mask.tolist() == [[False, True, False, True], [True, False, True, False]]
    assert attention_guided_mask(scores, 0.0).sum() == 0
    with pytest.raises(ValueError):
        attention_guided_mask(scores, 1.0)


def test_slice_selection_picks_attended_depths():
    grid = (8, 8, 8)
    attn = torch.full((2, 8, 8, 8), 0.1)
    attn[0, 2, 3, 5] = 5.0  # sample 0: one hot token at depth 5 -> slices 20..23
    attn[1, :, :, 1] = 1.0  # sample 1: whole depth 1 layer -> slices 4..7
    attn = attn.flatten(1)
    scores = slice_scores(attn, grid, 32, interpolate=False)
    assert scores.shape == (2, 32)
    assert top_k_slices(scores, 4).tolist() == [[20, 21, 22, 23], [4, 5, 6, 7]]
    smooth = slice_scores(attn, grid, 32)
    top2 = top_k_slices(smooth, 2).tolist()
    assert top2 == [[21, 22], [5, 6]]  # centre of the token's 4-slice span ranks first
    # the inter-slice average is the mean over the 64 tokens of one depth
    torch.testing.assert_close(scores[1, 4], attn[1].reshape(64, 8)[:, 1].mean())


def test_sample_slices_draws_without_replacement_in_proportion_to_the_scores():
    """Gumbel top-k: k distinct slices; with k = 1 each slice's frequency matches its share of the scores."""
    torch.manual_seed(0)
    scores = torch.tensor([[4.0, 2.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]]).expand(20000, -1)
    first = sample_slices(scores, 1)[:, 0]
    freq = torch.bincount(first, minlength=8).float() / len(first)
    torch.testing.assert_close(freq, scores[0] / scores[0].sum(), atol=0.015, rtol=0.0)
    three = sample_slices(scores, 3)
    assert (three[:, 1:] > three[:, :-1]).all()  # distinct, ascending
    assert (three < 4).all()  # slices of zero mass are never drawn while others remain
    # near-uniform scores (a content-blind attention) give every depth its turn; top-k gives one
    flat = torch.full((4000, 32), 1.0 / 32) + 1e-4 * torch.arange(32)
    drawn = torch.bincount(sample_slices(flat, 4).flatten(), minlength=32)
    assert drawn.min() > 0.5 * drawn.float().mean()
    assert torch.unique(top_k_slices(flat, 4), dim=0).shape[0] == 1
    with pytest.raises(ValueError, match="non-negative"):
        sample_slices(-scores[:2], 1)
    with pytest.raises(ValueError):
        sample_slices(scores[:2], 9)


def test_gather_slices_order():
    vol = torch.arange(2 * 1 * 2 * 2 * 6, dtype=torch.float32).reshape(2, 1, 2, 2, 6)
    idx = torch.tensor([[0, 5], [2, 3]])
    out = gather_slices(vol, idx)
    assert out.shape == (4, 1, 2, 2)
    torch.testing.assert_close(out[1], vol[0, :, :, :, 5])
    torch.testing.assert_close(out[2], vol[1, :, :, :, 2])


def test_slice_scores_validates():
    with pytest.raises(ValueError, match="tokens"):
        slice_scores(torch.zeros(1, 100), (8, 8, 8), 32)
    with pytest.raises(ValueError, match="multiple"):
        slice_scores(torch.zeros(1, 512), (8, 8, 8), 30)


def test_attention_statistics_tell_uniform_focused_and_positional_attention():
    n = 8
    # uniform attention: entropy at its maximum, every image the same map
    entropy, cosine = attention_statistics(torch.full((3, n), 0.1))  # unnormalised on purpose
    assert entropy == pytest.approx(1.0) and cosine == pytest.approx(1.0)
    # each image on its own token: no entropy, orthogonal maps
    entropy, cosine = attention_statistics(torch.eye(n)[:4])
    assert entropy == pytest.approx(0.0, abs=1e-6) and cosine == pytest.approx(0.0, abs=1e-6)
    # two tokens each, one shared: entropy log 2 / log n, cosine 1/2
    a = torch.zeros(2, n)
    a[0, [0, 1]] = 0.5
    a[1, [1, 2]] = 0.5
    entropy, cosine = attention_statistics(a)
    assert entropy == pytest.approx(math.log(2) / math.log(n)) and cosine == pytest.approx(0.5)
    assert math.isnan(attention_statistics(a[:1])[1])
    with pytest.raises(ValueError, match="attention must be"):
        attention_statistics(torch.ones(4))
