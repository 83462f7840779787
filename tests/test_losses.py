"""Each loss against a plain reference computation; schedules and the EMA update."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unimedi_monai.engines import cosine_schedule
from unimedi_monai.losses import ClsDistillationLoss, ContrastiveLoss, PatchDistillationLoss, SliceReportLoss


def reference_infonce(img, txt, temperature):
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    n = img.shape[0]
    total = 0.0
    for i in range(n):
        sims_i = [float(img[i] @ txt[j]) / temperature for j in range(n)]
        sims_t = [float(txt[i] @ img[j]) / temperature for j in range(n)]
        total += -sims_i[i] + math.log(sum(math.exp(s) for s in sims_i))
        total += -sims_t[i] + math.log(sum(math.exp(s) for s in sims_t))
    return total / (2 * n)


def test_contrastive_matches_reference_and_clamps():
    img, txt = F.normalize(torch.randn(6, 8), dim=-1), F.normalize(torch.randn(6, 8), dim=-1)
    loss = ContrastiveLoss(init_temperature=0.07)
    assert loss.temperature == pytest.approx(0.07)
    assert float(loss(img, txt).detach()) == pytest.approx(reference_infonce(img, txt, 0.07), rel=1e-5)
    with torch.no_grad():
        loss.logit_scale.fill_(math.log(1e4))  # would be temperature 1e-4
    assert loss.temperature == pytest.approx(0.01)
    assert float(loss(img, txt).detach()) == pytest.approx(reference_infonce(img, txt, 0.01), rel=1e-5)


def test_contrastive_temperature_gets_gradient():
    loss = ContrastiveLoss()
    img = F.normalize(torch.randn(4, 8), dim=-1)
    loss(img, img.clone()).backward()
    assert loss.logit_scale.grad is not None and loss.logit_scale.grad != 0


def test_slice_report_loss_matches_reference_and_reaches_only_the_best_slice():
    g = torch.Generator().manual_seed(0)
    slices = F.normalize(torch.randn(3, 5, 8, generator=g), dim=-1).requires_grad_(True)
    texts = F.normalize(torch.randn(7, 8, generator=g), dim=-1)
    targets = torch.tensor([4, 5, 6])  # the CT reports follow 4 X-ray reports
    scale = 1 / 0.07
    loss, best = SliceReportLoss()(slices, texts, targets, scale)
    # reference: a CT's score for a report is its best slice's cosine
    ref = slices.detach()
    score = [[max(float(ref[c, s] @ texts[t]) for s in range(5)) * scale for t in range(7)] for c in range(3)]
    ct_to_report = sum(-score[c][targets[c]] + math.log(sum(math.exp(v) for v in score[c])) for c in range(3)) / 3
    report_to_ct = 0.0
    for c in range(3):
        column = [score[o][targets[c]] for o in range(3)]
        report_to_ct += -column[c] + math.log(sum(math.exp(v) for v in column))
    assert float(loss.detach()) == pytest.approx(0.5 * (ct_to_report + report_to_ct / 3), rel=1e-5)
    expected_best = [max(range(5), key=lambda s: float(ref[c, s] @ texts[targets[c]])) for c in range(3)]
    assert best.tolist() == expected_best
    loss.backward()
    touched = slices.grad.abs().sum(dim=-1) > 0  # (3, 5): a slice gets gradient only as some pair's best
    maxima = torch.einsum("cnd,td->ctn", slices.detach(), texts).argmax(dim=-1)  # (3, 7)
    for c in range(3):
        assert set(touched[c].nonzero().flatten().tolist()) == set(maxima[c].tolist())
    with pytest.raises(ValueError, match="targets"):
        SliceReportLoss()(slices.detach(), texts, targets[:2], scale)


def test_slice_report_loss_teaches_which_slice_holds_the_finding():
    """Bags of 8 noise slices, one of which carries its report's finding at a random index: trained on
    the bag-level loss only, a linear encoder's best slice for the report finds that slice."""
    g = torch.Generator().manual_seed(0)
    n_classes, n_slices, dim = 4, 8, 16
    texts = F.normalize(torch.randn(n_classes, dim, generator=g), dim=-1)
    encoder = torch.nn.Linear(dim, dim)
    opt = torch.optim.Adam(encoder.parameters(), lr=0.05)
    loss_fn = SliceReportLoss()

    def bags(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        labels = torch.randint(n_classes, (n,), generator=g)
        where = torch.randint(n_slices, (n,), generator=g)
        x = torch.randn(n, n_slices, dim, generator=g)
        x[torch.arange(n), where, labels] += 3.0
        return x, labels, where

    def hit_rate() -> float:
        x, labels, where = bags(512)
        with torch.no_grad():
            sims = torch.einsum("cnd,cd->cn", F.normalize(encoder(x), dim=-1), texts[labels])
        return float((sims.argmax(dim=-1) == where).float().mean())

    before = hit_rate()
    for _ in range(300):
        x, labels, _ = bags(16)
        # every class's report in the batch (as the batch's reports), each bag's own one as its target
        loss, _ = loss_fn(F.normalize(encoder(x), dim=-1), texts, labels, 10.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = hit_rate()
    assert before < 0.25 and after > 0.7, (before, after)  # chance is 1/8


def reference_dino(student, teacher, center, ts, tt):
    out = 0.0
    for s, t in zip(student, teacher):
        p = torch.softmax((t - center[0]) / tt, -1)
        out += float(-(p * torch.log_softmax(s / ts, -1)).sum())
    return out / len(student)


def test_cls_distillation_matches_reference_and_updates_center():
    loss = ClsDistillationLoss(10, student_temperature=0.1, teacher_temperature=0.04, center_momentum=0.9)
    s, t = torch.randn(5, 10), torch.randn(5, 10)
    assert float(loss(s, t)) == pytest.approx(reference_dino(s, t, torch.zeros(1, 10), 0.1, 0.04), rel=1e-5)
    torch.testing.assert_close(loss.center, 0.1 * t.mean(0, keepdim=True))
    center = loss.center.clone()
    s2, t2 = torch.randn(5, 10), torch.randn(5, 10)
    assert float(loss(s2, t2)) == pytest.approx(reference_dino(s2, t2, center, 0.1, 0.04), rel=1e-5)
    torch.testing.assert_close(loss.center, 0.9 * center + 0.1 * t2.mean(0, keepdim=True))
    loss.eval()
    before = loss.center.clone()
    loss(s, t)
    torch.testing.assert_close(loss.center, before)  # no update in eval mode


def test_patch_distillation_per_sample_average():
    loss = PatchDistillationLoss(6, 0.1, 0.04, 0.9)
    s, t = torch.randn(7, 6), torch.randn(7, 6)
    idx = torch.tensor([0, 0, 0, 2, 2, 2, 2])  # sample 1 has no masked token
    got = float(loss(s, t, idx, num_samples=3))
    zero = torch.zeros(1, 6)
    ref = 0.5 * (reference_dino(s[:3], t[:3], zero, 0.1, 0.04) + reference_dino(s[3:], t[3:], zero, 0.1, 0.04))
    assert got == pytest.approx(ref, rel=1e-5)
    torch.testing.assert_close(loss.center, 0.1 * t.mean(0, keepdim=True))


def test_cosine_schedule_shape_and_ends():
    sched = cosine_schedule(1.0, 0.0, 100, warmup_iterations=10, warmup_start_value=0.0)
    assert sched.shape == (100,)
    assert sched[0] == 0.0 and sched[10] == pytest.approx(1.0) and sched[-1] == pytest.approx(0.0)
    assert np.all(np.diff(sched[:11]) > 0) and np.all(np.diff(sched[10:]) <= 1e-12)
    mom = cosine_schedule(0.996, 1.0, 50)
    assert mom[0] == pytest.approx(0.996) and mom[-1] == pytest.approx(1.0)


def test_distillation_centres_each_group_on_its_own():
    loss = ClsDistillationLoss(5, 0.1, 0.04, 0.9, num_groups=2)
    s, t = torch.randn(6, 5), torch.randn(6, 5)
    t[3:] += 10.0  # a modality offset: group 1 sits far from group 0
    group = torch.tensor([0, 0, 0, 1, 1, 1])
    got = float(loss(s, t, group, ("xray", "ct")))
    zero = torch.zeros(1, 5)
    ref = 0.5 * (reference_dino(s[:3], t[:3], zero, 0.1, 0.04) + reference_dino(s[3:], t[3:], zero, 0.1, 0.04))
    assert got == pytest.approx(ref, rel=1e-5)
    torch.testing.assert_close(loss.center[0], 0.1 * t[:3].mean(0))
    torch.testing.assert_close(loss.center[1], 0.1 * t[3:].mean(0))
    before = loss.center.clone()
    loss(s[:2], t[:2], torch.tensor([0, 0]), ("xray", "ct"))  # group 1 absent: its centre is kept
    torch.testing.assert_close(loss.center[1], before[1])
    torch.testing.assert_close(loss.center[0], 0.9 * before[0] + 0.1 * t[:2].mean(0))
    with pytest.raises(ValueError, match="group"):
        loss(s, t)  # two centres need the group of each row
    with pytest.raises(ValueError, match="group indices"):
        loss(s, t, torch.tensor([0, 0, 0, 1, 1, 2]))


def test_distillation_diagnostics_flag_collapse_and_agreement():
    k = 8
    loss = ClsDistillationLoss(k, 0.1, 0.04, 0.9, num_groups=2)
    loss.eval()
    # identical teacher rows: one top prototype per group, however many images
    t = torch.randn(1, k).repeat(4, 1)
    loss(torch.randn(4, k), t, torch.tensor([0, 0, 1, 1]), ("xray", "ct"))
    d = loss.last_diagnostics
    assert d["distinct_xray"] == 1 and d["distinct_ct"] == 1 and d["log_k"] == pytest.approx(math.log(k))
    # a flat teacher: uniform targets, entropy log K
    loss(torch.randn(4, k), torch.zeros(4, k), torch.tensor([0, 1, 0, 1]), ("xray", "ct"))
    assert loss.last_diagnostics["entropy"] == pytest.approx(math.log(k), rel=1e-5)
    # a student that reproduces the targets has zero KL; a different one has a positive KL
    t = torch.eye(k)[:4] * 5.0
    targets = torch.softmax(t / 0.04, -1)
    student = torch.log(targets.clamp_min(1e-12)) * 0.1  # softmax(student / T_s) == targets
    loss(student, t, torch.tensor([0, 0, 1, 1]), ("xray", "ct"))
    assert abs(loss.last_diagnostics["kl"]) < 1e-4 and loss.last_diagnostics["distinct_xray"] == 2
    loss(torch.zeros(4, k), t, torch.tensor([0, 0, 1, 1]), ("xray", "ct"))
    assert loss.last_diagnostics["kl"] > 1.0
