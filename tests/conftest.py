"""Shared test set-up: no network, deterministic seeds, and shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def text_encoder():
    """The offline MiniLM-L6 report encoder (top layer trainable), loaded once per session."""
    from unimedi_monai.networks import ReportEncoder

    return ReportEncoder(trainable_layers=1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` or a skip saying it is absent."""
    if not (SHARED_DATA / "totalsegmentator").is_dir():
        pytest.skip(f"real CT data not found at {SHARED_DATA}/totalsegmentator (clone with ../shared beside the repo)")
    return SHARED_DATA
