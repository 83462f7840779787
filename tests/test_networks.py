"""Tokenizers, the shared backbone and its [CLS] attention, the report encoder."""

from __future__ import annotations

import pytest
import torch

from unimedi_monai.networks import (
    PatchTokenizer,
    ReportEncoder,
    SharedBackbone,
    TextModelNotFoundError,
    resolve_backbone_config,
)


def test_2d_tokenizer_counts_and_interpolation():
    tok = PatchTokenizer(2, 224, 16, 32)
    assert tok(torch.zeros(2, 1, 224, 224)).shape == (2, 196, 32)
    assert tok(torch.zeros(3, 1, 128, 128)).shape == (3, 64, 32)
    # interpolating the 14x14 position grid onto itself is the identity
    torch.testing.assert_close(tok.position_embedding_for((14, 14)), tok.position_embedding.flatten(2).transpose(1, 2))
    assert tok.position_embedding_for((8, 8)).shape == (1, 64, 32)


def test_3d_tokenizer_counts_depth_fastest():
    tok = PatchTokenizer(3, (128, 128, 32), (16, 16, 4), 16)
    assert tok.num_patches == 512
    assert tok(torch.zeros(1, 1, 128, 128, 32)).shape == (1, 512, 16)
    # a bright patch at (h=1, w=2, d=3) changes token (1*8+2)*8+3 only
    with torch.no_grad():
        tok.position_embedding.zero_()
        tok.modality_embedding.zero_()
        x = torch.zeros(1, 1, 128, 128, 32)
        base = tok(x)
        x[..., 16:32, 32:48, 12:16] = 1.0
        changed = (tok(x) - base).abs().sum(-1)[0]
    assert changed.nonzero().flatten().tolist() == [(1 * 8 + 2) * 8 + 3]


def test_tokenizer_rejects_bad_shapes():
    tok = PatchTokenizer(3, (128, 128, 32), (16, 16, 4), 16)
    with pytest.raises(ValueError, match="divisible"):
        tok(torch.zeros(1, 1, 128, 128, 30))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W, D\)"):
        tok(torch.zeros(1, 128, 128, 32))


def test_mask_token_replaces_before_position_embedding():
    tok = PatchTokenizer(2, 32, 16, 8)
    x = torch.randn(1, 1, 32, 32)
    mask = torch.tensor([[True, False, False, True]])
    mask_token = torch.full((8,), 5.0)
    out = tok(x, mask, mask_token)
    pos = tok.position_embedding_for((2, 2))[0] + tok.modality_embedding[0, 0]
    torch.testing.assert_close(out[0, 0], mask_token + pos[0])
    torch.testing.assert_close(out[0, 1], tok(x)[0, 1])


def _explicit_cls_attention(block, x):
    b, n, c = x.shape
    qkv = block.qkv(block.norm1(x)).view(b, n, 3, block.num_heads, block.head_dim).permute(2, 0, 3, 1, 4)
    q, k, _ = qkv.unbind(0)
    full = torch.softmax(q @ k.transpose(-2, -1) / block.head_dim**0.5, dim=-1)  # (B, H, L, L)
    return full[:, :, 0].mean(1)  # (B, L)


@pytest.mark.parametrize("layers", ["last", "all"])
def test_cls_attention_matches_explicit_softmax(layers):
    backbone = SharedBackbone({"preset": "tiny", "num_layers": 3}).eval()
    tokens = torch.randn(2, 40, 64)
    out = backbone(tokens, cls_attention=layers, return_hidden_states=True)
    # reference: explicit softmax(QK^T / sqrt(d)) row of [CLS], per layer, from the same inputs
    x = torch.cat([backbone.cls_token.expand(2, -1, -1), tokens], 1)
    refs = []
    for i, block in enumerate(backbone.blocks):
        refs.append(_explicit_cls_attention(block, x))
        x = out["hidden_states"][i]
    ref = refs[-1] if layers == "last" else torch.stack(refs).mean(0)
    assert out["cls_attention"].shape == (2, 40)
    torch.testing.assert_close(out["cls_attention"], ref[:, 1:], atol=1e-5, rtol=0)


def test_backbone_outputs_and_presets():
    backbone = SharedBackbone("tiny")
    out = backbone(torch.randn(3, 196, 64))
    assert out["cls"].shape == (3, 64) and out["patches"].shape == (3, 196, 64) and out["cls_attention"] is None
    assert out["pooled"] is out["cls"]  # the tiny preset pools the [CLS] alone
    with pytest.raises(ValueError, match="backbone pooling must be 'cls' or 'cls_max'"):
        resolve_backbone_config({"preset": "tiny", "pooling": "mean"})
    base = resolve_backbone_config("base")
    assert (base.hidden_size, base.num_layers, base.num_heads, base.mlp_dim) == (768, 12, 12, 3072)
    with pytest.raises(ValueError, match="unknown backbone preset"):
        resolve_backbone_config("huge")
    with pytest.raises(ValueError, match="unknown backbone key"):
        resolve_backbone_config({"preset": "tiny", "hiden_size": 3})


def test_cls_max_pooling_against_reference():
    """``cls_max``: the [CLS] plus a LayerNorm of the channel-wise token max; one strong token moves it, the [CLS]
    of a uniform-attention backbone barely."""
    torch.manual_seed(0)
    backbone = SharedBackbone({"preset": "tiny", "pooling": "cls_max"}).eval()
    tokens = torch.randn(2, 50, 64) * 0.1
    out = backbone(tokens)
    ref = out["cls"] + torch.nn.functional.layer_norm(out["patches"].amax(dim=1), (64,))  # max_norm at its init
    torch.testing.assert_close(out["pooled"], ref)
    lesion = tokens.clone()
    lesion[:, 7] += 3.0 * torch.randn(64)  # one token of 50 differs
    moved = backbone(lesion)
    shift_pooled = (moved["pooled"] - out["pooled"]).norm(dim=1) / out["pooled"].norm(dim=1)
    shift_cls = (moved["cls"] - out["cls"]).norm(dim=1) / out["cls"].norm(dim=1)
    assert bool((shift_pooled > 3 * shift_cls).all())
    # the max's LayerNorm is a parameter: a [CLS]-only state dict does not load into a cls_max backbone
    with pytest.raises(RuntimeError, match="max_norm"):
        backbone.load_state_dict(SharedBackbone("tiny").state_dict())


def test_report_encoder_offline_default(text_encoder):
    feats = text_encoder(["No acute cardiopulmonary abnormality.", "A 14 mm nodule in the right upper lobe."])
    assert feats.shape == (2, 384)
    assert text_encoder.pooling == "mean"
    # truncation at max_length
    assert text_encoder.tokenize(["word " * 500])["input_ids"].shape[1] == text_encoder.max_length == 128
    trainable = {
        n.split(".")[2] if n.startswith("encoder.layer") else n
        for n, p in text_encoder.model.named_parameters()
        if p.requires_grad
    }
    assert trainable == {"5"}  # only the top layer of the 6


def test_report_encoder_missing_model_has_one_line_error(tmp_path):
    with pytest.raises(TextModelNotFoundError) as err:
        ReportEncoder("nonexistent-org/no-such-model")
    msg = str(err.value)
    assert "\n" not in msg and "huggingface-cli download" in msg and "nonexistent-org/no-such-model" in msg
    with pytest.raises(TextModelNotFoundError, match="does not exist"):
        ReportEncoder(str(tmp_path / "missing_folder"))


def test_conv_stem_tokenizer_counts_and_sincos_init():
    from unimedi_monai.networks.patch_tokenizer import sincos_position_embedding

    tok2d = PatchTokenizer(2, 224, 16, 48, stem="conv")
    tok3d = PatchTokenizer(3, (128, 128, 32), (16, 16, 4), 48, stem="conv")
    assert tok2d(torch.zeros(2, 1, 224, 224)).shape == (2, 196, 48)
    assert tok2d(torch.zeros(2, 1, 128, 128)).shape == (2, 64, 48)
    assert tok3d(torch.zeros(1, 1, 128, 128, 32)).shape == (1, 512, 48)
    with pytest.raises(ValueError, match="power-of-two"):
        PatchTokenizer(2, 48, 12, 48, stem="conv")
    emb = sincos_position_embedding((8, 8, 8), 48)
    assert emb.shape == (48, 8, 8, 8)
    # channels 0-15 encode the first axis: sines then cosines at geometric frequencies (the first is 1)
    torch.testing.assert_close(emb[0, :, 3, 5], torch.sin(torch.arange(8.0)))
    torch.testing.assert_close(
        emb[8, 2, :, 1], torch.full((8,), torch.cos(torch.tensor(2.0)).item())
    )  # 8 sines, then 8 cosines
    # every grid position gets a distinct embedding
    flat = emb.flatten(1).T
    assert torch.cdist(flat, flat).add(torch.eye(512) * 1e3).min() > 1e-3


def test_drop_path_is_monais_with_a_fused_residual():
    """SDPABlock's DropPath: MONAI's draw and 1/keep scaling; its fused residual equals x + DropPath(branch)."""
    from monai.networks.layers import DropPath as MonaiDropPath

    from unimedi_monai.networks.attention_block import DropPath, SDPABlock

    x, branch = torch.randn(6, 5, 8), torch.randn(6, 5, 8)
    ours, monai_dp = DropPath(0.5).train(), MonaiDropPath(0.5).train()
    torch.manual_seed(3)
    expected = monai_dp(branch)
    torch.manual_seed(3)
    assert torch.equal(ours(branch), expected)
    kept = expected.flatten(1).abs().sum(1) > 0
    assert 0 < kept.sum() < 6 and torch.allclose(expected[kept], 2.0 * branch[kept])  # scaled by 1 / keep
    torch.manual_seed(3)
    fused = ours.residual(x, branch)
    assert torch.allclose(fused, x + expected, atol=1e-6)
    assert torch.equal(ours.eval().residual(x, branch), x + branch) and ours.rate == 0.5
    block = SDPABlock(8, 2, 16, drop_path_rate=0.1)
    assert not any("drop_path" in k for k in block.state_dict())  # checkpoint keys unchanged


def test_position_scale_sets_the_position_init_rms():
    from unimedi_monai.networks.patch_tokenizer import POSITION_RMS_CONV_STEM, sincos_position_embedding

    small = POSITION_RMS_CONV_STEM * 2**0.5
    for dims, size, patch in ((2, 224, 16), (3, (128, 128, 32), (16, 16, 4))):
        default = PatchTokenizer(dims, size, patch, 48, stem="conv")
        scaled = PatchTokenizer(dims, size, patch, 48, stem="conv", position_scale=small)
        sincos = sincos_position_embedding(default.grid_size, 48).unsqueeze(0)
        torch.testing.assert_close(default.position_embedding.data, sincos)  # amplitude 1 stays the default
        torch.testing.assert_close(scaled.position_embedding.data, sincos * small)
        rms = scaled.position_embedding.detach().pow(2).mean().sqrt().item()
        assert rms == pytest.approx(POSITION_RMS_CONV_STEM, rel=0.1)  # sin-cos channels have RMS ~1/sqrt(2)
        assert scaled.position_embedding.requires_grad  # still learnt
    assert PatchTokenizer(2, 32, 16, 8, position_scale=0).position_embedding.abs().sum() == 0
    with pytest.raises(ValueError, match="position_scale"):
        PatchTokenizer(2, 32, 16, 8, position_scale=-1.0)
