"""Real check: the 2D segmentation bundle fine-tunes on real chest X-rays with lung masks
(``../shared/data/covid_cxr_notes/masks``, 129 images) and segments the held-out patients' lungs.

Small and short (tiny backbone, 96 px, 8 epochs, random encoder) to stay within about a minute of
CPU; ``benchmarks/bench_rsna_seg_lungs.py`` runs the full pre-trained vs random comparison whose
figures are in the bundle's docs/README.md.
"""

from __future__ import annotations

import json
import sys

import pytest
from conftest import REPO_ROOT, SHARED_DATA, run_bundle

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import bench_rsna_seg_lungs as lungs  # noqa: E402

pytestmark = pytest.mark.slow

LUNGS = SHARED_DATA / "covid_cxr_notes"


@pytest.fixture(scope="module")
def lung_datalist(tmp_path_factory):
    if not (LUNGS / "masks").is_dir():
        pytest.skip(
            f"real lung masks not found at {LUNGS}/masks (clone with ../shared beside the repo, or set "
            "UNIMEDI_SHARED_DATA)"
        )
    items = lungs.lung_items(LUNGS)
    assert len(items) == 129
    return lungs.write_datalist(items, tmp_path_factory.mktemp("lungs"), test_fraction=0.3, val_fraction=0.15, seed=0)


def test_patient_split_of_the_lung_masks(lung_datalist):
    data = json.loads(lung_datalist.read_text())
    patients = {s: {i["patient_id"] for i in data[s]} for s in ("training", "validation", "test")}
    assert sum(len(data[s]) for s in patients) == 129
    assert not (patients["training"] & patients["test"]) and not (patients["validation"] & patients["test"])


def test_fine_tuned_on_real_lungs_beats_the_trivial_mask(lung_datalist, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    args = [
        "--dataset",
        "datalist",
        "--dataset_dir",
        str(lung_datalist.parent),
        "--class_names",
        "['lung']",
        "--backbone",
        "tiny",
        "--image_size",
        "96",
        "--decoder_channels",
        "16",
        "--max_epochs",
        "8",
        "--val_interval",
        "1",
        "--batch_size",
        "8",
        "--num_workers",
        "0",
    ]
    run_bundle("rsna_segmentation", ["train.yaml"], tmp_path, args + ["--init", "random"])
    run_bundle("rsna_segmentation", ["train.yaml", "evaluate.yaml"], tmp_path, args)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    trivial = lungs.trivial_foreground_dice(lung_datalist, 96)
    assert metrics["num_images"] == len(json.loads(lung_datalist.read_text())["test"])
    assert metrics["dice"] > 0.75 and metrics["dice"] > trivial + 0.25, (metrics, trivial)
