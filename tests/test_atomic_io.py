"""Atomic writes leave either the old file or the complete new one."""

from __future__ import annotations

import json

import pytest

from unimedi_monai.io.atomic_io import atomic_open, write_json_atomic


def test_atomic_open_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "file.json"
    write_json_atomic({"a": 1}, target)
    assert json.loads(target.read_text()) == {"a": 1}
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as f:
            f.write('{"a": 2')  # interrupted half-way
            raise RuntimeError("crash")
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.json"]
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(target, "a"):
            pass
