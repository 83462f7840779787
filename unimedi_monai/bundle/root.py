# SPDX-License-Identifier: Apache-2.0
"""Where the running bundle lies: :func:`find_bundle_root`
(``bundle_root: "$unimedi_monai.bundle.find_bundle_root('name')"``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from unimedi_monai.bundle.command_line import run_config_files

__all__ = ["find_bundle_root"]

#: how many leading ``sys.path`` entries may hold the bundle folder: ``monai.bundle``'s workflow inserts
#: it at index 1 (``ConfigWorkflow.run``: ``sys.path.insert(1, bundle_root)``), and a run nested in
#: another (a test, ``torchrun``) may push it down by one or two.
_SYS_PATH_ENTRIES = 4


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

    The folders of the run's own config files come first (``--config_file`` of ``python -m
    monai.bundle run``: ``<bundle>/configs/train.yaml`` gives ``<bundle>``), so the bundle works from
    any working directory, inside this repository (``bundles/<name>``) or unpacked from a model-zoo
    zip anywhere. Then the bundle folder MONAI puts on ``sys.path`` when a workflow runs, the current
    folder and ``./bundles/*``. Override with ``--bundle_root DIR``.

    Raises:
        FileNotFoundError: no such bundle was found, saying where it looked.
    """
    candidates = [Path(f).resolve().parent.parent for f in run_config_files()]
    candidates += [Path(p) for p in sys.path[:_SYS_PATH_ENTRIES] if p] + [Path.cwd()]
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
