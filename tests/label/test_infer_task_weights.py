"""The MONAI Label infer task loads a bundle's models/model.pt with the project's one loader (strict, one-line errors).

Runs in the MONAI Label environment (``.venv-label``); skipped where ``monailabel`` is not installed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("monailabel")

from unimedi_monai.io.checkpoint import CheckpointMismatchError  # noqa: E402
from unimedi_monai.label.infer_tasks import UniMedIBundleInferTask  # noqa: E402

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "bcv_segmentation"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    copy = tmp_path / "bcv_segmentation"
    shutil.copytree(BUNDLE / "configs", copy / "configs")
    (copy / "models").mkdir()
    return copy


def _task(bundle: Path) -> UniMedIBundleInferTask:
    return UniMedIBundleInferTask(str(bundle), {}, overrides={"backbone": "tiny", "feature_size": 4})


def test_model_pt_loads_strictly_into_the_served_network(bundle):
    from unimedi_monai.networks.unetr_decoder import UniMedIUNETR

    trained = UniMedIUNETR(14, backbone="tiny", feature_size=4)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.01)
    torch.save(trained.state_dict(), bundle / "models" / "model.pt")
    network = _task(bundle)._get_network("cpu", {})
    assert not network.training and network.load_report["missing"] == [] and network.load_report["unexpected"] == []
    for k, v in trained.state_dict().items():
        assert torch.equal(network.state_dict()[k], v), k


def test_a_model_pt_that_does_not_fit_is_refused(bundle):
    from unimedi_monai.networks.unetr_decoder import UniMedIUNETR

    state = UniMedIUNETR(14, backbone="tiny", feature_size=4).state_dict()
    state["extra.weight"] = torch.zeros(2)
    torch.save(state, bundle / "models" / "model.pt")
    with pytest.raises(
        CheckpointMismatchError, match=r"model\.pt' does not fit the network: 1 unexpected key \[extra.weight\]"
    ):
        _task(bundle)._get_network("cpu", {})
