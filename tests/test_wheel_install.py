"""The package works once installed as a wheel, outside the checkout, the model-zoo way.

A wheel is built from the source tree and installed into a new virtual environment whose
dependencies are the locked set (the tested environment's site-packages, shared read-only through
a ``.pth`` file, so the test needs no network). From a folder outside the repository, that
environment packs the pre-training bundle with ``unimedi_monai.packaging pack``, unpacks the zip,
checks it with ``monai.bundle verify_metadata`` against the schema shipped in the wheel, trains it
for one short epoch on the demo data and runs its ``inference.yaml`` on that model.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import REPO_ROOT, bundle_env

LOCK = REPO_ROOT / "constraints" / "lock.txt"
pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd, cwd=cwd, env=env or bundle_env(), capture_output=True, encoding="utf-8", errors="replace", timeout=timeout
    )
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The python of a new venv with the project installed from its wheel (no checkout on its path)."""
    work = tmp_path_factory.mktemp("wheel")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(work / "dist"),
            str(REPO_ROOT),
        ],
        work,
    )
    wheels = list((work / "dist").glob("unimedi_monai-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as zf:
        assert "unimedi_monai/packaging/meta_schema.json" in zf.namelist()  # package data travels

    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    # the locked dependencies: this (tested) environment's site-packages, after the new venv's own
    locked_site = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "locked_dependencies.pth").write_text("\n".join(sorted(locked_site)) + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheels[0]),
        ],
        work,
    )
    return python


def test_installed_package_is_the_wheel_and_matches_the_lock(installed, tmp_path):
    where = _run([str(installed), "-c", "import unimedi_monai; print(unimedi_monai.__file__)"], tmp_path).stdout.strip()
    assert Path(where).is_relative_to(installed.parent.parent), where  # not the checkout
    assert not Path(where).is_relative_to(REPO_ROOT)
    proc = _run([str(installed), "-m", "unimedi_monai.packaging", "check_env", "--lock", str(LOCK)], tmp_path)
    assert "environment matches" in proc.stdout
    schema = _run([str(installed), "-m", "unimedi_monai.packaging", "schema"], tmp_path).stdout.strip()
    assert Path(schema).is_file() and Path(schema).is_relative_to(installed.parent.parent)


def test_bundle_zip_verifies_trains_and_infers_outside_the_repository(installed, tmp_path):
    # the bundle as tracked in the repository (no weights, no runtime outputs), packed by the installed package
    source = tmp_path / "source" / "pretrain"
    shutil.copytree(
        REPO_ROOT / "bundles" / "pretrain",
        source,
        ignore=shutil.ignore_patterns("models", "eval", "logs", "cache", "demo_data", "runs"),
    )
    proc = _run(
        [str(installed), "-m", "unimedi_monai.packaging", "pack", str(source), "--out", str(tmp_path / "dist")],
        tmp_path,
    )
    zips = list((tmp_path / "dist").glob("unimedi_pretrain_v*.zip"))
    assert len(zips) == 1 and str(zips[0]) in proc.stdout

    users = tmp_path / "user_models"
    with zipfile.ZipFile(zips[0]) as zf:
        zf.extractall(users)
    bundle = users / "unimedi_pretrain"
    configs = bundle / "configs"
    schema = _run([str(installed), "-m", "unimedi_monai.packaging", "schema"], tmp_path).stdout.strip()
    proc = _run(
        [
            str(installed),
            "-m",
            "monai.bundle",
            "verify_metadata",
            "--meta_file",
            str(configs / "metadata.json"),
            "--filepath",
            schema,
        ],
        users,
    )
    assert "metadata is verified with no error" in proc.stdout + proc.stderr

    env = bundle_env()
    env.pop("PYTHONPATH", None)
    train = [
        str(installed),
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(configs / "train.yaml"),
        "--meta_file",
        str(configs / "metadata.json"),
        "--logging_file",
        str(configs / "logging.conf"),
        "--backbone",
        "tiny",
        "--demo",
        "{'n_xray': 16, 'n_ct': 8, 'seed': 3}",
        "--max_epochs",
        "1",
        "--batch_size",
        "8",
        "--num_workers",
        "0",
        "--slice_top_k",
        "2",
    ]
    _run(train, users, env=env)
    assert (bundle / "models" / "model.pt").is_file() and (bundle / "demo_data" / "datalist.json").is_file()
    log = [json.loads(line) for line in (bundle / "logs" / "train_log.jsonl").read_text().splitlines() if line.strip()]
    assert log and all(abs(float(r["loss"])) < 1e6 for r in log if "loss" in r)

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    picked = sorted(p for p in (bundle / "demo_data").rglob("*") if p.suffix in (".png", ".gz"))
    xray = next(p for p in picked if p.suffix == ".png")
    ct = next(p for p in picked if p.name.endswith(".nii.gz"))
    shutil.copy(xray, inputs / xray.name)
    shutil.copy(ct, inputs / ct.name)
    infer = [
        str(installed),
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(configs / "inference.yaml"),
        "--meta_file",
        str(configs / "metadata.json"),
        "--logging_file",
        str(configs / "logging.conf"),
        "--dataset_dir",
        str(inputs),
        "--backbone",
        "tiny",
        "--slice_top_k",
        "2",
    ]
    _run(infer, users, env=env)
    doc = json.loads((bundle / "eval" / "embeddings.json").read_text())
    assert sorted(Path(p).name for p in doc["images"]) == sorted([xray.name, ct.name])
    assert sorted(doc["modality"]) == ["ct", "xray"] and len(doc["embeddings"]) == 2
