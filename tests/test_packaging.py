"""Model-zoo packaging: ``<name>_v<version>.zip`` unpacking to ``<name>/``, large files listed with
URL and hash, and the round trip through MONAI's own ``download`` from a local HTTP server to a
bundle run of the downloaded inference config. Also: every ``torch.load`` in the repository uses
``weights_only=True``.
"""

from __future__ import annotations

import ast
import functools
import http.server
import json
import shutil
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import run_module

from unimedi_monai.packaging import ImageEmbeddingNetwork, bundle_name, file_hash, pack_bundle, read_metadata

REPO_ROOT = Path(__file__).resolve().parents[1]
PRETRAIN = REPO_ROOT / "bundles" / "pretrain"
VERSION = read_metadata(PRETRAIN)["version"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@pytest.fixture
def http_root(tmp_path):
    """A folder served over HTTP on 127.0.0.1 (free port) for the test's duration: ``(folder, base_url)``."""
    root = tmp_path / "srv"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def trained_bundle(tmp_path):
    """A copy of bundles/pretrain with tiny-preset weights in models/model.pt and runtime outputs beside them."""
    bundle = tmp_path / "pretrain"
    shutil.copytree(
        PRETRAIN,
        bundle,
        ignore=shutil.ignore_patterns("models", "eval", "logs", "cache", "demo_data", "demo_eval_data", "runs"),
    )
    net = ImageEmbeddingNetwork("tiny", slice_top_k=2)
    (bundle / "models").mkdir()
    torch.save(net.state_dict(), bundle / "models" / "model.pt")
    for runtime in (
        "models/checkpoint_10.pt",
        "eval/metrics.json",
        "logs/train_log.jsonl",
        "demo_data/datalist.json",
        "demo_eval_data/datalist.json",
        "cache/x.pt",
    ):
        (bundle / runtime).parent.mkdir(parents=True, exist_ok=True)
        (bundle / runtime).write_text("runtime output")
    return bundle


def test_pack_layout_and_exclusions(trained_bundle, tmp_path):
    result = pack_bundle(trained_bundle, tmp_path / "dist")
    name, version = bundle_name(trained_bundle), read_metadata(trained_bundle)["version"]
    assert name == "unimedi_pretrain"
    assert result.zip_path == tmp_path / "dist" / f"{name}_v{version}.zip"
    with zipfile.ZipFile(result.zip_path) as zf:
        names = set(zf.namelist())
        assert zf.testzip() is None
    assert all(n.startswith(f"{name}/") for n in names)
    for kept in (
        "configs/metadata.json",
        "configs/inference.yaml",
        "configs/train.yaml",
        "docs/README.md",
        "LICENSE",
        "models/model.pt",
    ):
        assert f"{name}/{kept}" in names
    for dropped in (
        "models/checkpoint_10.pt",
        "eval/metrics.json",
        "logs/train_log.jsonl",
        "demo_data/datalist.json",
        "demo_eval_data/datalist.json",
        "cache/x.pt",
    ):
        assert f"{name}/{dropped}" not in names
    assert result.large_files == [] and f"{name}/large_files.yml" not in names
    # the same bundle gives the same bytes (fixed entry times, sorted entries)
    again = pack_bundle(trained_bundle, tmp_path / "dist2")
    assert again.zip_path.read_bytes() == result.zip_path.read_bytes()
    assert not list((tmp_path / "dist").glob(".*"))  # no temporary file left


def test_pack_large_file_needs_url(trained_bundle, tmp_path):
    with pytest.raises(
        ValueError, match=r"models/model.pt is \d+\.\d\d MB, over the 0.25 MB limit; pass --url_template"
    ):
        pack_bundle(trained_bundle, tmp_path / "dist", max_file_size=2**18)
    assert not (tmp_path / "dist" / f"unimedi_pretrain_v{VERSION}.zip").exists()


def test_pack_command_line(trained_bundle, tmp_path):
    proc = run_module(
        "unimedi_monai.packaging",
        "pack",
        trained_bundle,
        "--out",
        tmp_path / "dist",
        "--url_template",
        "https://example.org/{name}_v{version}/{filename}",
        "--max_size_mb",
        "0.25",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (
        "in large_files.yml" in proc.stdout
        and f"https://example.org/unimedi_pretrain_v{VERSION}/model.pt" in proc.stdout
    )
    with zipfile.ZipFile(tmp_path / "dist" / f"unimedi_pretrain_v{VERSION}.zip") as zf:
        listed = yaml.safe_load(zf.read("unimedi_pretrain/large_files.yml"))["large_files"]
        assert "unimedi_pretrain/models/model.pt" not in zf.namelist()
    assert [e["path"] for e in listed] == ["models/model.pt"]
    assert listed[0]["hash_type"] == "sha256" and listed[0]["hash_val"] == file_hash(
        trained_bundle / "models" / "model.pt"
    )


def _write_inputs(folder: Path) -> None:
    import nibabel as nib
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    hu = rng.uniform(-1000, 1000, size=(48, 40, 20)).astype(np.float32)
    nib.save(nib.Nifti1Image(hu, np.diag([1.5, 1.5, 3.0, 1.0])), str(folder / "ct.nii.gz"))
    Image.fromarray(rng.integers(0, 255, size=(96, 80), dtype=np.uint8)).save(folder / "xr.png")


@pytest.mark.slow
def test_download_from_http_and_run_inference(trained_bundle, http_root, tmp_path):
    """Pack with the weights as a large file, serve both on 127.0.0.1, ``monai.bundle download --url``,
    ``download_large_files`` (hash checked), then run the downloaded inference.yaml."""
    from monai.bundle import download_large_files

    srv, base = http_root
    result = pack_bundle(
        trained_bundle, srv, url_template=base + "/files/{name}_v{version}/{path}", max_file_size=2**18
    )
    weights = srv / "files" / f"unimedi_pretrain_v{VERSION}" / "models" / "model.pt"
    weights.parent.mkdir(parents=True)
    shutil.copy(trained_bundle / "models" / "model.pt", weights)

    dl = tmp_path / "downloaded"
    proc = run_module(
        "monai.bundle",
        "download",
        "--name",
        "unimedi_pretrain",
        "--version",
        VERSION,
        "--url",
        f"{base}/{result.zip_path.name}",
        "--bundle_dir",
        dl,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    bundle = dl / "unimedi_pretrain"
    assert (bundle / "configs" / "inference.yaml").is_file() and not (bundle / "models" / "model.pt").exists()

    download_large_files(bundle_path=str(bundle))
    assert file_hash(bundle / "models" / "model.pt") == file_hash(trained_bundle / "models" / "model.pt")

    inputs = tmp_path / "inputs"
    _write_inputs(inputs)
    proc = run_module(
        "monai.bundle",
        "run",
        "--config_file",
        bundle / "configs" / "inference.yaml",
        "--bundle_root",
        bundle,
        "--dataset_dir",
        inputs,
        "--backbone",
        "tiny",
        "--slice_top_k",
        "2",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((bundle / "eval" / "embeddings.json").read_text())
    assert [Path(p).name for p in doc["images"]] == ["ct.nii.gz", "xr.png"] and doc["modality"] == ["ct", "xray"]
    emb = torch.tensor(doc["embeddings"])
    assert emb.shape == (2, 32)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)

    # the same embedding in this process, from the original weights and the bundle's CT pipeline
    from unimedi_monai.bundle import bundle_item

    net = ImageEmbeddingNetwork("tiny", slice_top_k=2).eval()
    net.load_state_dict(torch.load(trained_bundle / "models" / "model.pt", weights_only=True))
    ct_transforms = bundle_item(REPO_ROOT / "bundles" / "pretrain" / "configs" / "inference.yaml", "ct_transforms")
    image = ct_transforms({"image": str(inputs / "ct.nii.gz")})["image"]
    with torch.no_grad():
        expected = net(torch.as_tensor(image).unsqueeze(0))[0]
    assert torch.allclose(emb[0], expected, atol=1e-5)


def test_large_file_hash_mismatch_is_rejected(trained_bundle, http_root, tmp_path):
    from monai.bundle import download_large_files

    srv, base = http_root
    result = pack_bundle(trained_bundle, tmp_path / "dist", url_template=base + "/{filename}", max_file_size=2**18)
    (srv / "model.pt").write_bytes(b"tampered weights")
    bundle = tmp_path / "unpacked"
    with zipfile.ZipFile(result.zip_path) as zf:
        zf.extractall(bundle)
    with pytest.raises(Exception, match="hash check"):
        download_large_files(bundle_path=str(bundle / "unimedi_pretrain"))


def _torch_load_calls(path: Path) -> list[tuple[int, bool]]:
    """``(line, has weights_only=True)`` for each ``torch.load(...)`` call in a Python file."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
            owner = node.func.value
            if isinstance(owner, ast.Name) and owner.id == "torch":
                ok = any(
                    k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                    for k in node.keywords
                )
                calls.append((node.lineno, ok))
    return calls


def test_every_torch_load_uses_weights_only(tmp_path):
    offenders, found = [], 0
    sources = [
        p
        for p in REPO_ROOT.rglob("*.py")
        if not any(part.startswith(".") or part in ("build", "dist") for part in p.relative_to(REPO_ROOT).parts)
    ]
    for path in sources:
        for line, ok in _torch_load_calls(path):
            found += 1
            if not ok:
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{line}")
    for path in REPO_ROOT.glob("bundles/*/configs/*"):
        if path.suffix in (".yaml", ".yml", ".json"):
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if "torch.load(" in line and "weights_only=True" not in line:
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{i}")
    assert found > 0  # the scan sees the repository's loads (safe_load, this file)
    assert offenders == [], f"torch.load without weights_only=True: {offenders}"
    # the scanner itself flags a bare call
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nx = torch.load('m.pt')\ny = torch.load('m.pt', weights_only=False)\n")
    assert _torch_load_calls(bad) == [(2, False), (3, False)]
