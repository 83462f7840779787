"""Centred slice selection: the running mean of the teacher's slice scores, in UniMedI and the inference networks."""

from __future__ import annotations

import pytest
import torch

from unimedi_monai.networks import UniMedI
from unimedi_monai.networks.slice_score_centre import SliceScoreCentre
from unimedi_monai.packaging.embedding_network import ImageEmbeddingNetwork
from unimedi_monai.slice_selection.network import SliceSelectionNet

REPORTS = ["A 12 mm nodule in the right upper lobe.", "Right pleural effusion.", "Normal CT chest."]


def test_centre_is_set_then_moves_by_ema_and_is_subtracted():
    centre = SliceScoreCentre(4, momentum=0.9)
    scores = torch.tensor([[1.0, 2.0, 3.0, 4.0], [3.0, 2.0, 1.0, 0.0]])
    assert torch.equal(centre(scores), scores)  # never updated: raw scores
    centre.update(scores)
    torch.testing.assert_close(centre.centre, torch.tensor([2.0, 2.0, 2.0, 2.0]))
    torch.testing.assert_close(centre(scores), scores - 2.0)
    centre.update(torch.tensor([[12.0, 2.0, 2.0, 2.0]]))
    torch.testing.assert_close(centre.centre, torch.tensor([3.0, 2.0, 2.0, 2.0]))
    # another depth: the centre is interpolated (a constant centre stays constant)
    flat = SliceScoreCentre(4)
    flat.update(torch.full((1, 4), 0.25))
    torch.testing.assert_close(flat(torch.ones(2, 8)), torch.full((2, 8), 0.75))
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        centre.update(torch.ones(2, 5))
    with pytest.raises(ValueError, match="momentum"):
        SliceScoreCentre(4, momentum=1.0)


def test_weights_without_a_centre_load_as_uncentred():
    centre = SliceScoreCentre(4)
    centre.update(torch.rand(3, 4))
    centre.load_state_dict({})
    assert not bool(centre.initialised) and torch.equal(centre.centre, torch.zeros(4))


def _model(text_encoder, centring: bool) -> UniMedI:
    torch.manual_seed(0)
    return UniMedI(
        "tiny",
        text_encoder=text_encoder,
        slice_top_k=2,
        slice_centring=centring,
        student_view="same",
        center_per_group=False,
        head_batch_norm=False,
    )


def test_training_fits_the_centre_and_selection_uses_it(text_encoder):
    g = torch.Generator().manual_seed(3)
    ct = torch.rand(3, 1, 128, 128, 32, generator=g)
    plain, centred = _model(text_encoder, False), _model(text_encoder, True)
    for model in (plain, centred):
        model.train()(ct=ct, ct_reports=REPORTS)
    assert not bool(plain.slice_centre.initialised)
    assert bool(centred.slice_centre.initialised)
    plain.eval()
    centred.eval()
    _, raw = plain.select_slices(ct)
    _, scores = centred.select_slices(ct)
    # the same weights (the teacher is unchanged by a forward), so the centre is the batch mean of the raw scores
    torch.testing.assert_close(centred.slice_centre.centre, raw.mean(0))
    torch.testing.assert_close(scores, raw - raw.mean(0))
    assert scores.mean(0).abs().max() < 1e-4 < raw.mean(0).abs().min()  # (train-mode BatchNorm: not exactly 0)
    # the export network selects the same slices from the saved weights
    net = ImageEmbeddingNetwork("tiny", slice_top_k=2).eval()
    net.load_state_dict(centred.state_dict())
    assert bool(net.slice_centre.initialised)
    expected, _ = centred.select_slices(ct, 2)
    assert torch.equal(net.select_slices(ct), expected)
    # and the slice-selection bundle's network scores the slices as the centred teacher does
    scorer = SliceSelectionNet(
        backbone="tiny",
        text_encoder=text_encoder,
        slice_top_k=2,
        student_view="same",
        center_per_group=False,
        head_batch_norm=False,
    ).eval()
    scorer.load_state_dict(centred.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(scorer(ct), scores)
