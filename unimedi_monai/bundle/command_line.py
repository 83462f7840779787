# SPDX-License-Identifier: Apache-2.0
"""The ``monai.bundle run`` command line of this process: its config files and its override keys.

MONAI parses the command line with ``fire`` inside ``monai.bundle.run`` and hands the config's
``initialize`` steps neither the parsed arguments nor the list of files; the checks of this package
(unknown ``--key``, the bundle folder of ``--config_file``) therefore read ``sys.argv`` again, with
the same rules (``--key value``, ``--key=value``, ``::`` for ``#``, ``--args_file``).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["RUN_ARGUMENTS", "monai_run_argv", "parse_overrides", "run_config_files"]

#: arguments of ``monai.bundle run`` itself (not config overrides).
RUN_ARGUMENTS = frozenset(
    {
        "run_id",
        "init_id",
        "final_id",
        "meta_file",
        "config_file",
        "logging_file",
        "tracking",
        "args_file",
        "workflow_name",
        "workflow_type",
        "properties_path",
    }
)
#: extra keys accepted with ``--tracking`` (MONAI's experiment-tracking settings).
_TRACKING_ARGUMENTS = frozenset({"output_dir", "tracking_uri", "experiment_name", "run_name", "save_execute_config"})


def monai_run_argv() -> list[str] | None:
    """The arguments after ``run`` when this process is ``python -m monai.bundle run`` (also under torchrun), else
    None."""
    main = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    if (main.parent.parent.name, main.parent.name) != ("monai", "bundle") or sys.argv[1:2] != ["run"]:
        return None
    return sys.argv[2:]


def run_config_files() -> list[str]:
    """The ``--config_file`` files of this process's ``python -m monai.bundle run`` command line (else none)."""
    argv = monai_run_argv()
    if argv is None:
        return []
    try:
        return parse_overrides(argv)[0]
    except (ValueError, OSError):
        return []


def _literal(value: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def parse_overrides(argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """Split a ``monai.bundle run`` command line into its config files and its override keys.

    Args:
        argv: the arguments after ``run`` (``--key value``, ``--key=value``; a leading positional
            argument is the run id).

    Returns:
        ``(config_files, overrides)``: the files of ``--config_file`` (and of ``--args_file``'s
        ``config_file``) and ``{key: raw value}`` of every other ``--key`` that is not an argument of
        ``run`` itself. Keys given with ``::`` are returned with ``#``.
    """
    args: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("--") and len(token) > 2:
            key, eq, value = token[2:].partition("=")
            if not eq:
                if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                    value = argv[i + 1]
                    i += 1
                else:
                    value = "True"
            args[key.replace("::", "#")] = value
        i += 1
    if "args_file" in args:
        from monai.bundle import ConfigParser

        for k, v in ConfigParser.load_config_file(args["args_file"]).items():
            args.setdefault(str(k).replace("::", "#"), v)
    files = args.get("config_file", [])
    files = _literal(files) if isinstance(files, str) else files
    if isinstance(files, str):
        files = files.split(",") if ("," in files and not Path(files).is_file()) else [files]
    overrides = {k: v for k, v in args.items() if k not in RUN_ARGUMENTS}
    if "tracking" in args:
        overrides = {k: v for k, v in overrides.items() if k not in _TRACKING_ARGUMENTS}
    return [str(f) for f in files], overrides
