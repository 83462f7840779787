"""The UniMedI module: one call on a mixed batch, gradients, EMA teacher, downstream API, training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unimedi_monai.engines import param_groups
from unimedi_monai.io.checkpoint import CheckpointMismatchError, atomic_save, load_weights
from unimedi_monai.networks import UniMedI

REPORTS = [
    "A 12 mm nodule in the right upper lobe.",
    "Large left lower lobe consolidation.",
    "No acute cardiopulmonary abnormality.",
    "Right pleural effusion.",
]


@pytest.fixture()
def model(text_encoder):
    torch.manual_seed(0)
    return UniMedI("tiny", text_encoder=text_encoder, slice_top_k=2)


def _batch():
    g = torch.Generator().manual_seed(1)
    xray = torch.rand(4, 1, 224, 224, generator=g)
    ct = torch.rand(2, 1, 128, 128, 32, generator=g)
    return dict(xray=xray, xray_reports=REPORTS, ct=ct, ct_reports=REPORTS[:2])


def test_forward_returns_losses_and_diagnostics(model):
    out = model(**_batch())
    for key in ("loss", "loss_vl", "loss_icl", "loss_pcl"):
        assert torch.isfinite(out[key]), key
    expected = out["loss_vl"] + model.icl_weight * out["loss_icl"] + model.pcl_weight * out["loss_pcl"]
    torch.testing.assert_close(out["loss"].detach(), expected)
    assert out["temperature"] == pytest.approx(0.07)
    assert out["mask_ratio"] == pytest.approx(0.5, abs=0.01)
    sel = out["selected_slices"]
    assert sel.shape == (2, 2) and (sel >= 0).all() and (sel < 32).all()
    assert out["image_embedding"].shape == (6, 32) == out["text_embedding"].shape


def test_gradients_reach_student_never_teacher(model):
    model(**_batch())["loss"].backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert all(not p.requires_grad for p in model.teacher.parameters())
    params = dict(model.named_parameters())
    for prefix in (
        "encoder.tokenizer_2d.proj.",
        "encoder.tokenizer_3d.proj.",
        "encoder.mask_token",
        "encoder.backbone.blocks.0.qkv.weight",
        "head.mlp.0.weight",
        "contrastive_loss.logit_scale",
        "image_projection.net.weight",
        "text_projection.net.weight",
    ):
        grads = [p.grad for n, p in params.items() if n.startswith(prefix)]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), prefix


def test_ema_update(model):
    student, teacher = model.student_teacher_pairs()
    with torch.no_grad():
        for s in student:
            s.add_(1.0)
    before = [t.clone() for t in teacher]
    model.update_teacher(0.9)
    for s, t, b in zip(student, teacher, before):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * s)
    snapshot = [t.clone() for t in teacher]
    model.update_teacher(1.0)  # momentum 1 leaves the teacher as it is
    for t, b in zip(teacher, snapshot):
        torch.testing.assert_close(t, b)


def test_teacher_stays_in_eval_mode(model):
    model.train()
    assert model.encoder.training and not model.teacher.training


def test_downstream_api(model):
    model.eval()
    emb, patches = model.encode_image(torch.rand(3, 1, 224, 224))
    assert emb.shape == (3, 32) and patches.shape == (3, 196, 64)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    emb, patches = model.encode_image(torch.rand(2, 1, 128, 128, 32))
    assert emb.shape == (2, 32) and patches.shape == (2, 512 + 2 * 64, 64)
    _, patches = model.encode_image(torch.rand(2, 1, 128, 128, 32), with_slices=False)
    assert patches.shape == (2, 512, 64)
    assert model.encode_text(REPORTS).shape == (4, 32)
    idx, scores = model.select_slices(torch.rand(2, 1, 128, 128, 32), k=5)
    assert idx.shape == (2, 5) and scores.shape == (2, 32)
    assert torch.equal(idx, torch.topk(scores, 5).indices.sort().values)


def test_checkpoint_roundtrip_and_mismatch(model, text_encoder, tmp_path):
    path = atomic_save(model.state_dict(), tmp_path / "model.pt")
    other = UniMedI("tiny", text_encoder=text_encoder, slice_top_k=2)
    report = load_weights(other, str(path)).load_report
    assert not report["missing"] and not report["unexpected"] and len(report["loaded"]) == len(model.state_dict())
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    wider = UniMedI({"preset": "tiny", "hidden_size": 96, "num_heads": 2}, text_encoder=text_encoder)
    with pytest.raises(CheckpointMismatchError, match="shape mismatch"):
        load_weights(wider, path)
    (tmp_path / "bad.pt").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(RuntimeError, match="bad.pt"):
        load_weights(other, tmp_path / "bad.pt")


def test_few_steps_lower_the_loss(model):
    batch = _batch()
    opt = torch.optim.AdamW(param_groups(model, weight_decay=0.0), lr=1e-3)
    losses = []
    for _ in range(8):
        out = model(**batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        model.update_teacher(0.9)
        losses.append(float(out["loss"].detach()))
    assert losses[-1] < losses[0] - 0.5, losses


def test_teacher_takes_the_students_batchnorm_statistics(model):
    model.train()
    model(**_batch())  # the student's conv-stem BatchNorm statistics move; the teacher's (eval mode) do not
    pairs = list(zip(model.encoder.buffers(), model.teacher["encoder"].buffers()))
    assert pairs and any(not torch.equal(s, t) for s, t in pairs)
    model.update_teacher(0.996)
    for s, t in pairs:
        torch.testing.assert_close(t, s)


def test_teacher_matches_student_at_step_one_and_views_differ(text_encoder):
    """Identical weights, no mask, the same view: teacher and student [CLS] agree (BatchNorm on
    batch statistics in both); the student's own view is a photometric change of the same geometry."""
    torch.manual_seed(0)
    model = UniMedI("tiny", text_encoder=text_encoder, slice_top_k=2, mask_ratio=0.0, student_view="same")
    model.train()
    batch = _batch()
    with torch.no_grad():
        s = model.encoder(model.encoder.embed_xray(batch["xray"]))["cls"]
        t = model.teacher["encoder"](model.teacher["encoder"].embed_xray(batch["xray"]))["cls"]
    torch.testing.assert_close(s, t)
    model.student_view_mode = "photometric"
    view = model.student_view(batch["xray"])
    assert view.shape == batch["xray"].shape and not torch.equal(view, batch["xray"])
    # geometry kept: the view is a monotone intensity change plus small noise, so it correlates with the input
    corr = torch.corrcoef(torch.stack([view[0].flatten(), batch["xray"][0].flatten()]))[0, 1]
    assert corr > 0.8
    with pytest.raises(ValueError, match="student_view"):
        UniMedI("tiny", text_encoder=text_encoder, student_view="other")


def test_mask_ratio_holds_in_each_token_group_and_diagnostics(model):
    out = model(**_batch())
    d = out["diagnostics"]
    for key in ("mask_ratio_xray", "mask_ratio_ct3d", "mask_ratio_ct2d"):
        assert d[key] == pytest.approx(0.5, abs=0.01), key
    for key in (
        "icl_entropy_xray",
        "icl_entropy_ct",
        "icl_kl",
        "icl_distinct_xray",
        "icl_distinct_ct",
        "icl_log_k",
        "pcl_entropy_ct3d",
        "pcl_kl",
        "teacher_cls_cos_xray",
        "teacher_cls_cos_ct",
        "teacher_attn_entropy_xray",
        "teacher_attn_entropy_ct",
        "teacher_attn_cos_xray",
        "teacher_attn_cos_ct",
        "slice_pos_mean",
        "slice_pos_spread",
    ):
        assert key in d and d[key] == d[key], key
    assert 1 <= d["icl_distinct_xray"] <= 4 and 1 <= d["icl_distinct_ct"] <= 2
    assert 0 <= d["icl_entropy_xray"] <= d["icl_log_k"] + 1e-6
    assert -1.0 <= d["teacher_cls_cos_xray"] <= 1.0 + 1e-6
    for modality in ("xray", "ct"):
        assert 0.0 <= d[f"teacher_attn_entropy_{modality}"] <= 1.0 + 1e-6
        assert 0.0 <= d[f"teacher_attn_cos_{modality}"] <= 1.0 + 1e-6
    assert model.icl_loss.center.shape[0] == 2 and model.pcl_loss.center.shape[0] == 3
    single = UniMedI("tiny", text_encoder=model.text_encoder, slice_top_k=2, center_per_group=False)
    assert single.icl_loss.center.shape[0] == 1 and torch.isfinite(single(**_batch())["loss"])


def test_step_without_masked_tokens(model):
    """Mask ratio 0 (the start of the mask warm-up): L_pcl has nothing to distil and is 0."""
    model.mask_ratio = 0.0
    out = model(**_batch())
    assert float(out["loss_pcl"]) == 0.0 and torch.isfinite(out["loss"])
    out["loss"].backward()


def test_uniform_slice_selection_for_the_ablation(text_encoder):
    torch.manual_seed(0)
    model = UniMedI("tiny", text_encoder=text_encoder, slice_top_k=4, slice_selection="uniform")
    out = model(**_batch())
    assert out["selected_slices"].tolist() == [[4, 12, 20, 28]] * 2 and torch.isfinite(out["loss"])
    with pytest.raises(ValueError, match="slice_selection"):
        UniMedI("tiny", text_encoder=text_encoder, slice_selection="random")


def test_position_scale_reaches_the_tokenizers_from_the_pretrain_config(text_encoder):
    from monai.bundle import ConfigParser

    from unimedi_monai.networks.patch_tokenizer import POSITION_RMS_CONV_STEM

    small = POSITION_RMS_CONV_STEM * 2**0.5
    parser = ConfigParser()
    parser.read_config(str(Path(__file__).resolve().parents[1] / "bundles/pretrain/configs/train.yaml"))
    assert parser.get_parsed_content("network_def#position_scale") == 1.0  # the default: MAE's amplitude
    parser["position_scale"] = small
    scale = parser.get_parsed_content("network_def#position_scale")
    assert scale == small
    torch.manual_seed(0)
    model = UniMedI("tiny", text_encoder=text_encoder, position_scale=scale)
    reference = UniMedI("tiny", text_encoder=text_encoder)
    for encoder in (model.encoder, model.teacher["encoder"]):
        for name in ("tokenizer_2d", "tokenizer_3d"):
            pos = getattr(encoder, name).position_embedding.detach()
            ref = getattr(reference.encoder, name).position_embedding.detach()
            assert pos.pow(2).mean().sqrt().item() == pytest.approx(POSITION_RMS_CONV_STEM, rel=0.1)
            torch.testing.assert_close(pos, ref * small)
    # the probe's random-init baseline starts from the same position init
    from unimedi_monai.evaluation.pretrain_eval import _random_encoder

    assert _random_encoder(model, 0).tokenizer_3d.position_scale == small


def test_slice_report_loss_joins_the_step(text_encoder):
    """L_slice: each CT's report against the best of its slices encoded alone; off by default."""
    torch.manual_seed(0)
    model = UniMedI("tiny", text_encoder=text_encoder, slice_top_k=2, slice_report_weight=0.5, slice_report_slices=4)
    out = model(**_batch())
    assert float(out["loss_slice"]) > 0
    expected = out["loss_vl"] + out["loss_icl"] + out["loss_pcl"] + 0.5 * out["loss_slice"]
    torch.testing.assert_close(out["loss"].detach(), expected)
    diagnostics = out["diagnostics"]
    assert 0 <= diagnostics["slice_pos_text_mean"] < 32 and diagnostics["slice_pos_text_spread"] >= 0
    # the term's gradient reaches the 2D stem and the projection beyond what the other losses give
    out["loss"].backward()
    with_term = next(model.encoder.tokenizer_2d.proj.parameters()).grad.clone()
    torch.manual_seed(0)
    plain = UniMedI("tiny", text_encoder=text_encoder, slice_top_k=2)
    out = plain(**_batch())
    assert float(out["loss_slice"]) == 0.0 and "slice_pos_text_mean" not in out["diagnostics"]
    out["loss"].backward()
    assert not torch.allclose(with_term, next(plain.encoder.tokenizer_2d.proj.parameters()).grad)
    with pytest.raises(ValueError, match="slice_report_weight"):
        UniMedI("tiny", text_encoder=text_encoder, slice_report_weight=-1.0)
    with pytest.raises(ValueError, match="slice_report_slices"):
        UniMedI("tiny", text_encoder=text_encoder, slice_report_slices=33)


def test_slice_report_top_keeps_the_slices_closest_to_the_report(text_encoder):
    """slice_report_top m: every drawn slice scored without gradient, the m closest to the CT's own report
    re-encoded with it. m = n computes the whole bag's loss; m < n keeps each CT's top-m slices."""

    def step(top: int, n: int = 8) -> tuple[UniMedI, dict]:
        torch.manual_seed(0)
        model = UniMedI(
            "tiny",
            text_encoder=text_encoder,
            slice_top_k=2,
            slice_report_weight=1.0,
            slice_report_slices=n,
            slice_report_top=top,
        )
        return model, model(**_batch())

    _, whole = step(0)
    _, same = step(8)
    torch.testing.assert_close(same["loss_slice"], whole["loss_slice"])
    torch.testing.assert_close(same["loss"].detach(), whole["loss"].detach())

    captured = {}
    model, _ = step(0)
    original = model._best_report_slices

    def spy(g, own_text):
        drawn = g["report_slices"].clone()
        with torch.no_grad():
            emb = model.image_projection(model.slice_features(g["report_view"], drawn))
            sims = (emb * own_text.unsqueeze(1)).sum(-1)
        original(g, own_text)
        captured.update(drawn=drawn, sims=sims, kept=g["report_slices"].clone())

    model.slice_report_top = 2
    model._best_report_slices = spy
    torch.manual_seed(0)
    out = model(**_batch())
    kept, drawn, sims = captured["kept"], captured["drawn"], captured["sims"]
    assert kept.shape == (drawn.shape[0], 2)
    for c in range(drawn.shape[0]):  # the kept slices are each CT's two best by the no-gradient score
        best = set(drawn[c, sims[c].topk(2).indices].tolist())
        assert set(kept[c].tolist()) == best
    assert float(out["loss_slice"]) > 0
    out["loss"].backward()
    assert next(model.encoder.tokenizer_2d.proj.parameters()).grad is not None
    with pytest.raises(ValueError, match="slice_report_top"):
        UniMedI("tiny", text_encoder=text_encoder, slice_report_slices=4, slice_report_top=5)


def test_slice_report_slices_cover_every_depth_bin(model):
    volumes = torch.zeros(64, 1, 8, 8, 32)
    model.train()
    idx = model.random_slices(volumes, 4)
    assert idx.shape == (64, 4)
    assert (idx // 8 == torch.arange(4)).all()  # one slice in each quarter of the depth
    assert len(torch.unique(idx[:, 0])) > 4  # drawn, not fixed
    model.eval()
    assert model.random_slices(volumes[:2], 4).tolist() == [[4, 12, 20, 28]] * 2


def test_slice_report_keys_reach_the_network_from_the_pretrain_config():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(Path(__file__).resolve().parents[1] / "bundles/pretrain/configs/train.yaml"))
    parser["slice_report_weight"] = 0.25
    parser["slice_report_slices"] = 8
    parser["slice_report_top"] = 2
    assert parser.get_parsed_content("network_def#slice_report_weight") == 0.25
    assert parser.get_parsed_content("network_def#slice_report_slices") == 8
    assert parser.get_parsed_content("network_def#slice_report_top") == 2


def test_sampled_slice_selection_draws_in_training_and_takes_the_top_k_in_eval(text_encoder):
    """slice_selection 'sampled': the training step's CT slices are drawn by attention mass (they change from
    step to step on the same volume); in eval mode the selection is the top-k, as with 'attention'."""
    torch.manual_seed(0)
    model = UniMedI("tiny", text_encoder=text_encoder, slice_top_k=2, slice_selection="sampled").train()
    batch = _batch()
    drawn = {tuple(model(**batch)["selected_slices"][0].tolist()) for _ in range(4)}
    assert len(drawn) > 1
    model.eval()
    with torch.no_grad():
        picked, scores = model.select_slices(batch["ct"])
        out = model(**batch)
    assert out["selected_slices"].tolist() == picked.tolist() == scores.topk(2).indices.sort().values.tolist()
    with pytest.raises(ValueError, match="slice_selection"):
        UniMedI("tiny", text_encoder=text_encoder, slice_selection="random")
