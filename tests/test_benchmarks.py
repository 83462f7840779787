"""The benchmark scripts' measuring pieces: FLOP counting rules, GEMM baseline, a tiny pre-training step run,
the synthetic CT and the cached-epoch measurement (the benchmarks themselves run on demand, not here)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_ablation as ablation_bench  # noqa: E402
import bench_ct_path as ct_path_bench  # noqa: E402
import bench_ct_preprocessing as ct_bench  # noqa: E402
import bench_pretrain_step as step_bench  # noqa: E402
import bench_real_data as real_bench  # noqa: E402


def test_flop_counter_counts_forward_and_backward_matmuls():
    lin = torch.nn.Linear(64, 32)
    x = torch.randn(16, 64, requires_grad=True)

    def step() -> float:
        lin(x).sum().backward()
        return 0.0

    total, per_op = step_bench.count_step_flops(step)
    # forward x @ W^T, backward grad_x = g @ W and grad_W = g^T @ x: 3 products of 16*64*32 multiply-adds
    assert total == 3 * 2 * 16 * 64 * 32
    assert sum(per_op.values()) == total and set(per_op) <= {"addmm", "mm"}


def test_gemm_baseline_flops():
    run, flops = step_bench.gemm_fn(torch.device("cpu"), torch.float32, n=64, calls=2)
    run()
    assert flops == 2 * 2 * 64**3


def test_pretrain_step_benchmark_tiny(tmp_path, capsys):
    out = tmp_path / "step.json"
    code = step_bench.main(
        [
            "--presets",
            "tiny",
            "--xray",
            "2",
            "--ct",
            "1",
            "--warmup",
            "1",
            "--repeats",
            "2",
            "--gemm-size",
            "256",
            "--ct-size",
            "32",
            "32",
            "16",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["preset"] == "tiny" and len(row["step_ms_all"]) == 2
    assert math.isclose(row["samples_per_s"], 3 / (row["step_ms"] / 1000.0))
    assert math.isclose(row["fraction_of_gemm"], row["achieved_gflops"] / row["gemm_gflops"])
    assert (
        row["gflop_per_step"] > 0 and row["fraction_of_gemm"] > 0.0
    )  # no upper bound: both rates are timings (noisy on a loaded CPU)
    assert set(row["phase_ms"]) == {"data", "forward", "backward", "optimizer", "ema"}
    assert sum(row["phase_ms"].values()) <= row["step_ms"] * 1.5
    assert all(math.isfinite(v) for v in row["losses"])
    printed = capsys.readouterr().out
    assert "fraction of GEMM" in printed and "| tiny |" in printed


def test_synthetic_ct_and_worker_baseline(tmp_path):
    vol = ct_bench.synthetic_ct((64, 48, 10))
    assert vol.dtype == np.int16 and vol.shape == (64, 48, 10)
    assert vol.min() <= -970 and vol.max() >= 670  # air and bone present
    path = tmp_path / "ct.nii.gz"
    ct_bench.write_volume(path, (64, 48, 10), (0.7, 0.7, 1.0))
    img = nib.load(str(path))
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S") and img.shape == (64, 48, 10)
    result = ct_bench.run_worker("sitk", path)
    assert result["shape"] == [32, 128, 128] and result["seconds"] > 0 and result["peak_mb"] > 0


def test_cached_epochs_are_faster(tmp_path):
    path = tmp_path / "ct.nii.gz"
    ct_bench.write_volume(path, (96, 96, 40), (0.7, 0.7, 1.0))
    rows = ct_bench.bench_cache(path, n=2, epochs=3, workdir=tmp_path)
    assert [r["cache"] for r in rows] == ["memory", "disk"]
    for r in rows:
        assert len(r["epochs_s"]) == 3 and r["speedup"] > 1.0
    assert any((tmp_path / "cache_disk" / "ct").iterdir())  # PersistentDataset wrote its cache


def test_flop_counter_counts_cpu_attention():
    q = torch.randn(2, 3, 10, 8, requires_grad=True)

    def step() -> float:
        torch.nn.functional.scaled_dot_product_attention(q, q, q).sum().backward()
        return 0.0

    total, _ = step_bench.count_step_flops(step)
    # forward 2 products (q k^T, p v): 4 B H L^2 D; backward 5 (scores recomputed, dV, dP, dQ, dK): 10 B H L^2 D
    assert total == 14 * 2 * 3 * 10 * 10 * 8


def test_ablation_table_shows_mean_baseline_and_range_over_seeds():
    runs = {
        "a": [{"i2t_R@1_xray": 0.01, "chance_R@1_xray": 0.008}, {"i2t_R@1_xray": 0.03, "chance_R@1_xray": 0.008}],
        "d": [{"i2t_R@1_xray": 0.05, "chance_R@1_xray": 0.008}],
    }
    lines = ablation_bench.table(runs).splitlines()
    assert lines[0].startswith("| row | X-ray i2t R@1 |") and len(lines) == 4
    assert "| a: VL contrastive only | 0.020 (0.008) [0.010-0.030] |" in lines[2]
    assert "| d: + attentive slice selection (UniMedI) | 0.050 (0.008) |" in lines[3]  # one seed: no range
    assert lines[2].count("n/a") == len(ablation_bench.COLUMNS) - 1


def test_ablation_table_of_the_training_pairs_reads_the_prefixed_keys():
    runs = {"a": [{"i2t_R@1_xray": 0.01, "train_i2t_R@1_xray": 0.5, "train_chance_R@1_xray": 0.008}]}
    lines = ablation_bench.table(runs, prefix="train_").splitlines()
    assert "| a: VL contrastive only | 0.500 (0.008) |" in lines[2]
    assert "report-guided" not in lines[0]  # the slice-selection bundle runs on the held-out CTs only
    assert lines[0].count("|") == len(ablation_bench.COLUMNS) - 2 + 2


def test_pixel_baselines_find_a_signal_the_pixels_carry(tmp_path):
    """Positive control of the real-data benchmark's pixel baselines: where the brightness of an X-ray's
    left or right half decides its note and its class, the ridge map retrieves far above chance and the
    pixel probe separates the classes, so a chance-level result on the real data is not a broken baseline."""
    from PIL import Image

    rng = np.random.default_rng(0)
    notes = ["opacity in the left lung", "opacity in the right lung", "clear lungs, no opacity"]

    def xray(kind: int) -> Image.Image:
        a = rng.uniform(0, 60, (64, 64))
        if kind < 2:
            a[:, :32] += 150 if kind == 0 else 0
            a[:, 32:] += 150 if kind == 1 else 0
        return Image.fromarray(a.clip(0, 255).astype(np.uint8))

    (tmp_path / "images").mkdir()
    datalist = {"training": [], "validation": []}
    for section, n in (("training", 60), ("validation", 30)):
        for i in range(n):
            name = f"images/{section}_{i}.png"
            xray(i % 3).save(tmp_path / name)
            report = f"{notes[i % 3]}, case {i}"  # distinct notes: tied ones would all rank last
            datalist[section].append({"image": name, "report": report, "modality": "xray"})
    (tmp_path / "datalist.json").write_text(json.dumps(datalist))
    classes = ["COVID-19", "pneumonia", "normal"]  # bright left, bright right, clear
    for split, n in (("train", 60), ("test", 30)):
        (tmp_path / "covidx" / split).mkdir(parents=True)
        lines = []
        for i in range(n):
            xray(i % 3).save(tmp_path / "covidx" / split / f"{split}_{i}.png")
            lines.append(f"{split}{i} {split}_{i}.png {classes[i % 3]} synthetic")
        (tmp_path / "covidx" / f"{split}.txt").write_text("\n".join(lines) + "\n")

    out = real_bench.pixel_baselines(tmp_path)
    chance = 5 / 30
    # three kinds of note, 10 of 30 pairs each: a map that knows the kind ranks the right group of 10 first,
    # so R@5 lies near 5/10 against the random 1/6
    assert out["ridge_i2t_R@5"] > 2 * chance and out["ridge_t2i_R@5"] > 2 * chance
    assert out["pixel_probe_auc"] > 0.95


def test_pairwise_correlation_reference_values():
    """Copies of one image correlate at 1, independent noise images near 0, an image and its negative at -1."""
    base = torch.rand(1, 256)
    assert real_bench.pairwise_correlation(base.repeat(5, 1) + 0.5) == pytest.approx(1.0)
    assert abs(real_bench.pairwise_correlation(torch.rand(200, 256))) < 0.01
    assert real_bench.pairwise_correlation(torch.cat([base, -base])) == pytest.approx(-1.0)


def test_demo_xray_variation_template_against_patient(tmp_path):
    """``xray_variation="template"`` X-rays are nearly copies of one chest (16x16 correlation above 0.95);
    ``"patient"`` ones differ about as much as two real radiographs do (0.59 on ``covid_cxr_notes``, printed
    by ``bench_real_data.py``)."""
    from unimedi_monai.data.demo import generate_demo_dataset

    corr = {}
    for variation in ("template", "patient"):
        demo = generate_demo_dataset(
            tmp_path / variation, n_xray=24, n_ct=0, progress=False, xray_variation=variation
        ).parent
        corr[variation] = real_bench.pairwise_correlation(
            real_bench._pixels(sorted(str(p) for p in (demo / "xray").glob("*.png")))
        )
    assert corr["template"] > 0.95
    assert 0.4 < corr["patient"] < 0.85


def test_ct_path_probe_fits_its_training_volumes_and_reports_attention():
    """bench_ct_path's trainer wires the optimiser to the variant's modules: from random init the max-pooled
    stem fits 32 small volumes (loss from ln 2 to near 0, every one right in eval mode), and the backbone
    variant reports its [CLS] attention entropy against log N."""
    from types import SimpleNamespace

    from unimedi_monai.networks.vision_encoder import UnifiedVisionEncoder

    torch.manual_seed(0)
    encoder = UnifiedVisionEncoder("tiny", xray_size=32, ct_size=(32, 32, 8), patch_size_3d=(8, 8, 4))
    net = SimpleNamespace(encoder=encoder)
    x = 0.05 * torch.randn(48, 1, 32, 32, 8)
    y = torch.arange(48) % 2
    for i in range(48):  # class 1: a 3x3x2 bright cube at a random place
        if y[i]:
            a, b = torch.randint(0, 29, (2,)).tolist()
            c = int(torch.randint(0, 7, (1,)))
            x[i, 0, a : a + 3, b : b + 3, c : c + 2] = 1.0
    data = (x[:32], y[:32], x[32:], y[32:])
    initial = {k: v.clone() for k, v in encoder.state_dict().items()}
    stem = ct_path_bench.train_variant(net, "stem-max", data, steps=60, batch=8, lr=5e-4, seed=0)
    assert stem["train_acc"] == 1.0 and stem["last_loss"] < 0.2 * math.log(2)
    assert 0.0 <= stem["test_acc"] <= 1.0 and math.isnan(stem["attention_entropy"])
    encoder.load_state_dict(initial)
    vit = ct_path_bench.train_variant(net, "vit-cls", data, steps=2, batch=8, lr=5e-4, seed=0)
    assert 0.0 < vit["attention_entropy"] <= 1.0 + 1e-6 and 0.0 <= vit["train_acc"] <= 1.0
    # the backbone's pooled outputs: the tiny preset pools its [CLS] alone, so vit-pooled is vit-cls
    encoder.eval()
    with torch.no_grad():
        pooled = {v: ct_path_bench._features(net, v, x[:4])[0] for v in ("vit-cls", "vit-pooled", "vit-max")}
    torch.testing.assert_close(pooled["vit-pooled"], pooled["vit-cls"])
    assert pooled["vit-max"].shape == pooled["vit-cls"].shape
    assert ct_path_bench._parse_override("position_scale=0.028") == ("position_scale", 0.028)
    assert ct_path_bench._parse_override("slice_top_k=2") == ("slice_top_k", 2)
