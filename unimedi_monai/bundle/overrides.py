# SPDX-License-Identifier: Apache-2.0
"""Refusing a mistyped ``--key`` on the command line: :func:`check_overrides`, the first ``initialize`` step of every
bundle."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from unimedi_monai.bundle.command_line import monai_run_argv, parse_overrides
from unimedi_monai.bundle.errors import install_excepthook

__all__ = ["ConfigKeyError", "check_overrides", "config_keys"]


class ConfigKeyError(ValueError):
    """A command-line override names a key that no config file of the run declares."""


def config_keys(config: Any, prefix: str = "") -> set[str]:
    """Every key path of a (merged) config: ``"a"``, ``"a#b"``, ``"train#handlers#0#save_dir"``, ...

    Args:
        config: a config dict (as from ``ConfigParser.load_config_files``).
        prefix: path of ``config`` inside its parent (used by the recursion).

    Returns:
        the set of ``#``-joined paths, list items by their index.
    """
    keys: set[str] = set()
    if isinstance(config, Mapping):
        children: Iterable[tuple[Any, Any]] = config.items()
    elif isinstance(config, (list, tuple)):
        children = enumerate(config)
    else:
        return keys
    for k, v in children:
        path = f"{prefix}#{k}" if prefix else f"{k}"
        keys.add(path)
        keys |= config_keys(v, path)
    return keys


def _is_component(config: Any, path: str) -> bool:
    node = config
    for part in path.split("#"):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return isinstance(node, Mapping) and "_target_" in node


def _warn_package_versions(config_files: Sequence[str]) -> None:
    """Warn once when the installed packages differ from the versions the run's bundle declares (it still runs)."""
    from unimedi_monai.packaging.metadata import warn_version_mismatches

    for folder in {Path(f).resolve().parent.parent for f in config_files}:
        if (folder / "configs" / "metadata.json").is_file():
            warn_version_mismatches(folder)


def check_overrides(argv: Sequence[str] | None = None) -> None:
    """Refuse command-line override keys that no config file of the run declares.

    MONAI adds an unknown ``--key value`` to the config without complaint, so a typo
    (``--max_epoch 3``) would silently train with the default. Call this first in ``initialize``::

        initialize:
          - "$unimedi_monai.bundle.check_overrides()"

    It also installs :func:`install_excepthook`, so a refused run ends with one line saying why.

    It reads the command line of ``python -m monai.bundle run`` (``sys.argv``; also under
    ``torchrun -m monai.bundle run``), loads the files of ``--config_file`` with MONAI's
    ``ConfigParser`` and checks that every other ``--key`` (nested ``a#b#c`` too, and those of an
    ``--args_file``) is a key of the merged files. A new argument of a ``_target_`` component
    (``--train#dataloader#pin_memory true``) is accepted unless it is close to an existing one
    (then it is taken for a typo). It also logs one warning when the installed packages differ
    from the versions in the bundle's ``configs/metadata.json`` (the tested set). When the process
    was not started by ``monai.bundle`` (e.g. the Python API ``monai.bundle.run(...)``) it does nothing.

    Args:
        argv: the command line to check (default: ``sys.argv`` when it is a ``monai.bundle run``).

    Raises:
        ConfigKeyError: one line naming the unknown key, the closest declared keys and what to do.
    """
    if argv is None:
        argv = monai_run_argv()
        if argv is None:
            return
        install_excepthook()
    files, overrides = parse_overrides(list(argv))
    _warn_package_versions(files)
    if not files or not overrides:
        return
    from monai.bundle import ConfigParser

    config = ConfigParser.load_config_files(files)
    declared = config_keys(config)
    for key in overrides:
        if key in declared:
            continue
        parent, _, name = key.rpartition("#")
        siblings = {k.rpartition("#")[2]: k for k in declared if k.rpartition("#")[0] == parent}
        close = [siblings[c] for c in difflib.get_close_matches(name, sorted(siblings), n=1, cutoff=0.6)]
        if not close and not siblings:  # the parent itself is unknown: compare whole paths
            close = difflib.get_close_matches(key, sorted(declared), n=1, cutoff=0.6)
        if not close and parent in declared and _is_component(config, parent):
            continue  # a new argument of a `_target_` component: a wrong one fails loudly when it is built
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigKeyError(
            f"unknown config key '{key}' (command line --{key}); {hint}"
            f"the keys are those of {', '.join(Path(f).name for f in files)} (nested keys with '#', e.g. "
            "train#dataloader#num_workers)."
        )
