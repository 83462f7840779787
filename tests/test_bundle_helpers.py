"""Config helpers: locating the bundle, choosing the data folder, the metrics summary."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import REPO_ROOT

from unimedi_monai.bundle import find_bundle_root
from unimedi_monai.data.sources import resolve_dataset_dir
from unimedi_monai.evaluation.summary import summarize


def test_find_bundle_root_from_sys_path_and_repo(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    assert find_bundle_root("unimedi_pretrain") == str(REPO_ROOT / "bundles" / "pretrain")
    copy = tmp_path / "unpacked"
    (copy / "configs").mkdir(parents=True)
    (copy / "configs" / "metadata.json").write_text(json.dumps({"name": "unimedi_pretrain"}))
    monkeypatch.setattr(sys, "path", [sys.path[0], str(copy)] + sys.path[1:])
    assert find_bundle_root("unimedi_pretrain") == str(copy.resolve())  # monai.bundle run puts it on sys.path
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="--bundle_root"):
        find_bundle_root("no_such_bundle")


def test_find_bundle_root_from_the_run_config_file(tmp_path, monkeypatch):
    """An unpacked zip anywhere, run from another folder: found through --config_file, before MONAI
    puts the bundle on sys.path (that happens only when the workflow runs, after initialize)."""
    unpacked = tmp_path / "models" / "unimedi_pretrain"
    (unpacked / "configs").mkdir(parents=True)
    (unpacked / "configs" / "metadata.json").write_text(json.dumps({"name": "unimedi_pretrain"}))
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(FileNotFoundError, match="--bundle_root"):
        find_bundle_root("unimedi_pretrain")
    main = str(tmp_path / "site-packages" / "monai" / "bundle" / "__main__.py")  # python -m monai.bundle
    monkeypatch.setattr(
        sys,
        "argv",
        [main, "run", "--config_file", "../models/unimedi_pretrain/configs/train.yaml", "--max_epochs", "1"],
    )
    assert find_bundle_root("unimedi_pretrain") == str(unpacked.resolve())
    monkeypatch.setattr(
        sys,
        "argv",
        [main, "run", "--config_file", "['../models/unimedi_pretrain/configs/train.yaml','x/evaluate.yaml']"],
    )
    assert find_bundle_root("unimedi_pretrain") == str(unpacked.resolve())


def test_resolve_dataset_dir_errors_name_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset_dir '.*missing' does not exist"):
        resolve_dataset_dir(tmp_path / "missing", tmp_path / "demo")
    (tmp_path / "data").mkdir()
    with pytest.raises(FileNotFoundError, match="no datalist.json"):
        resolve_dataset_dir(tmp_path / "data", tmp_path / "demo")
    (tmp_path / "data" / "datalist.json").write_text("{}")
    assert resolve_dataset_dir(tmp_path / "data", tmp_path / "demo") == str((tmp_path / "data").resolve())


def test_resolve_dataset_dir_generates_demo_once(tmp_path):
    demo = {"n_xray": 4, "n_ct": 2, "seed": 5}
    path = resolve_dataset_dir(None, tmp_path / "demo", demo=demo)
    assert (tmp_path / "demo" / "datalist.json").is_file() and path == str(tmp_path / "demo")
    mtime = (tmp_path / "demo" / "datalist.json").stat().st_mtime_ns
    assert resolve_dataset_dir("demo", tmp_path / "demo", demo=demo) == path
    assert (tmp_path / "demo" / "datalist.json").stat().st_mtime_ns == mtime


def test_summary_reports_targets():
    metrics = {"i2t_R@1": 0.3, "t2i_R@1": 0.05, "chance_R@1": 0.02, "slice_hit_rate": 0.6, "slice_hit_rate_random": 0.2}
    table, ok = summarize(metrics)
    assert not ok and "NOT met" in table  # t2i is 2.5x chance
    metrics["t2i_R@1"] = 0.1
    table, ok = summarize(metrics)
    assert ok and "3.00x" in table and "15.00x" in table
    # a p-value target and a probe target in accuracy points
    metrics.update(slice_hit_p_value=0.2, probe_acc_ct=0.5, probe_acc_random_ct=0.4)
    table, ok = summarize(metrics)
    assert not ok and "< 0.01 NOT met" in table and ">= +0.15 over baseline NOT met" in table
    metrics.update(slice_hit_p_value=1e-4, probe_acc_ct=0.6)
    table, ok = summarize(metrics)
    assert ok and "1.0e-04" in table
