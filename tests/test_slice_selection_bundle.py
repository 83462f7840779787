"""The slice-selection bundle end to end, after the short demo pre-training (``pretrained_bundle``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_bundle
from PIL import Image

from unimedi_monai.evaluation.slice_hits import random_hit_probability

# the demo arguments of the session's short pre-training (conftest.PRETRAIN_SHORT): its data is reused
PRETRAIN_DEMO = "{'n_xray': 64, 'n_ct': 32, 'seed': 1}"


@pytest.mark.slow
def test_inference_writes_scores_in_file_numbering_and_png(pretrained_bundle, tmp_path):
    datalist = json.loads((pretrained_bundle / "demo_data" / "datalist.json").read_text())
    item = next(i for i in datalist["validation"] if i["modality"] == "ct")
    image = pretrained_bundle / "demo_data" / item["image"]
    args = [
        "--model_path",
        str(pretrained_bundle / "models" / "model.pt"),
        "--backbone",
        "demo",
        "--datalist",
        str(image),
    ]
    run_bundle("slice_selection", ["inference.yaml"], tmp_path, args)
    stem = image.name[: -len(".nii.gz")]
    result = json.loads((tmp_path / "eval" / f"{stem}_slices.json").read_text())
    assert result["num_slices"] == item["num_slices"] == len(result["scores"]) == 48
    assert result["grid_size"] == 32 and len(result["grid_scores"]) == 32
    assert result["k"] == 4 and len(result["top_k"]) == 4 and result["mode"] == "attention"
    ranked = sorted(range(48), key=lambda s: -result["scores"][s])[:4]
    assert sorted(ranked) == result["top_k"]
    png = Image.open(tmp_path / "eval" / f"{stem}_slices.png")
    assert png.format == "PNG" and png.size[0] >= 600


@pytest.mark.slow
def test_demo_evaluation_after_short_pretraining(pretrained_bundle, tmp_path):
    """evaluate.yaml on the demo CTs: every lesion CT scored in a 32-slice window, counts and baseline consistent.

    A 54-step pre-training does not localise lesions yet (measured: 27% against 20% expected by
    chance, p = 0.25, on its 26 lesion CTs), so this run checks the protocol, not a margin; see
    ``test_demo_evaluation_beats_random`` for a longer pre-training.
    """
    args = [
        "--model_path",
        str(pretrained_bundle / "models" / "model.pt"),
        "--backbone",
        "demo",
        "--demo_dir",
        str(pretrained_bundle / "demo_data"),
        "--demo",
        PRETRAIN_DEMO,
        "--mode",
        "text",
        "--num_plots",
        "1",
    ]
    run_bundle("slice_selection", ["inference.yaml", "evaluate.yaml"], tmp_path, args)
    datalist = json.loads((pretrained_bundle / "demo_data" / "datalist.json").read_text())
    lesion_cts = [i for i in datalist["validation"] if i["modality"] == "ct" and i["lesion_centre_voxel"]]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    cases = json.loads((tmp_path / "eval" / "cases.json").read_text())["cases"]
    assert metrics["dataset"] == "demo" and metrics["mode"] == "text" and metrics["query"] == "per-case report"
    assert metrics["num_cases"] == len(cases) == len(lesion_cts) >= 3
    assert [c["centres"] for c in cases] == [[i["lesion_centre_voxel"][2]] for i in lesion_cts]
    for case in cases:
        start, stop = case["window"]
        assert stop - start == 32 and start <= case["centres"][0] < stop
        assert case["k"] == 6 and all(start <= s < stop for s in case["selected"])  # top 20% of 32
        hit = any(abs(s - c) <= 3 for s in case["selected"] for c in case["centres"])
        assert case["hit"] == hit
        assert case["random_hit_probability"] == pytest.approx(random_hit_probability(case["centres"], 32, 6, 3, start))
    assert metrics["hits"] == sum(c["hit"] for c in cases)
    assert metrics["accuracy"] == pytest.approx(metrics["hits"] / len(cases))
    assert metrics["accuracy_random"] == pytest.approx(sum(c["random_hit"] for c in cases) / len(cases))
    assert 0.0 < metrics["p_value_vs_random"] <= 1.0
    assert 0.0 < metrics["accuracy_position_prior"] <= 1.0 and len(metrics["position_prior_fraction"]) == 6
    assert len(list((tmp_path / "eval" / "slices").glob("*.png"))) == 1


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("UNIMEDI_SLICE_EVAL_CKPT"),
    reason="set UNIMEDI_SLICE_EVAL_CKPT to a demo pre-training of 400+ steps (its demo_data beside it) to run",
)
def test_demo_evaluation_beats_random(tmp_path):
    """Report-guided selection of the single best slice hits the lesion centre (within 3 slices) above chance.

    Needs a longer demo pre-training than the session fixture: ``UNIMEDI_SLICE_EVAL_CKPT`` names its
    ``model.pt``, with the default demo data in ``demo_data/`` beside it (e.g. the pre-training
    bundle run with its defaults: 18 epochs, 432 steps).
    """
    ckpt = Path(os.environ["UNIMEDI_SLICE_EVAL_CKPT"])
    demo_dir = ckpt.parent / "demo_data"
    if not demo_dir.is_dir():
        demo_dir = ckpt.parent.parent / "demo_data"
    args = [
        "--model_path",
        str(ckpt),
        "--backbone",
        "demo",
        "--demo_dir",
        str(demo_dir),
        "--demo_sections",
        "['training','validation']",
        "--mode",
        "text",
        "--top_k",
        "1",
        "--num_plots",
        "0",
    ]
    run_bundle("slice_selection", ["inference.yaml", "evaluate.yaml"], tmp_path, args, timeout=1800)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["num_cases"] >= 80
    assert metrics["accuracy"] > metrics["accuracy_random_expected"] + 0.1
    # significance at 1% (the level the slice-hit targets use); a fresh clone of this environment gave
    # p = 1.01e-3 with the config's defaults (and 3.2e-7 for the demo's whole-volume check)
    assert metrics["p_value_vs_random"] < 1e-2
