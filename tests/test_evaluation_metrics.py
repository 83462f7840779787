# Copyright (c) unimedi-monai contributors
# Licensed under the Apache License, Version 2.0

from __future__ import annotations

import json
import logging
import math
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from unimedi_monai.evaluation.embedding_plot import (
    plot_embeddings,
    plot_similarity_matrix,
    plot_slice_scores,
    project_2d,
)
from unimedi_monai.evaluation.retrieval import pessimistic_ranks, retrieval_recall, retrieval_recall_subsets
from unimedi_monai.evaluation.slice_hits import random_slice_hit_rate, slice_hit, slice_hit_rate
from unimedi_monai.evaluation.training_curves import (
    _moving_average,
    default_panels,
    plot_training_curves,
    read_jsonl_history,
)

# ----------------------------------------------------------------------------------------------
# reference implementations (plain loops over the full similarity matrix)
# ----------------------------------------------------------------------------------------------


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def _reference_recall(img: np.ndarray, txt: np.ndarray, ks, groups=None) -> dict[str, float]:
    """Top-k by a full argsort (valid without ties, i.e. random embeddings)."""
    n = img.shape[0]
    sim = _cosine(img.astype(np.float64), txt.astype(np.float64))
    out: dict[str, float] = {"num_pairs": n}
    for k in ks:
        for name, s in (("i2t", sim), ("t2i", sim.T)):
            hits = hits_text = 0
            for i in range(n):
                top = np.argsort(-s[i], kind="stable")[:k]
                hits += int(i in top)
                if groups is not None:
                    hits_text += int(any(groups[j] == groups[i] for j in top))
            out[f"{name}_R@{k}"] = hits / n
            if groups is not None:
                out[f"{name}_R@{k}_text"] = hits_text / n
        out[f"chance_R@{k}"] = min(k, n) / n
        if groups is not None:
            kk = min(k, n)
            # P(miss) = prod_j (n - s - j) / (n - j): a different formula than the implementation's
            miss = [math.prod((n - groups.count(g) - j) / (n - j) for j in range(kk)) for g in groups]
            out[f"chance_R@{k}_text"] = 1.0 - float(np.mean(miss))
    return out


def _assert_same_metrics(got: dict, ref: dict) -> None:
    assert set(got) == set(ref)
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


# ----------------------------------------------------------------------------------------------
# retrieval
# ----------------------------------------------------------------------------------------------


def test_identity_embeddings_give_perfect_recall():
    emb = torch.randn(20, 8, generator=torch.Generator().manual_seed(0))
    out = retrieval_recall(emb, emb * 3.0, ks=(1, 5))  # scaling is removed by the L2 normalisation
    assert out["i2t_R@1"] == 1.0 and out["t2i_R@1"] == 1.0
    assert out["i2t_R@5"] == 1.0 and out["t2i_R@5"] == 1.0
    assert out["chance_R@1"] == pytest.approx(1 / 20)
    assert out["chance_R@5"] == pytest.approx(5 / 20)
    assert out["num_pairs"] == 20


def test_known_permutation():
    gen = torch.Generator().manual_seed(1)
    img = torch.randn(10, 16, generator=gen)
    perm = torch.tensor([0, 1, 2, 3, 5, 4, 7, 8, 6, 9])  # 5 fixed points
    out = retrieval_recall(img, img[perm], ks=(1,))
    # text i is image perm[i]: image i's best text is the one equal to it, correct only at fixed points
    assert out["i2t_R@1"] == pytest.approx(0.5)
    assert out["t2i_R@1"] == pytest.approx(0.5)


def test_random_embeddings_match_reference_loop():
    rng = np.random.default_rng(3)
    n = 37
    img = rng.normal(size=(n, 8)).astype(np.float32)
    txt = (img + 1.2 * rng.normal(size=(n, 8))).astype(np.float32)
    groups = [f"report {int(g)}" for g in rng.integers(0, 9, size=n)]
    ks = (1, 5, 10, 37, 50)
    got = retrieval_recall(torch.from_numpy(img), torch.from_numpy(txt), ks=ks, text_groups=groups, chunk_size=5)
    ref = _reference_recall(img, txt, ks, groups)
    _assert_same_metrics(got, ref)
    assert 0.0 < got["i2t_R@1"] < 1.0  # the test data is not trivially perfect or hopeless
    assert got["i2t_R@1_text"] >= got["i2t_R@1"]
    assert got["i2t_R@50"] == 1.0 and got["chance_R@50"] == 1.0
    no_groups = retrieval_recall(torch.from_numpy(img), torch.from_numpy(txt), ks=ks)
    assert not any(key.endswith("_text") for key in no_groups)


def test_all_equal_embeddings_are_pessimistic():
    emb = torch.ones(5, 4)
    out = retrieval_recall(emb, emb, ks=(1, 4, 5))
    for direction in ("i2t", "t2i"):
        assert out[f"{direction}_R@1"] == 0.0  # every query has rank N = 5
        assert out[f"{direction}_R@4"] == 0.0
        assert out[f"{direction}_R@5"] == 1.0
    assert retrieval_recall(torch.ones(1, 4), torch.ones(1, 4), ks=(1,))["i2t_R@1"] == 1.0
    ranks = pessimistic_ranks(emb, emb)
    assert ranks.tolist() == [5] * 5


def test_duplicate_reports_tie_and_text_level_recall():
    img = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    txt = img.clone()  # pairs 0 and 1 have identical image and report embeddings
    out = retrieval_recall(img, txt, ks=(1, 2), text_groups=["normal", "normal", "effusion", "nodule"])
    assert out["i2t_R@1"] == pytest.approx(0.5)  # the duplicated pairs rank their partner 2nd
    assert out["i2t_R@2"] == 1.0
    assert out["i2t_R@1_text"] == 1.0 and out["t2i_R@1_text"] == 1.0  # same report retrieved
    # chance: groups of size 2, 2 (members of "normal") and 1, 1: (2 * 2/4 + 2 * 1/4) / 4
    assert out["chance_R@1_text"] == pytest.approx((2 * 0.5 + 2 * 0.25) / 4)


def test_exact_ties_match_integer_reference():
    # +-1 entries in 16 dims: normalisation and dot products are exact in float32, so many exact ties
    gen = torch.Generator().manual_seed(5)
    n = 60
    img = torch.randint(0, 2, (n, 16), generator=gen).float() * 2 - 1
    txt = torch.randint(0, 2, (n, 16), generator=gen).float() * 2 - 1
    txt[10:20] = txt[10]  # duplicated reports
    img[30:35] = img[30]
    groups = torch.tensor([10 if 10 <= i < 20 else i for i in range(n)])
    for q, c in ((img, txt), (txt, img)):
        dots = (q @ c.T).long().numpy()  # exact integers
        ref = [1 + int((dots[i] > dots[i, i]).sum()) + int((dots[i] == dots[i, i]).sum()) - 1 for i in range(n)]
        ref_groups = []
        for i in range(n):
            same = (groups == groups[i]).numpy()
            best = dots[i][same].max()
            ref_groups.append(1 + int(((dots[i] >= best) & ~same).sum()))
        for chunk in (1, 7, 512):
            assert pessimistic_ranks(q, c, chunk_size=chunk).tolist() == ref
            assert pessimistic_ranks(q, c, groups=groups, chunk_size=chunk).tolist() == ref_groups
    assert max(ref) > 10  # the duplicates really tie


def test_chunking_does_not_change_results():
    gen = torch.Generator().manual_seed(7)
    img, txt = torch.randn(53, 12, generator=gen), torch.randn(53, 12, generator=gen)
    groups = [str(i % 6) for i in range(53)]
    full = retrieval_recall(img, txt, ks=(1, 3, 10), text_groups=groups, chunk_size=10_000)
    for chunk in (1, 4, 17, 53):
        assert retrieval_recall(img, txt, ks=(1, 3, 10), text_groups=groups, chunk_size=chunk) == full


def test_subsets_by_modality():
    img = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float32)
    txt = torch.tensor([[1, 0.8, 0, 0], [0, 1, 0.2, 0], [1, 0, 0.5, 0], [0, 0, 0, 1]], dtype=torch.float32)
    modality = ["X-ray", "X-ray", "CT", "CT"]
    out = retrieval_recall_subsets(img, txt, modality, ks=(1,))
    # across modalities, x-ray image 0 prefers CT report 2 and CT report 2 prefers x-ray image 0
    assert out["i2t_R@1"] == pytest.approx(0.75) and out["t2i_R@1"] == pytest.approx(0.75)
    for suffix in ("_xray", "_ct"):
        assert out[f"i2t_R@1{suffix}"] == 1.0 and out[f"t2i_R@1{suffix}"] == 1.0
        assert out[f"chance_R@1{suffix}"] == pytest.approx(0.5)
        assert out[f"num_pairs{suffix}"] == 2
    assert out["chance_R@1"] == pytest.approx(0.25) and out["num_pairs"] == 4


def test_subsets_match_direct_subset_calls():
    gen = torch.Generator().manual_seed(11)
    img = torch.randn(41, 6, generator=gen)
    txt = img + torch.randn(41, 6, generator=gen)
    modality = ["xray" if i % 3 else "ct" for i in range(41)]
    groups = [str(i % 5) for i in range(41)]
    out = retrieval_recall_subsets(img, txt, modality, ks=(1, 5), text_groups=groups)
    assert {k: v for k, v in out.items() if not k.endswith(("_xray", "_ct"))} == retrieval_recall(
        img, txt, ks=(1, 5), text_groups=groups
    )
    for name in ("xray", "ct"):
        idx = [i for i, m in enumerate(modality) if m == name]
        sub = retrieval_recall(img[idx], txt[idx], ks=(1, 5), text_groups=[groups[i] for i in idx])
        for key, value in sub.items():
            assert out[f"{key}_{name}"] == value
    with pytest.raises(ValueError, match="modality has 3 entries"):
        retrieval_recall_subsets(img, txt, ["xray"] * 3)
    with pytest.raises(ValueError, match="same key suffix"):
        retrieval_recall_subsets(img[:2], txt[:2], ["X-ray", "xray"])


def test_retrieval_input_errors():
    a = torch.randn(4, 3)
    with pytest.raises(ValueError, match="image_emb has 4 rows but text_emb has 3"):
        retrieval_recall(a, a[:3])
    with pytest.raises(ValueError, match="dim 3 != text_emb dim 2"):
        retrieval_recall(a, a[:, :2])
    with pytest.raises(ValueError, match="positive integers"):
        retrieval_recall(a, a, ks=(0,))
    with pytest.raises(ValueError, match="text_groups has 2 entries"):
        retrieval_recall(a, a, text_groups=["x", "y"])
    bad = a.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN/inf values \\(first at row 2\\)"):
        retrieval_recall(bad, a)
    with pytest.raises(ValueError, match="chunk_size"):
        retrieval_recall(a, a, chunk_size=0)
    with pytest.raises(ValueError, match="N=0"):
        retrieval_recall(torch.zeros(0, 3), torch.zeros(0, 3))


# ----------------------------------------------------------------------------------------------
# slice hits
# ----------------------------------------------------------------------------------------------


def test_slice_hit_tolerance_boundaries():
    assert slice_hit([5], [6], tolerance=1)
    assert slice_hit([5], [4], tolerance=1)
    assert not slice_hit([5], [7], tolerance=1)
    assert slice_hit([5], [7], tolerance=2)
    assert not slice_hit([5], [6], tolerance=0)
    assert slice_hit([5], [5], tolerance=0)
    assert slice_hit([0, 20], [30, 18], tolerance=2)  # any pair suffices
    assert not slice_hit([], [3])
    assert not slice_hit([3], [])
    with pytest.raises(ValueError, match="tolerance"):
        slice_hit([1], [1], tolerance=-1)
    with pytest.raises(ValueError, match="integer slice indices"):
        slice_hit([1.5], [1])


def test_slice_hit_rate_skips_volumes_without_lesion():
    selected = [[3, 10], [0], [7], [50]]
    lesion = [[11], [5], [], [52]]
    assert slice_hit_rate(selected, lesion, tolerance=1) == pytest.approx(1 / 3)
    assert slice_hit_rate(selected, lesion, tolerance=2) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="none of the 2 volumes has a lesion slice"):
        slice_hit_rate([[1], [2]], [[], []])
    with pytest.raises(ValueError, match="selected_per_volume has 1 volumes but lesion_per_volume has 2"):
        slice_hit_rate([[1]], [[1], [2]])


def test_random_slice_hit_rate_exact_values():
    out = random_slice_hit_rate([[0]], num_slices=10, k=1, tolerance=1)
    assert out["expected"] == pytest.approx(0.2)  # slices 0 and 1 are within tolerance
    out = random_slice_hit_rate([[0], [5], []], num_slices=[10, 10, 4], k=3, tolerance=1)
    m1, m2 = 2, 3
    expected = ((1 - math.comb(10 - m1, 3) / math.comb(10, 3)) + (1 - math.comb(10 - m2, 3) / math.comb(10, 3))) / 2
    assert out["expected"] == pytest.approx(expected)
    assert out["num_volumes"] == 2
    # a volume with fewer than k slices: everything selected, always a hit
    out = random_slice_hit_rate([[1]], num_slices=3, k=5, tolerance=0)
    assert out["expected"] == 1.0 and out["sampled"] == 1.0
    with pytest.raises(ValueError, match=r"lesion_per_volume\[1\] has slice indices 3..12 outside \[0, 10\)"):
        random_slice_hit_rate([[1], [3, 12]], num_slices=10, k=2)
    with pytest.raises(ValueError, match="num_slices has 1 entries"):
        random_slice_hit_rate([[1], [2]], num_slices=[10], k=2)
    with pytest.raises(ValueError, match="none of the 1 volumes"):
        random_slice_hit_rate([[]], num_slices=10, k=2)


def test_random_slice_hit_rate_sampled_agrees_with_expected():
    rng = np.random.default_rng(0)
    num_slices = rng.integers(20, 80, size=200).tolist()
    lesions = []
    for n in num_slices:
        start = int(rng.integers(0, n - 3))
        lesions.append(list(range(start, start + int(rng.integers(1, 4)))))
    out = random_slice_hit_rate(lesions, num_slices, k=3, tolerance=1, seed=1, trials=100)
    assert out["num_volumes"] == 200
    assert abs(out["sampled"] - out["expected"]) < 0.03
    assert abs(out["sampled"] - out["expected"]) < 4 * out["sampled_sem"] + 1e-9
    assert 0.05 < out["expected"] < 0.6
    again = random_slice_hit_rate(lesions, num_slices, k=3, tolerance=1, seed=1, trials=100)
    assert again == out  # fixed seed: reproducible


# ----------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------


def _check_png(path, size):
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == size
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 20) or range(2)) > 1  # not blank
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # temp file moved away


def _embedding_fixture(n=60, d=10):
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(n, d, generator=gen)
    modality = ["xray" if i % 2 else "ct" for i in range(n)]
    finding = [["normal", "pneumonia", "nodule"][i % 3] for i in range(n)]
    return emb, modality, finding


def test_plot_embeddings_pca_png(tmp_path):
    emb, modality, finding = _embedding_fixture()
    out = plot_embeddings(emb, modality, finding, tmp_path / "sub" / "emb.png", method="pca")
    assert out == tmp_path / "sub" / "emb.png"
    _check_png(out, (1300, 550))
    # overwriting an existing file works (atomic replace)
    plot_embeddings(emb.numpy(), modality, finding, out, figsize=(6, 4), dpi=50)
    _check_png(out, (300, 200))
    with pytest.raises(ValueError, match="finding has 2 entries but there are 60 embeddings"):
        plot_embeddings(emb, modality, ["a", "b"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="method must be 'pca' or 'tsne'"):
        plot_embeddings(emb, modality, finding, tmp_path / "x.png", method="umap")


def test_pca_preserves_planar_geometry():
    rng = np.random.default_rng(2)
    plane = rng.normal(size=(30, 2)) * [3.0, 1.0]
    basis, _ = np.linalg.qr(rng.normal(size=(6, 2)))
    emb = plane @ basis.T + 5.0
    coords, used = project_2d(emb, method="pca")
    assert used == "pca" and coords.shape == (30, 2)
    d_in = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    d_out = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.testing.assert_allclose(d_out, d_in, atol=1e-9)
    assert coords[:, 0].var() > coords[:, 1].var()  # first component has the most variance


def test_tsne_falls_back_to_pca_without_sklearn(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes `import sklearn...` raise ImportError
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    emb, modality, finding = _embedding_fixture()
    with caplog.at_level(logging.WARNING, logger="unimedi_monai.evaluation.embedding_plot"):
        coords, used = project_2d(emb, method="tsne")
    assert used == "pca"
    assert "falling back to PCA" in caplog.text
    np.testing.assert_allclose(coords, project_2d(emb, method="pca")[0])
    _check_png(plot_embeddings(emb, modality, finding, tmp_path / "tsne.png", method="tsne"), (1300, 550))


def test_tsne_with_sklearn():
    """scikit-learn is in the test environment (the 'tsne' extra), so this never skips."""
    emb, _, _ = _embedding_fixture(n=40)
    coords, used = project_2d(emb, method="tsne")
    assert used == "tsne" and coords.shape == (40, 2)


def test_plot_embeddings_many_findings_lumped(tmp_path):
    emb, modality, _ = _embedding_fixture(n=50)
    finding = [f"f{i}" for i in range(50)]  # 50 distinct findings, legend capped
    _check_png(plot_embeddings(emb, modality, finding, tmp_path / "many.png", max_legend=5), (1300, 550))


def test_plot_similarity_matrix(tmp_path):
    emb, _, finding = _embedding_fixture(n=30)
    out = plot_similarity_matrix(emb, emb + 0.1, tmp_path / "sim.png", labels=finding)
    _check_png(out, (700, 600))
    out = plot_similarity_matrix(emb, emb[:20], tmp_path / "sim_nolabels.png", max_items=10, dpi=50)
    _check_png(out, (350, 300))
    with pytest.raises(ValueError, match="labels need paired embeddings"):
        plot_similarity_matrix(emb, emb[:20], tmp_path / "x.png", labels=finding)


def test_plot_slice_scores(tmp_path):
    scores = np.sin(np.linspace(0, 3, 40))
    vol = np.random.default_rng(0).random((3, 32, 32))
    out = plot_slice_scores(scores, [5, 20, 21], [19, 20, 21, 30], tmp_path / "slices.png", volume_slices=vol)
    _check_png(out, (1000, 600))
    out = plot_slice_scores(torch.tensor(scores), [5], [], tmp_path / "curve.png")
    _check_png(out, (1000, 350))
    with pytest.raises(ValueError, match=r"lesion slice indices \[40\] are outside \[0, 40\)"):
        plot_slice_scores(scores, [5], [40], tmp_path / "x.png")
    with pytest.raises(ValueError, match="k = len\\(selected\\) = 1"):
        plot_slice_scores(scores, [5], [], tmp_path / "x.png", volume_slices=vol)


# ----------------------------------------------------------------------------------------------
# training curves
# ----------------------------------------------------------------------------------------------


def _write_log(path, records):
    path.write_text("\n".join(json.dumps(r) if isinstance(r, dict) else r for r in records) + "\n")
    return path


def test_read_jsonl_history(tmp_path):
    log = _write_log(
        tmp_path / "log.jsonl",
        [
            {"iteration": 1, "loss": 3.0, "loss_itc": 2.5, "phase": "train", "flag": True},
            "",
            {"iteration": 2, "loss": 2.0, "lr": 1e-4},
            {"iteration": 3.0, "loss": float("nan")},
        ],
    )
    hist = read_jsonl_history(log)
    assert set(hist) == {"loss", "loss_itc", "lr"}  # strings and booleans ignored
    assert hist["loss"][:2] == [(1, 3.0), (2, 2.0)]
    assert hist["loss"][2][0] == 3 and math.isnan(hist["loss"][2][1])
    assert hist["loss_itc"] == [(1, 2.5)]

    bad = _write_log(tmp_path / "bad.jsonl", [{"iteration": 1, "loss": 1.0}, "{not json"])
    with pytest.raises(ValueError, match="bad.jsonl:2: not valid JSON"):
        read_jsonl_history(bad)
    no_it = _write_log(tmp_path / "noit.jsonl", [{"step": 1, "loss": 1.0}])
    with pytest.raises(ValueError, match="noit.jsonl:1: missing or non-integer 'iteration'"):
        read_jsonl_history(no_it)
    arr = _write_log(tmp_path / "arr.jsonl", ["[1, 2]"])
    with pytest.raises(ValueError, match="arr.jsonl:1: expected a JSON object"):
        read_jsonl_history(arr)
    with pytest.raises(FileNotFoundError, match="missing.jsonl does not exist"):
        read_jsonl_history(tmp_path / "missing.jsonl")


def test_plot_training_curves(tmp_path):
    records = [
        {"iteration": i, "loss": 5.0 / (i + 1), "loss_itc": 3.0 / (i + 1), "lr": 1e-4} for i in range(0, 200, 10)
    ]
    log = _write_log(tmp_path / "train.jsonl", records)
    _check_png(plot_training_curves(log, tmp_path / "curves.png"), (1200, 300))  # 3 metrics in one row
    hist = read_jsonl_history(log)
    hist["loss_mlm"] = [(i, 1.0) for i in range(5)]
    _check_png(plot_training_curves(hist, tmp_path / "curves4.png", smoothing_window=3), (1200, 600))
    _check_png(plot_training_curves(hist, tmp_path / "one.png", keys=["loss"]), (400, 300))
    with pytest.raises(ValueError, match=r"metrics \['loss_xyz'\] are not in the history"):
        plot_training_curves(hist, tmp_path / "x.png", keys=["loss_xyz"])
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_training_curves({}, tmp_path / "x.png")


def test_default_panels_group_the_attention_diagnostics(tmp_path):
    keys = ("teacher_attn_entropy_xray", "teacher_attn_entropy_ct", "teacher_attn_cos_ct", "teacher_cls_cos_ct")
    hist = {k: [(1, 0.5), (2, 0.6)] for k in ("loss", *keys)}
    panels = default_panels(hist)
    assert panels == [
        "loss",
        ("teacher_cls_cos_ct",),
        ("teacher_attn_entropy_xray", "teacher_attn_entropy_ct", "teacher_attn_cos_ct"),
    ]
    _check_png(plot_training_curves(hist, tmp_path / "panels.png"), (1200, 300))


def test_moving_average_ignores_non_finite():
    values = np.array([1.0, 3.0, np.nan, 5.0])
    np.testing.assert_allclose(_moving_average(values, 2), [1.0, 2.0, 3.0, 5.0])
    np.testing.assert_array_equal(_moving_average(np.full(7, 1e-4), 3), np.full(7, 1e-4))  # no drift
    assert np.isnan(_moving_average(np.array([np.nan, 1.0]), 1)[0])


# ---------------------------------------------------------------------------------------------- issue 13 metrics


def test_slice_hit_test_matches_brute_force():
    import itertools

    from unimedi_monai.evaluation.slice_hits import random_hit_probabilities, slice_hit_test

    lesions = [[3], [0, 1], [7], []]
    selected = [[3], [5], [6], [2]]
    out = slice_hit_test(selected, lesions, num_slices=8, tolerance=1)
    assert out["num_volumes"] == 3 and out["hit_rate"] == pytest.approx(2 / 3)
    probs = random_hit_probabilities(lesions, 8, 1, 1)
    assert probs == pytest.approx([3 / 8, 3 / 8, 2 / 8])
    # p-value: P(at least 2 hits) over independent volumes, by enumeration
    p = sum(
        np.prod([pi if h else 1 - pi for pi, h in zip(probs, hits)])
        for hits in itertools.product([0, 1], repeat=3)
        if sum(hits) >= 2
    )
    assert out["p_value"] == pytest.approx(p)
    assert out["random_expected"] == pytest.approx(np.mean(probs))


def test_cross_modal_alignment_against_chance():
    from unimedi_monai.evaluation.pretrain_eval import cross_modal_alignment

    g = torch.Generator().manual_seed(0)
    findings = ["nodule", "mass", "effusion"]
    centres = torch.randn(3, 16, generator=g) * 5
    emb, modality, finding = [], [], []
    for m in ("xray", "ct"):
        for i in range(30):
            f = i % 3
            emb.append(centres[f] + 0.1 * torch.randn(16, generator=g))
            modality.append(m)
            finding.append(findings[f])
    emb = torch.stack(emb)
    aligned = cross_modal_alignment(emb, modality, finding, k=5, a="ct", b="xray")
    assert aligned["precision"] == 1.0 and aligned["chance"] == pytest.approx(1 / 3) and aligned["num_queries"] == 30
    shuffled = cross_modal_alignment(torch.randn(60, 16, generator=g), modality, finding, k=5, a="xray", b="ct")
    assert shuffled["precision"] < 0.6


def test_cls_probe_separates_informative_features_only():
    from unimedi_monai.evaluation.pretrain_eval import cls_probe_accuracy

    g = torch.Generator().manual_seed(0)
    labels = [("a", "b", "c")[i % 3] for i in range(60)]
    y = torch.tensor([i % 3 for i in range(60)])
    informative = torch.nn.functional.one_hot(y, 3).float() * 3 + 0.3 * torch.randn(60, 3, generator=g)
    noise = torch.randn(60, 3, generator=g)
    assert cls_probe_accuracy(informative, labels) > 0.9
    assert cls_probe_accuracy(noise, labels) < 0.6


def test_cls_probe_runs_under_no_grad():
    """evaluate_pretraining runs under torch.no_grad(); the probe must still train."""
    from unimedi_monai.evaluation.pretrain_eval import cls_probe_accuracy

    y = torch.tensor([i % 2 for i in range(20)])
    feats = torch.nn.functional.one_hot(y, 2).float() * 2 + 0.1 * torch.randn(
        20, 2, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        assert cls_probe_accuracy(feats, [("a", "b")[int(v)] for v in y], folds=4) > 0.9


def test_position_prior_is_the_best_fixed_selection():
    from itertools import combinations

    from unimedi_monai.evaluation.slice_hits import position_prior_hit_rate

    rng = np.random.default_rng(3)
    lesions = [sorted(rng.choice(32, size=int(rng.integers(1, 4)), replace=False).tolist()) for _ in range(40)]
    lesions[5] = []  # skipped, as in slice_hit_rate
    for k in (1, 2):
        reference = max(
            slice_hit_rate([list(c)] * len(lesions), lesions, tolerance=1) for c in combinations(range(32), k)
        )
        prior = position_prior_hit_rate(lesions, 32, k=k, tolerance=1)
        assert prior["exact"] and prior["num_volumes"] == 39 and prior["num_positions"] == 32
        assert prior["hit_rate"] == pytest.approx(reference)
        assert slice_hit_rate([prior["positions"]] * len(lesions), lesions, tolerance=1) == pytest.approx(reference)
    greedy = position_prior_hit_rate(lesions, 32, k=3, tolerance=1, max_combinations=1)
    assert not greedy["exact"] and len(greedy["positions"]) == 3
    assert greedy["hit_rate"] <= position_prior_hit_rate(lesions, 32, k=3, tolerance=1)["hit_rate"]
    # lesions at one depth: a fixed slice hits them all, although random selection rarely does
    same_depth = position_prior_hit_rate([[20]] * 10, 32, k=1, tolerance=1)
    assert same_depth["hit_rate"] == 1.0 and 19 <= same_depth["positions"][0] <= 21


def test_position_prior_maps_positions_onto_volumes_of_other_depths():
    from unimedi_monai.evaluation.slice_hits import position_prior_hit_rate

    # candidate i of 64 selects slice i // 2 of a 32-slice volume: slice 40 and slice 20 are the same position
    prior = position_prior_hit_rate([[40], [20]], [64, 32], k=1, tolerance=0)
    assert prior["hit_rate"] == 1.0 and prior["positions"] in ([40], [41])
    with pytest.raises(ValueError, match="no volume has a lesion"):
        position_prior_hit_rate([[], []], 32)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        position_prior_hit_rate([[1]], 32, k=0)
