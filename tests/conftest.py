"""Shared test set-up: no network, deterministic seeds, and shared fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(
    os.environ.get("UNIMEDI_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")
)  # ../shared/data beside the clone


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: on a shared, loaded CPU, thread oversubscription makes small
    convolutions and training steps many times slower (use with ``pytest.mark.usefixtures``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def bundle_env() -> dict:
    """Environment for bundle subprocesses: offline, UTF-8, CI mode (no progress-bar redraws)."""
    return dict(
        os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", CI="1", PYTHONUTF8="1"
    )


def module_command(
    module: str, *args: str | os.PathLike, launcher: Sequence[str | os.PathLike] = (sys.executable,)
) -> list[str]:
    """``python -m <module> <args>`` as an argument list (``launcher``: the interpreter, or e.g. ``torchrun``)."""
    return [*map(str, launcher), "-m", module, *map(str, args)]


def run_module(
    module: str,
    *args: str | os.PathLike,
    cwd: str | os.PathLike = REPO_ROOT,
    env: dict | None = None,
    timeout: int = 600,
    launcher: Sequence[str | os.PathLike] = (sys.executable,),
) -> subprocess.CompletedProcess:
    """Run :func:`module_command` in a subprocess, its output captured as text (undecodable bytes replaced).

    ``env`` defaults to :func:`bundle_env` (offline, UTF-8, CI mode); the exit status is left to the caller.
    """
    return subprocess.run(
        module_command(module, *args, launcher=launcher),
        cwd=cwd,
        env=bundle_env() if env is None else env,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
    )


def bundle_command(
    bundle: str,
    configs: list[str],
    bundle_root: Path,
    args: list[str] | None = None,
    launcher: Sequence[str | os.PathLike] = (sys.executable,),
) -> list[str]:
    """The ``python -m monai.bundle run`` command of :func:`run_bundle` (e.g. to start it with ``Popen``)."""
    config_dir = REPO_ROOT / "bundles" / bundle / "configs"
    paths = [c if os.path.isabs(c) else str(config_dir / c) for c in configs]
    config_files = "[" + ",".join(f"'{c}'" for c in paths) + "]"
    return module_command(
        "monai.bundle",
        "run",
        "--config_file",
        config_files,
        "--meta_file",
        config_dir / "metadata.json",
        "--logging_file",
        config_dir / "logging.conf",
        "--bundle_root",
        bundle_root,
        *(args or []),
        launcher=launcher,
    )


def run_bundle(
    bundle: str,
    configs: list[str],
    bundle_root: Path,
    args: list[str] | None = None,
    launcher: list[str] | None = None,
    timeout: int = 600,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run`` for ``bundles/<bundle>`` with outputs under ``bundle_root``.

    ``configs`` are file names in the bundle's ``configs/`` folder or absolute paths (extra YAML files
    a test writes). With ``check`` a non-zero exit raises with the tail of both streams.
    """
    cmd = bundle_command(bundle, configs, bundle_root, args, launcher or [sys.executable])
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, env=bundle_env(), capture_output=True, encoding="utf-8", errors="replace", timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"bundle run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


#: the pre-processing pipelines of the segmentation bundles (BCV, AMOS, RSNA): mode -> (config file, config id)
SEGMENTATION_PIPELINES = {
    "train": ("train.yaml", "train#transforms"),
    "validate": ("train.yaml", "validate#transforms"),
    "infer": ("inference.yaml", "preprocessing"),
}


def segmentation_pipeline(mode: str, bundle: str = "bcv_segmentation", **overrides):
    """The pre-processing of a segmentation bundle, built from its YAML (the one definition).

    Args:
        mode: ``train`` / ``validate`` (train.yaml) or ``infer`` (inference.yaml).
        bundle: the bundle folder under ``bundles/``.
        overrides: config keys set first, e.g. ``roi_size=[16, 16, 8]``, ``num_classes=None`` (no label check).
    """
    from unimedi_monai.bundle import bundle_item

    config, item = SEGMENTATION_PIPELINES[mode]
    return bundle_item(REPO_ROOT / "bundles" / bundle / "configs" / config, item, overrides)


def classification_pipeline(**overrides):
    """The covidx_classification bundle's evaluation pre-processing (train.yaml's ``linear_probe#transforms``:
    the X-ray pipeline, then the label as a tensor), built from its YAML; ``overrides`` e.g. ``image_size=32``."""
    from unimedi_monai.bundle import bundle_item

    config = REPO_ROOT / "bundles" / "covidx_classification" / "configs" / "train.yaml"
    return bundle_item(config, "linear_probe#transforms", overrides)


PRETRAIN_CONFIGS = REPO_ROOT / "bundles" / "pretrain" / "configs"


def pretrain_pipeline(modality: str, train: bool = False, **overrides):
    """The pre-training bundle's X-ray or CT pipeline, built from its YAML (the one definition).

    Args:
        modality: ``xray`` or ``ct``.
        train: train.yaml's ``train#<modality>_transforms`` (``<modality>_preprocessing``, then
            ``<modality>_augmentation``); False: evaluate.yaml's ``validate#<modality>_transforms`` (the
            pre-processing alone).
        overrides: config keys set first, e.g. ``image_size=32``, ``ct_size=[16, 16, 8]``, ``hu_window=[0.0, 119.0]``.
    """
    from unimedi_monai.bundle import bundle_item

    if train:
        return bundle_item(PRETRAIN_CONFIGS / "train.yaml", f"train#{modality}_transforms", overrides)
    configs = [PRETRAIN_CONFIGS / "train.yaml", PRETRAIN_CONFIGS / "evaluate.yaml"]
    return bundle_item(configs, f"validate#{modality}_transforms", overrides)


def slice_selection_pipeline(**overrides):
    """The slice_selection bundle's CT pre-processing (inference.yaml's ``preprocessing``: read at full
    resolution, then ``Orientationd`` + ``Resized``), built from its YAML; ``overrides`` e.g.
    ``ct_size=[16, 16, 8]``."""
    from unimedi_monai.bundle import bundle_item

    config = REPO_ROOT / "bundles" / "slice_selection" / "configs" / "inference.yaml"
    return bundle_item(config, "preprocessing", overrides)


PRETRAIN_SHORT = [
    "--demo",
    "{'n_xray': 64, 'n_ct': 32, 'seed': 1}",
    "--max_epochs",
    "6",
    "--batch_size",
    "12",
    "--num_workers",
    "0",
    "--checkpoint_interval",
    "10",
    # the self-distillation options under test (the demo default keeps the single-view, one-centre
    # objective, which learns the image-report alignment on the full demo run; see the pretrain docs)
    "--student_view",
    "photometric",
    "--center_per_group",
    "$True",
    "--head_batch_norm",
    "$True",
    "--attention_layers",
    "all",
    "--teacher_momentum_end",
    "0.996",
]
#: evaluate.yaml's held-out demo set, small for tests (the bundle default holds 128 X-rays and 128 CTs)
PRETRAIN_EVAL_SHORT = ["--eval_demo", "{'n_xray': 20, 'n_ct': 20, 'seed': 1000, 'val_fraction': 0.0}"]


@pytest.fixture(scope="session")
def pretrained_bundle(tmp_path_factory) -> Path:
    """A short demo pre-training run of ``bundles/pretrain`` (once per session), then its evaluation.

    Returns the bundle root: ``models/model.pt``, ``logs/``, ``eval/metrics.json``, ``demo_data/``.
    Downstream bundle tests start from ``models/model.pt``.
    """
    root = tmp_path_factory.mktemp("pretrain")
    run_bundle("pretrain", ["train.yaml"], root, PRETRAIN_SHORT)
    run_bundle("pretrain", ["train.yaml", "evaluate.yaml"], root, PRETRAIN_SHORT + PRETRAIN_EVAL_SHORT)
    return root


@pytest.fixture(scope="session")
def bundle_runner() -> Callable[..., subprocess.CompletedProcess]:
    """:func:`run_bundle` for tests (``bundle_runner("pretrain", ["train.yaml"], root, args)``)."""
    return run_bundle


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail a run that skipped more tests than ``UNIMEDI_MAX_SKIPPED`` allows.

    ``scripts/run_tests.sh`` sets it, for the whole suite, to the number the README states, so a
    test that starts skipping (a missing package, a data folder not found) turns CI red instead of
    passing unnoticed.
    """
    limit = os.environ.get("UNIMEDI_MAX_SKIPPED")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not limit or reporter is None or exitstatus not in (0, 1):
        return
    skipped = len(reporter.stats.get("skipped", []))
    if skipped > int(limit):
        reporter.write_line(
            f"error: {skipped} tests skipped, more than the {limit} the README states (see the 'SKIPPED' lines above); "
            "make them run, or update the README with the reason.",
            red=True,
        )
        session.exitstatus = 1
