"""MONAI Label end to end: the real server on 127.0.0.1 with a real study (a CT for the 3D bundles, a
chest X-ray PNG for the 2D one), the infer endpoint called over HTTP, the returned label map checked.
Parametrized by bundle name.

Needs the MONAI Label environment (``bash scripts/setup_label_env.sh``) and runs only through
``bash scripts/run_label_tests.sh`` (``UNIMEDI_LABEL_TESTS=1``), which ``.ci/run`` also calls:
the server start and a CPU inference take minutes, too long for every test run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_module

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_DIR = REPO_ROOT / "unimedi_monai" / "label" / "app_dir"
LABEL_PYTHON = Path(os.environ.get("UNIMEDI_LABEL_PYTHON", REPO_ROOT / ".venv-label" / "bin" / "python"))
BUNDLES_DIR = Path(os.environ.get("UNIMEDI_LABEL_BUNDLES_DIR", REPO_ROOT / "bundles"))
STUDY = "example_ct_sm"  # 122 x 101 x 30 real abdominal CT, 3 mm
XRAY_STUDY = "000001-17"  # real frontal chest X-ray, 315 rows x 384 columns (not square: a transposed mask fails)
# the study file of each bundle, relative to the shared data folder
STUDY_FILES = {
    "bcv_segmentation": f"totalsegmentator/{STUDY}.nii.gz",
    "slice_selection": f"totalsegmentator/{STUDY}.nii.gz",
    "rsna_segmentation": f"covid_cxr_notes/images/{XRAY_STUDY}.png",
}
# the bundles served with MONAI Label and the --conf overrides that keep a CPU run short
LABEL_BUNDLES = {
    "bcv_segmentation": {"overlap": "0.0", "sw_batch_size": "2"},
    "slice_selection": {"backbone": "tiny", "top_k": "4", "save_png": "False"},
    "rsna_segmentation": {"backbone": "demo", "decoder_channels": "64", "amp": "False"},
}

pytestmark = pytest.mark.skipif(
    os.environ.get("UNIMEDI_LABEL_TESTS") != "1",
    reason="MONAI Label server test: run `bash scripts/run_label_tests.sh` (needs scripts/setup_label_env.sh)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, method: str = "GET", timeout: float = 600) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1: never through a proxy
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _info_and_infer(base: str, name: str, study: str, log: Path) -> tuple[dict, bytes]:
    """The server lists the model (``/info/``) and the study (``/datastore/``), then infers the study as an
    image (``/infer/<name>``); returns the info and the returned label image's bytes."""
    status, body = _request(base + "/info/")
    info = json.loads(body)
    assert status == 200 and name in info["models"], info.get("models")
    status, body = _request(base + "/datastore/?output=all")
    assert study in json.loads(body)["objects"]
    status, body = _request(f"{base}/infer/{name}?image={study}&output=image", method="POST", timeout=900)
    assert status == 200, f"{status}: {body[:500]!r}\n{log.read_text()[-4000:]}"
    return info, body


def _write_weights(bundle: Path, text_encoder) -> None:
    """models/model.pt for a bundle copy: the inference network's own (random) weights, or for a
    slice-selection bundle (``selector`` in its config) a tiny pre-trained UniMedI's state dict.

    The random output head's bias is zeroed: its class offsets outweigh the random features and would
    make the mask one class everywhere, whatever the image; without them the mask follows the image."""
    from monai.bundle import ConfigParser

    config = next(
        p for p in (bundle / "configs" / "inference.yaml", bundle / "configs" / "inference.json") if p.is_file()
    )
    (bundle / "models").mkdir(exist_ok=True)
    parser = ConfigParser()
    parser.read_config(str(config))
    parser["bundle_root"] = str(bundle)
    if "selector" in parser.get():
        from unimedi_monai.networks import UniMedI

        state = UniMedI("tiny", text_encoder=text_encoder).state_dict()
    else:
        state = parser.get_parsed_content("network_def").state_dict()
        if bundle.name == "rsna_segmentation":
            state["out.conv.conv.bias"].zero_()
    torch.save(state, bundle / "models" / "model.pt")


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` (``UNIMEDI_SHARED_DATA`` to point elsewhere); the study's presence is checked per bundle."""
    return Path(os.environ.get("UNIMEDI_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture
def label_server(tmp_path, shared_data, request):
    """Start ``monailabel start_server`` for one bundle; yields ``(base_url, study_path, name, log)``; stops it by its
    process group."""
    name = request.param
    source = shared_data / STUDY_FILES[name]
    if not source.is_file():
        pytest.skip(
            f"real study for {name} not found: {source} (clone with ../shared beside the repo, or set "
            "UNIMEDI_SHARED_DATA)"
        )
    if not (BUNDLES_DIR / name / "configs" / "metadata.json").is_file():
        pytest.skip(f"bundle {name} not in {BUNDLES_DIR}")
    if not LABEL_PYTHON.is_file():
        pytest.fail(f"MONAI Label environment missing ({LABEL_PYTHON}); run bash scripts/setup_label_env.sh")
    bundles = tmp_path / "bundles"
    shutil.copytree(
        BUNDLES_DIR / name,
        bundles / name,
        ignore=shutil.ignore_patterns("models", "eval", "logs", "cache", "demo_data", "outputs"),
    )
    text_encoder = request.getfixturevalue("text_encoder") if name == "slice_selection" else None
    _write_weights(bundles / name, text_encoder)
    studies = tmp_path / "studies"
    studies.mkdir()
    study = studies / source.name
    shutil.copy(source, study)

    app = tmp_path / "app"  # a copy of the app folder: the server writes its logs there
    app.mkdir()
    shutil.copy(APP_DIR / "main.py", app / "main.py")
    port = _free_port()
    cmd = [
        str(LABEL_PYTHON),
        "-m",
        "monailabel.main",
        "start_server",
        "--app",
        str(app),
        "--studies",
        str(studies),
        "--conf",
        "models",
        name,
        "--conf",
        "bundles_dir",
        str(bundles),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    for key, value in LABEL_BUNDLES[name].items():
        cmd += ["--conf", f"{name}.{key}", value]
    log = open(tmp_path / "server.log", "w")
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        CI="1",
        PYTHONPATH=os.environ.get("PYTHONPATH", str(REPO_ROOT)),
    )
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited ({proc.returncode}):\n{(tmp_path / 'server.log').read_text()[-4000:]}")
            try:
                status, _ = _request(base + "/info/", timeout=5)
                if status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"server not up after 240 s:\n{(tmp_path / 'server.log').read_text()[-4000:]}")
            time.sleep(2)
        yield base, study, name, tmp_path / "server.log"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.parametrize("label_server", [n for n in LABEL_BUNDLES if n != "rsna_segmentation"], indirect=True)
def test_infer_over_http_returns_label_map(label_server, tmp_path):
    import nibabel as nib

    base, study, name, log = label_server
    _, body = _info_and_infer(base, name, STUDY, log)
    out = tmp_path / "label.nii.gz"
    out.write_bytes(body)
    label, ref = nib.load(str(out)), nib.load(str(study))
    values = np.asarray(label.dataobj)
    assert values.shape == ref.shape
    assert np.allclose(label.affine, ref.affine, atol=1e-3)
    assert np.allclose(values, np.round(values)) and values.min() >= 0

    if name == "slice_selection":
        status, body = _request(f"{base}/infer/{name}?image={STUDY}&output=json", method="POST", timeout=900)
        assert status == 200, body[:500]
        result = json.loads(body)
        assert len(result["top_k"]) == 4 and result["num_slices"] == ref.shape[result["slice_axis"]]
        along = np.moveaxis(values, result["slice_axis"], -1)
        marked = sorted(np.nonzero(along.reshape(-1, along.shape[-1]).max(axis=0))[0].tolist())
        assert marked == sorted(result["top_k"])  # the label map marks exactly the selected axial slices
        assert set(np.unique(values)) <= {0, 1}
    else:
        n_classes = len(
            json.loads((Path(BUNDLES_DIR) / name / "configs" / "metadata.json").read_text())["network_data_format"][
                "outputs"
            ]["pred"]["channel_def"]
        )
        assert values.max() < n_classes


@pytest.mark.parametrize("label_server", ["rsna_segmentation"], indirect=True)
def test_infer_2d_xray_over_http_returns_mask(label_server, tmp_path):
    """The 2D bundle as a 2D infer task: a real X-ray PNG in, a class-id mask of the X-ray's own size and orientation
    out."""
    from PIL import Image

    base, study, name, log = label_server
    info, body = _info_and_infer(base, name, XRAY_STUDY, log)
    assert info["models"][name]["dimension"] == 2 and info["models"][name]["type"] == "segmentation"
    assert info["models"][name]["labels"] == {"pneumonia": 1}
    out = tmp_path / "mask.png"
    out.write_bytes(body)
    with Image.open(study) as ref, Image.open(out) as mask:
        ref_rows_cols = np.asarray(ref).shape[:2]
        values = np.asarray(mask)
    assert ref_rows_cols == (315, 384)
    assert (
        values.shape == ref_rows_cols
    )  # the X-ray's own rows and columns, not the 224 x 224 network grid, not transposed
    assert np.issubdtype(values.dtype, np.integer) and set(np.unique(values).tolist()) <= {0, 1}

    # the reference: the bundle's own inference command (same weights, same X-ray) writes the same mask
    # (0 / 255 there, class ids here), so a flipped or shifted result fails too
    bundle, ref_dir = tmp_path / "bundles" / name, tmp_path / "bundle_run"
    overrides = [arg for key, value in LABEL_BUNDLES[name].items() for arg in (f"--{key}", value)]
    env = dict(os.environ, CI="1", PYTHONPATH=os.environ.get("PYTHONPATH", str(REPO_ROOT)))
    config = bundle / "configs" / "inference.yaml"
    args = ["--config_file", config, "--bundle_root", bundle, "--datalist", study, "--output_dir", ref_dir]
    run = run_module("monai.bundle", "run", *args, *overrides, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr[-4000:]
    with Image.open(ref_dir / f"{XRAY_STUDY}_seg.png") as expected:
        expected = np.asarray(expected)
    assert expected.shape == values.shape
    assert 0.01 < values.mean() < 0.99  # both classes present: the comparison means something
    # the two environments' torch builds may round differently where the random logits nearly tie
    assert np.mean(values.astype(np.int64) * 255 != expected) < 1e-3
    assert (
        np.mean(values[::-1] * 255 != expected) > 0.01 and np.mean(values[:, ::-1] * 255 != expected) > 0.01
    )  # a flip would show
