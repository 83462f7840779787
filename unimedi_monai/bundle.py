"""Helpers the bundle configs call: locating the bundle folder and guarding its output folders."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

__all__ = ["find_bundle_root"]


def _bundle_name(folder: Path) -> str | None:
    meta = folder / "configs" / "metadata.json"
    if not meta.is_file():
        return None
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("name")
    except (OSError, json.JSONDecodeError):
        return None


def find_bundle_root(name: str) -> str:
    """The folder of the bundle whose ``configs/metadata.json`` has ``"name": name``.

    ``python -m monai.bundle run`` puts the bundle folder of the config file on ``sys.path``; that
    entry is used when present, so the bundle works from any working directory, inside this
    repository (``bundles/<name>``) or unpacked from a model-zoo zip. Otherwise the current folder
    and ``./bundles/*`` are searched. Override with ``--bundle_root DIR``.

    Raises:
        FileNotFoundError: no such bundle was found, saying where it looked.
    """
    candidates = [Path(p) for p in sys.path[:4] if p] + [Path.cwd()]
    bundles = Path.cwd() / "bundles"
    if bundles.is_dir():
        candidates += sorted(p for p in bundles.iterdir() if p.is_dir())
    for folder in candidates:
        if _bundle_name(folder) == name:
            return str(folder.resolve())
    raise FileNotFoundError(
        f"cannot find the bundle '{name}' (a folder with configs/metadata.json naming it) on sys.path, in "
        f"{os.getcwd()} or under ./bundles; pass --bundle_root DIR."
    )
