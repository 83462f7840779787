"""Every bundle passes MONAI's own checks, offline: verify_metadata (against the schema shipped in the
package), declared versions equal to the lock (constraints/lock.txt) with a changelog entry, verify_net_in_out
and ckpt_export to TorchScript (outputs within 1e-4 of the eager network). Parametrized over
``bundles/*/configs/metadata.json``.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import run_module

from unimedi_monai.packaging import (
    META_SCHEMA,
    check_metadata,
    find_bundles,
    read_lock,
    read_metadata,
    sync_metadata_versions,
    validate_metadata,
    version_mismatches,
    warn_version_mismatches,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCK = REPO_ROOT / "constraints" / "lock.txt"
BUNDLES = find_bundles(REPO_ROOT / "bundles")
INFERENCE_BUNDLES = [
    b for b in BUNDLES if (b / "configs" / "inference.yaml").is_file() or (b / "configs" / "inference.json").is_file()
]


def _inference_config(bundle: Path) -> Path:
    yaml_path = bundle / "configs" / "inference.yaml"
    return yaml_path if yaml_path.is_file() else bundle / "configs" / "inference.json"


def test_bundles_found():
    assert any(b.name == "pretrain" for b in BUNDLES), BUNDLES
    assert any(b.name == "pretrain" for b in INFERENCE_BUNDLES), "bundles/pretrain needs configs/inference.yaml"


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda b: b.name)
def test_metadata_passes_schema_changelog_and_lock_versions(bundle):
    metadata = check_metadata(bundle, versions=read_lock(LOCK))  # schema + changelog entry + the lock's versions
    assert metadata["version"] in metadata["changelog"]
    assert version_mismatches(metadata, read_lock(LOCK)) == []
    assert "einops" not in metadata["required_packages_version"]


def test_schema_ships_inside_the_package():
    import unimedi_monai

    assert META_SCHEMA.is_file() and Path(unimedi_monai.__file__).parent in META_SCHEMA.parents
    assert json.loads(META_SCHEMA.read_text())["required"]


def test_read_lock_parses_and_names_bad_lines(tmp_path):
    lock = read_lock(LOCK)
    assert lock["torch"] == "2.13.0" and lock["simpleitk"] and lock["pytorch-ignite"]
    assert "unimedi-monai" not in lock and lock["einops"]  # einops: the benchmarks' MONAI ViT (the bench extra)
    bad = tmp_path / "lock.txt"
    bad.write_text("# comment\nnumpy==2.0.0\nscipy>=1.0\n")
    with pytest.raises(ValueError, match=r"lock.txt, line 3: 'scipy>=1.0' is not 'name==version'"):
        read_lock(bad)


def test_version_mismatches_against_a_lock():
    metadata = read_metadata(REPO_ROOT / "bundles" / "pretrain")
    lock = read_lock(LOCK)
    assert version_mismatches(metadata, lock) == []
    lock["transformers"] = "0.0.1"
    del lock["nibabel"]
    problems = version_mismatches(metadata, lock, source="locked")
    assert any(
        p.startswith("required_packages_version#transformers: metadata") and p.endswith("locked 0.0.1")
        for p in problems
    )
    assert any("nibabel is not locked" in p for p in problems)


def test_sync_metadata_versions_edits_in_place_and_bumps(tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(REPO_ROOT / "bundles" / "pretrain" / "configs", bundle / "configs")
    before = read_metadata(bundle)
    lock = {**read_lock(LOCK), "unimedi-monai": before["required_packages_version"]["unimedi-monai"]}
    assert sync_metadata_versions(bundle, lock) == []  # already in line: untouched
    lock["transformers"], lock["numpy"] = "9.9.9", "3.0.0"
    changes = sync_metadata_versions(bundle, lock)
    after = read_metadata(bundle)
    assert sorted(changes) == sorted(
        [
            f"numpy {before['numpy_version']} -> 3.0.0",
            f"transformers {before['required_packages_version']['transformers']} -> 9.9.9",
        ]
    )
    assert after["numpy_version"] == "3.0.0" and after["required_packages_version"]["transformers"] == "9.9.9"
    major, minor, patch = before["version"].split(".")
    assert after["version"] == f"{major}.{minor}.{int(patch) + 1}" and after["version"] in after["changelog"]
    assert "transformers" in after["changelog"][after["version"]]
    # everything else is unchanged, key order included
    rest = {
        k: v
        for k, v in after.items()
        if k not in ("version", "changelog", "numpy_version", "required_packages_version")
    }
    assert rest == {k: v for k, v in before.items() if k in rest} and list(after) == list(before)
    check_metadata(bundle, versions=lock)
    with pytest.raises(
        ValueError, match="required_packages_version#nibabel names nibabel, which the lock does not hold"
    ):
        sync_metadata_versions(bundle, {k: v for k, v in lock.items() if k != "nibabel"})


def test_other_installed_versions_warn_once(tmp_path, caplog):
    bundle = tmp_path / "b"
    shutil.copytree(REPO_ROOT / "bundles" / "pretrain" / "configs", bundle / "configs")
    assert warn_version_mismatches(bundle) == []  # this environment is the lock's
    meta = bundle / "configs" / "metadata.json"
    meta.write_text(meta.read_text().replace('"numpy_version": "', '"numpy_version": "0.0.1-'))
    with caplog.at_level("WARNING"):
        first = warn_version_mismatches(bundle)
        second = warn_version_mismatches(bundle)
    assert first == second and len(first) == 1 and first[0].startswith("numpy_version: metadata 0.0.1-")
    warnings = [r.getMessage() for r in caplog.records if "other than the tested ones" in r.getMessage()]
    assert len(warnings) == 1 and "numpy_version" in warnings[0] and "metadata.json" in warnings[0]


def test_installed_environment_is_the_lock():
    """The suite runs in the locked environment (scripts/setup_env.sh installs exactly constraints/lock.txt)."""
    proc = run_module("unimedi_monai.packaging", "check_env", "--lock", LOCK, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"matches {LOCK}" in proc.stdout


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda b: b.name)
def test_monai_verify_metadata_offline(bundle, tmp_path):
    """MONAI's verify_metadata with the repository's schema as ``filepath``: nothing is downloaded."""
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(bundle / "configs" / "metadata.json"), filepath=str(META_SCHEMA))
    # the same metadata without a required key fails, naming the key
    broken = read_metadata(bundle)
    del broken["network_data_format"]["outputs"]
    meta = tmp_path / "metadata.json"
    meta.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="'outputs' is a required property"):
        verify_metadata(meta_file=str(meta), filepath=str(META_SCHEMA))


def test_verify_metadata_command_line():
    """The documented command, offline (the schema file exists, so MONAI does not download it)."""
    meta = REPO_ROOT / "bundles" / "pretrain" / "configs" / "metadata.json"
    proc = run_module("monai.bundle", "verify_metadata", "--meta_file", meta, "--filepath", META_SCHEMA, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "metadata is verified with no error" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "key",
    [
        "version",
        "changelog",
        "monai_version",
        "pytorch_version",
        "numpy_version",
        "required_packages_version",
        "task",
        "description",
        "authors",
        "copyright",
        "network_data_format",
    ],
)
def test_schema_requires_model_zoo_keys(key):
    metadata = read_metadata(REPO_ROOT / "bundles" / "pretrain")
    validate_metadata(metadata)
    del metadata[key]
    with pytest.raises(ValueError, match=f"'{key}' is a required property"):
        validate_metadata(metadata, source="bundles/pretrain/configs/metadata.json")


@pytest.mark.parametrize(
    "field", ["type", "format", "num_channels", "spatial_shape", "dtype", "value_range", "is_patch_data", "channel_def"]
)
def test_schema_requires_io_fields(field):
    metadata = read_metadata(REPO_ROOT / "bundles" / "pretrain")
    del metadata["network_data_format"]["inputs"]["image"][field]
    with pytest.raises(ValueError, match=rf"key network_data_format#inputs#image: '{field}' is a required property"):
        validate_metadata(metadata)


def test_changelog_and_version_checks(tmp_path):
    bundle = tmp_path / "b"
    (bundle / "configs").mkdir(parents=True)
    metadata = read_metadata(REPO_ROOT / "bundles" / "pretrain")
    stale = copy.deepcopy(metadata)
    stale["version"] = "9.9.9"
    (bundle / "configs" / "metadata.json").write_text(json.dumps(stale))
    with pytest.raises(ValueError, match=r"changelog has no entry for the current version '9.9.9'"):
        check_metadata(bundle)
    old_numpy = copy.deepcopy(metadata)
    old_numpy["numpy_version"] = "1.0.0"
    (bundle / "configs" / "metadata.json").write_text(json.dumps(old_numpy))
    with pytest.raises(ValueError, match=r"numpy_version: metadata 1.0.0, installed \d"):
        check_metadata(bundle)
    with pytest.raises(
        ValueError, match=r"differ from the lock: numpy_version: metadata 1.0.0, locked \d.*sync_versions"
    ):
        check_metadata(bundle, versions=read_lock(LOCK))
    check_metadata(bundle, check_versions=False)


@pytest.mark.parametrize("bundle", INFERENCE_BUNDLES, ids=lambda b: b.name)
def test_verify_net_in_out(bundle):
    from monai.bundle import verify_net_in_out

    verify_net_in_out(
        net_id="network_def",
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=str(_inference_config(bundle)),
        device="cpu",
        bundle_root=str(bundle),
    )


@pytest.mark.parametrize("bundle", INFERENCE_BUNDLES, ids=lambda b: b.name)
def test_ckpt_export_matches_eager(bundle, tmp_path):
    """ckpt_export (TorchScript by tracing at the metadata's input shape) of the inference network
    with saved weights; the exported module reproduces the eager network on a new input."""
    from monai.bundle import ConfigParser, ckpt_export

    meta_file, config_file = bundle / "configs" / "metadata.json", _inference_config(bundle)
    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser.read_meta(str(meta_file))
    parser["bundle_root"] = str(bundle)
    net = parser.get_parsed_content("network_def").eval()
    ckpt = tmp_path / "model.pt"
    torch.save(net.state_dict(), ckpt)
    ts_path = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(ts_path),
        ckpt_file=str(ckpt),
        meta_file=str(meta_file),
        config_file=str(config_file),
        use_trace=True,
        bundle_root=str(bundle),
    )
    ts = torch.jit.load(str(ts_path), map_location="cpu")
    extra = {"metadata.json": ""}
    torch.jit.load(str(ts_path), _extra_files=extra)
    assert json.loads(extra["metadata.json"])["version"] == read_metadata(bundle)["version"]

    fmt = read_metadata(bundle)["network_data_format"]["inputs"]["image"]
    shape = [1, fmt["num_channels"], *[int(s) for s in fmt["spatial_shape"]]]
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected, exported = net(x), ts(x)
    assert exported.shape == expected.shape
    assert torch.allclose(exported, expected, atol=1e-4, rtol=0), (exported - expected).abs().max()


def test_pretrain_inference_network_reproduces_unimedi(text_encoder, tmp_path):
    """The inference network with a whole UniMedI state dict (models/model.pt) computes encode_image."""
    from unimedi_monai.io import load_weights
    from unimedi_monai.networks import UniMedI
    from unimedi_monai.packaging import ImageEmbeddingNetwork

    model = UniMedI("tiny", text_encoder=text_encoder, slice_top_k=2).eval()
    ckpt = tmp_path / "model.pt"
    torch.save(model.state_dict(), ckpt)
    net = ImageEmbeddingNetwork("tiny", slice_top_k=2).eval()
    report = load_weights(net, ckpt).load_report
    assert report["missing"] == [] and sorted(report["loaded"]) == sorted(net.state_dict())
    assert any(k.startswith("text_encoder.") for k in model.state_dict())  # dropped, not needed
    ct, xr = torch.rand(2, 1, 128, 128, 32), torch.rand(3, 1, 224, 224)
    with torch.no_grad():
        for x in (ct, xr):
            emb = net(x)
            assert torch.allclose(emb, model.encode_image(x)[0], atol=1e-6)
            assert torch.allclose(emb.norm(dim=-1), torch.ones(x.shape[0]), atol=1e-5)
    with pytest.raises(Exception, match="backbone preset"):
        load_weights(ImageEmbeddingNetwork("demo"), ckpt)


def test_bundle_run_warns_about_other_versions(tmp_path, caplog):
    """``check_overrides``, first in every config's ``initialize``, warns (once) and lets the run go on."""
    from unimedi_monai.bundle import check_overrides

    bundle = tmp_path / "b"
    shutil.copytree(REPO_ROOT / "bundles" / "pretrain" / "configs", bundle / "configs")
    meta = bundle / "configs" / "metadata.json"
    meta.write_text(meta.read_text().replace('"monai_version": "', '"monai_version": "0.0.2-'))
    with caplog.at_level("WARNING"):
        check_overrides(["--config_file", str(bundle / "configs" / "train.yaml")])
    assert any(
        "monai_version: metadata 0.0.2-" in r.getMessage() and str(meta) in r.getMessage() for r in caplog.records
    )
