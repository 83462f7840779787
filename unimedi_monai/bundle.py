"""Helpers the bundle configs call: locating the bundle folder, checking the command line, guarding outputs.

Every bundle of this repository calls them first in its ``initialize`` list::

    initialize:
      - "$unimedi_monai.bundle.check_overrides()"
      - "$unimedi_monai.bundle.guard_outputs({'ckpt_dir': @ckpt_dir, 'log_dir': @log_dir}, {'dataset_dir': @dataset_dir})"
      - "$monai.utils.set_determinism(seed=@seed)"

:func:`check_overrides` refuses a mistyped ``--key`` on the command line (MONAI would silently add it
as a new, unused key); :func:`guard_outputs` refuses output folders inside the data folders and
takes a lock on each output folder so that two runs never write into the same one.
"""

from __future__ import annotations

import ast
import atexit
import difflib
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

__all__ = [
    "ConfigKeyError",
    "OutputFolderError",
    "LOCK_FILENAME",
    "RUN_ARGUMENTS",
    "find_bundle_root",
    "config_keys",
    "parse_overrides",
    "check_overrides",
    "check_dataset_dir",
    "guard_outputs",
    "acquire_lock",
    "release_locks",
]

logger = logging.getLogger(__name__)

#: arguments of ``monai.bundle run`` itself (not config overrides).
RUN_ARGUMENTS = frozenset(
    {"run_id", "init_id", "final_id", "meta_file", "config_file", "logging_file", "tracking", "args_file", "workflow_name", "workflow_type", "properties_path"}
)
#: extra keys accepted with ``--tracking`` (MONAI's experiment-tracking settings).
_TRACKING_ARGUMENTS = frozenset({"output_dir", "tracking_uri", "experiment_name", "run_name", "save_execute_config"})

#: name of the lock file written in each guarded output folder.
LOCK_FILENAME = ".unimedi_run.lock"

_held_locks: list[Path] = []


class ConfigKeyError(ValueError):
    """A command-line override names a key that no config file of the run declares."""


class OutputFolderError(RuntimeError):
    """An output folder is inside a data folder, or another live run is writing to it."""


def _bundle_name(folder: Path) -> str | None:
    meta = folder / "configs" / "metadata.json"
    if not meta.is_file():
        return None
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("name")
    except (OSError, json.JSONDecodeError):
        return None


def _monai_run_argv() -> list[str] | None:
    """The arguments after ``run`` when this process is ``python -m monai.bundle run`` (also under torchrun), else None."""
    main = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    if (main.parent.parent.name, main.parent.name) != ("monai", "bundle") or sys.argv[1:2] != ["run"]:
        return None
    return sys.argv[2:]


def _run_config_files() -> list[str]:
    """The ``--config_file`` files of this process's ``python -m monai.bundle run`` command line (else none)."""
    argv = _monai_run_argv()
    if argv is None:
        return []
    try:
        return parse_overrides(argv)[0]
    except (ValueError, OSError):
        return []


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
    candidates = [Path(f).resolve().parent.parent for f in _run_config_files()]
    candidates += [Path(p) for p in sys.path[:4] if p] + [Path.cwd()]
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


# ---------------------------------------------------------------------------------------------- overrides


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
        argv = _monai_run_argv()
        if argv is None:
            return
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
            f"the keys are those of {', '.join(Path(f).name for f in files)} (nested keys with '#', e.g. train#dataloader#num_workers)."
        )


# ---------------------------------------------------------------------------------------------- data and outputs


def check_dataset_dir(dataset_dir: str | os.PathLike | None, key: str = "dataset_dir", required: bool = False) -> str | None:
    """A clear error when the data folder named by config key ``key`` does not exist.

    Args:
        dataset_dir: the folder (None: not set).
        key: the config key it came from (named in the message).
        required: refuse None as well.

    Returns:
        the absolute folder, or None when not set and not required.

    Raises:
        FileNotFoundError: one line naming the key, the folder and what to pass.
    """
    if dataset_dir is None or f"{dataset_dir}" == "":
        if required:
            raise FileNotFoundError(f"config key '{key}' is not set; pass --{key} /path/to/your/data.")
        return None
    folder = Path(dataset_dir).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{key} '{folder}' does not exist or is not a folder; pass --{key} with your data folder.")
    return str(folder.resolve())


def _is_rank0() -> bool:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def acquire_lock(folder: str | os.PathLike) -> Path:
    """Take the run lock of an output folder (``folder/.unimedi_run.lock`` holding host and PID).

    The lock is created atomically (``O_CREAT | O_EXCL``). A lock left by a process that no longer
    runs on this host (a killed run) is taken over with a warning. The lock is removed when this
    process exits (or by :func:`release_locks`).

    Args:
        folder: the output folder (created if needed).

    Returns:
        the lock file.

    Raises:
        OutputFolderError: another live process holds the lock (its PID and host named).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_FILENAME
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = json.loads(lock.read_text(encoding="utf-8"))
                pid, host = int(owner["pid"]), str(owner["host"])
            except (OSError, ValueError, KeyError, TypeError):
                pid, host = -1, me["host"]  # unreadable (a crash while writing it): stale
            if pid == me["pid"] and host == me["host"]:
                break
            if host != me["host"] or _pid_alive(pid):
                raise OutputFolderError(
                    f"output folder '{folder}' is in use by another run (PID {pid} on {host}, lock {lock}); "
                    "wait for it to finish or pass another --bundle_root (delete the lock only if that run is gone)."
                ) from None
            logger.warning("taking over the stale lock %s of process %d, which no longer runs", lock, pid)
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(me, f)
        break
    else:
        raise OutputFolderError(f"cannot take the lock {lock}; another run keeps creating it.")
    if lock not in _held_locks:
        if not _held_locks:
            atexit.register(release_locks)
        _held_locks.append(lock)
    return lock


def release_locks() -> None:
    """Remove the locks this process holds (registered with ``atexit``; safe to call twice)."""
    while _held_locks:
        lock = _held_locks.pop()
        try:
            if int(json.loads(lock.read_text(encoding="utf-8"))["pid"]) == os.getpid():
                lock.unlink()
        except (OSError, ValueError, KeyError, TypeError):
            pass


def guard_outputs(
    outputs: Mapping[str, str | os.PathLike | None],
    data_dirs: Mapping[str, str | os.PathLike | None] | None = None,
    lock: bool = True,
) -> None:
    """Refuse output folders inside the data folders and lock every output folder for this run.

    Call it in ``initialize`` of a bundle, after :func:`check_overrides`::

        - "$unimedi_monai.bundle.guard_outputs({'ckpt_dir': @ckpt_dir, 'log_dir': @log_dir, 'eval_dir': @eval_dir},
                                               {'dataset_dir': @dataset_dir})"

    Only rank 0 of a distributed run takes the locks (the other ranks do not write).

    Args:
        outputs: config key -> output folder (None entries are ignored).
        data_dirs: config key -> data folder the run reads (None entries are ignored); a data folder
            that is set must exist.
        lock: take the run lock of each output folder (:func:`acquire_lock`).

    Raises:
        FileNotFoundError: a data folder does not exist (names its key).
        OutputFolderError: an output folder is (inside) a data folder, or is locked by a live run.
    """
    data = {k: check_dataset_dir(v, key=k) for k, v in (data_dirs or {}).items()}
    for out_key, out in outputs.items():
        if out is None:
            continue
        out_path = Path(out).expanduser().resolve()
        for data_key, folder in data.items():
            if folder is not None and out_path.is_relative_to(folder):
                raise OutputFolderError(
                    f"output folder {out_key} '{out_path}' is inside {data_key} '{folder}'; a run never writes into "
                    f"the data folder: pass --bundle_root (or --{out_key}) outside it."
                )
    if lock and _is_rank0():
        taken: list[Path] = []
        try:
            for out in outputs.values():
                if out is not None:
                    taken.append(acquire_lock(out))
        except OutputFolderError:
            for path in taken:  # all or nothing
                if path in _held_locks:
                    _held_locks.remove(path)
                    path.unlink(missing_ok=True)
            raise
