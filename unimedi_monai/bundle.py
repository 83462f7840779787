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
import fcntl
import json
import logging
import math
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from unimedi_monai.io.rank import is_rank0

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
    "check_values",
    "NUMERIC_KEYS",
    "FULL_TRACEBACK_ENV",
    "root_error",
    "install_excepthook",
    "guard_outputs",
    "acquire_lock",
    "release_locks",
    "output_stem",
    "unique_output_stems",
    "per_input_outputs",
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

_held_locks: dict[Path, int] = {}  # lock file -> the open descriptor holding its flock


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
        argv = _monai_run_argv()
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
            f"the keys are those of {', '.join(Path(f).name for f in files)} (nested keys with '#', e.g. train#dataloader#num_workers)."
        )


# ---------------------------------------------------------------------------------------------- errors

#: environment variable: set to 1 to see the full traceback of a refused run instead of its one-line reason.
FULL_TRACEBACK_ENV = "UNIMEDI_FULL_TRACEBACK"

#: messages of the exceptions MONAI and ignite wrap the real one in.
_WRAPPERS = ("Failed to evaluate", "Failed to instantiate", "applying transform")
#: exception types whose message is the whole story (a refusal); other types keep their traceback.
_REFUSALS = (ValueError, TypeError, LookupError, OSError, RuntimeError, FloatingPointError)


def root_error(error: BaseException) -> BaseException:
    """The exception a bundle run really failed with, following MONAI's ``Failed to evaluate ...`` /
    ``Failed to instantiate ...`` and the transforms' ``applying transform ...`` wrappers.

    Args:
        error: the exception that ended the run.

    Returns:
        the innermost wrapped exception, or ``error`` itself.
    """
    seen = {id(error)}
    while (
        type(error) is RuntimeError
        and str(error).lstrip().startswith(_WRAPPERS)
        and error.__cause__ is not None
        and id(error.__cause__) not in seen
    ):
        error = error.__cause__
        seen.add(id(error))
    return error


def _message(error: BaseException) -> str:
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(f"{text}".split()) or type(error).__name__


def _excepthook(kind: type, error: BaseException, tb: Any) -> None:
    """Print a refused run's reason as one line (the last one); the full traceback with UNIMEDI_FULL_TRACEBACK=1."""
    root = root_error(error)
    if os.environ.get(FULL_TRACEBACK_ENV, "") not in ("", "0") or not isinstance(root, _REFUSALS):
        sys.__excepthook__(kind, error, tb)
        return
    sys.stderr.flush()
    print(f"{type(root).__name__}: {_message(root)}", file=sys.stderr, flush=True)


def install_excepthook() -> None:
    """Make a refused ``monai.bundle run`` end with our one-line reason (see :data:`FULL_TRACEBACK_ENV`).

    Called by :func:`check_overrides`, the first ``initialize`` step of every bundle, when the process was
    started by ``python -m monai.bundle run``.
    """
    sys.excepthook = _excepthook


# ---------------------------------------------------------------------------------------------- values

#: range of every numeric key the bundles declare: (kind, low, high, None allowed); bounds inclusive,
#: ``"float>"`` / ``"<float"`` mark exclusive ones.
NUMERIC_KEYS: dict[str, tuple[str, float | None, float | None, bool]] = {
    "batch_size": ("int", 1, None, False),
    "max_epochs": ("int", 1, None, False),
    "checkpoint_interval": ("int", 0, None, False),
    "num_workers": ("int", 0, None, False),
    "val_interval": ("int", 1, None, False),
    "seed": ("int", 0, None, False),
    "fraction_seed": ("int", 0, None, False),
    "num_samples": ("int", 1, None, False),
    "sw_batch_size": ("int", 1, None, False),
    "slice_top_k": ("int", 1, None, False),
    "text_max_length": ("int", 1, None, False),
    "text_trainable_layers": ("int", -1, None, False),
    "feature_size": ("int", 1, None, False),
    "decoder_channels": ("int", 1, None, False),
    "num_classes": ("int", 2, None, False),
    "warmup_epochs": ("int", 0, None, False),
    "mask_warmup_epochs": ("int", 0, None, False),
    "eval_slice_k": ("int", 1, None, False),
    "eval_tolerance": ("int", 0, None, False),
    "tolerance": ("int", 0, None, False),
    "top_k": ("int", 1, None, True),
    "max_cases": ("int", 1, None, True),
    "window_slices": ("int", 1, None, True),
    "num_plots": ("int", 0, None, False),
    "image_size": ("int", 1, None, False),
    "epochs": ("int", 1, None, False),
    "feature_batch_size": ("int", 1, None, False),
    "data_pct": ("float>", 0, 1, False),
    "lr": ("float>", 0, None, False),
    "min_lr": ("float", 0, None, False),
    "weight_decay": ("float", 0, None, False),
    "weight_decay_end": ("float", 0, None, False),
    "text_lr_scale": ("float", 0, None, False),
    "encoder_lr_scale": ("float", 0, None, False),
    "grad_clip": ("float>", 0, None, True),
    "teacher_momentum": ("float", 0, 1, False),
    "ct_fraction": ("float", 0, 1, False),
    "mask_ratio": ("float<", 0, 1, False),
    "label_fraction": ("float>", 0, 1, False),
    "cache_rate": ("float", 0, 1, False),
    "overlap": ("float<", 0, 1, False),
    "top_fraction": ("float>", 0, 1, True),
    "val_fraction": ("float<", 0, 1, False),
    "test_fraction": ("float<", 0, 1, False),
    "pos": ("float", 0, None, False),
    "neg": ("float", 0, None, False),
    "min_diameter_mm": ("float", 0, None, False),
}


def check_values(values: Mapping[str, Any]) -> None:
    """Refuse a numeric config key with a value of the wrong type or out of range, naming the key.

    ``--batch_size abc``, ``--max_epochs -1`` or ``--checkpoint_interval -5`` would otherwise fail deep
    inside the run, or not at all. Call it in ``initialize``, after :func:`check_overrides`::

        - "$unimedi_monai.bundle.check_values({'batch_size': @batch_size, 'max_epochs': @max_epochs})"

    The ranges are those of :data:`NUMERIC_KEYS` (``checkpoint_interval: 0`` means a checkpoint at the
    end only).

    Args:
        values: config key -> its value in this run.

    Raises:
        ValueError: one line naming the key, the value and the accepted range.
    """
    for key, value in values.items():
        key = key.replace("::", "#")  # MONAI may hand nested ids over with either separator
        name = key.rpartition("#")[2]
        if name not in NUMERIC_KEYS:
            raise KeyError(f"check_values: no range is declared for config key '{key}' (add it to NUMERIC_KEYS).")
        kind, low, high, nullable = NUMERIC_KEYS[name]
        if value is None and nullable:
            continue
        is_int = isinstance(value, int) and not isinstance(value, bool)
        number = is_int or (isinstance(value, float) and kind != "int")
        if kind != "int" and number and not math.isfinite(float(value)):
            number = False
        lo_ok = low is None or (value > low if kind == "float>" else value >= low) if number else False
        hi_ok = high is None or (value < high if kind == "float<" else value <= high) if number else False
        if not (number and lo_ok and hi_ok):
            what = "an integer" if kind == "int" else "a number"
            bounds = []
            if low is not None:
                bounds.append(f"{'>' if kind == 'float>' else '>='} {low:g}")
            if high is not None:
                bounds.append(f"{'<' if kind == 'float<' else '<='} {high:g}")
            null = " (or null)" if nullable else ""
            raise ValueError(f"config key '{key}' must be {what} {' and '.join(bounds)}{null}, got {value!r} (command line --{key}).")


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


def _read_owner(fd: int) -> tuple[int, str]:
    """``(pid, host)`` written in an open lock file; ``(-1, "?")`` when empty or unreadable."""
    try:
        owner = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
        return int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return -1, "?"


def acquire_lock(folder: str | os.PathLike) -> Path:
    """Take the run lock of an output folder: ``fcntl.flock`` on ``folder/.unimedi_run.lock``, held until exit.

    The lock is the kernel's, on the open file: it is atomic (two processes can never both hold it)
    and it dies with its process, so a killed run leaves no live lock behind; the next run takes the
    file over (logged as a stale lock). The file holds the holder's host and PID, for the message a
    second run gets. The file is removed when this process exits normally (or by :func:`release_locks`).
    Once the lock is taken, the temporaries of writes a killed run left in the folder
    (``.checkpoint_*.pt.*.tmp``, ``.model.pt.*.tmp``) are removed, each one logged.

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
    if lock in _held_locks:
        return lock
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(20):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)  # the umask applies
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by a live process
            pid, host = _read_owner(fd)
            os.close(fd)
            raise OutputFolderError(
                f"output folder '{folder}' is in use by another run (PID {pid} on {host}, lock {lock}); "
                "wait for it to finish or pass another --bundle_root."
            ) from None
        try:  # the file locked must still be the one under the name (a finishing holder removes it)
            current = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            current = False
        if not current:
            os.close(fd)
            continue
        pid, host = _read_owner(fd)
        if pid not in (-1, me["pid"]) or host not in ("?", me["host"]):
            logger.warning("taking over the stale lock %s of process %d on %s, which no longer holds it", lock, pid, host)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode("utf-8"), 0)
        if not _held_locks:
            atexit.register(release_locks)
        _held_locks[lock] = fd
        from unimedi_monai.io.atomic_io import remove_stale_temporaries

        remove_stale_temporaries(folder)  # no live run writes here now: a killed write's temporaries go
        return lock
    raise OutputFolderError(f"cannot take the lock {lock}; another run keeps creating and removing it.")


def release_locks() -> None:
    """Remove and release the locks this process holds (registered with ``atexit``; safe to call twice)."""
    while _held_locks:
        lock, fd = _held_locks.popitem()
        try:
            lock.unlink(missing_ok=True)  # while still locked: a waiting run then sees a new file
        except OSError:
            pass
        os.close(fd)


def _paths(value: Any) -> list[Path]:
    """Resolved paths of a path, a list of paths, a mapping's keys or None."""
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        value = [value]
    return [Path(os.fspath(v)).expanduser().resolve() for v in value if v is not None and f"{v}" != ""]


def _check_writable(key: str, folder: Path) -> None:
    """Create ``folder`` and write a probe file in it; OutputFolderError naming ``key`` when that fails."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OutputFolderError(
            f"output folder {key} '{folder}' is not writable ({err.strerror or err}); "
            f"pass --{key} (or --bundle_root) with a folder you can write to."
        ) from None


def guard_outputs(
    outputs: Mapping[str, str | os.PathLike | None],
    data_dirs: Mapping[str, str | os.PathLike | None] | None = None,
    lock: bool = True,
    inputs: Mapping[str, Any] | None = None,
    files: Any = None,
) -> None:
    """The one check of what a run will write, before it does any work.

    Call it in ``initialize`` of a bundle, after :func:`check_overrides`::

        - "$unimedi_monai.bundle.guard_outputs({'ckpt_dir': @ckpt_dir, 'log_dir': @log_dir, 'eval_dir': @eval_dir},
                                               {'dataset_dir': @dataset_dir})"

    It refuses: an output folder inside a data folder; an output file that is one of the inputs (or
    lies inside an input folder, e.g. a DICOM series); two outputs with one path; an output folder that
    cannot be created or written to. Then it locks every output folder (:func:`acquire_lock`; only
    rank 0 of a distributed run) so that two runs never write into the same one. An output folder may
    hold inputs (``--output_dir`` the input's folder) as long as the output names differ from them.

    Args:
        outputs: config key -> output folder (None entries are ignored).
        data_dirs: config key -> data folder the run reads (None entries are ignored); a data folder
            that is set must exist.
        lock: take the run lock of each output folder (:func:`acquire_lock`).
        inputs: config key -> an input path or a list of them (files or DICOM series folders).
        files: the output files the run will write (a list, or a mapping input -> output file, e.g. from
            :func:`per_input_outputs`).

    Raises:
        FileNotFoundError: a data folder does not exist (names its key).
        OutputFolderError: one line naming the config key and the path that is refused.
    """
    from unimedi_monai.io.atomic_io import register_output_folder

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
    written = _paths(files.values() if isinstance(files, Mapping) else files)
    sources = {p: key for key, value in (inputs or {}).items() for p in _paths(value)}
    seen: dict[Path, int] = {}
    for i, path in enumerate(written):
        if path in seen:
            raise OutputFolderError(f"two outputs of this run would be written to '{path}' (outputs {seen[path]} and {i}); give the inputs distinct names.")
        seen[path] = i
        for source, key in sources.items():
            if path == source or (source.is_dir() and path.is_relative_to(source)):
                what = "is the input" if path == source else "is inside the input folder"
                raise OutputFolderError(
                    f"output '{path}' {what} '{source}' (config key '{key}'); a run never overwrites its input: "
                    "pass another --output_dir or a non-empty --output_postfix."
                )
    for out_key, out in outputs.items():
        if out is not None and is_rank0():
            folder = Path(out).expanduser().resolve()
            _check_writable(out_key, folder)
            register_output_folder(folder, out_key)
    if lock and is_rank0():
        taken: list[Path] = []
        try:
            for out in outputs.values():
                if out is not None:
                    lock_path = Path(out) / LOCK_FILENAME
                    fresh = lock_path not in _held_locks
                    acquire_lock(out)
                    if fresh:
                        taken.append(lock_path)
        except OutputFolderError:
            for path in taken:  # all or nothing
                fd = _held_locks.pop(path, None)
                if fd is not None:
                    path.unlink(missing_ok=True)
                    os.close(fd)
            raise


# ---------------------------------------------------------------------------------------------- output names

#: file suffixes :func:`output_stem` strips (longest first).
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".bmp")


def output_stem(image: str | os.PathLike) -> str:
    """File-name stem for the outputs of ``image`` (``ct.nii.gz`` -> ``ct``; a DICOM folder -> its name)."""
    name = Path(os.fspath(image).rstrip("/\\")).name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "image"
    return name or "image"


def unique_output_stems(images: Sequence[str | os.PathLike]) -> list[str]:
    """:func:`output_stem` of each input, made unique: inputs sharing a name get their parent folders'
    names in front (``a/ct.nii.gz``, ``b/ct.nii.gz`` -> ``a_ct``, ``b_ct``), a numbered suffix as a last resort.

    Args:
        images: the input files or folders, in order.

    Returns:
        one stem per input, in order, all different.
    """
    paths = [Path(os.fspath(p)).expanduser().resolve() for p in images]
    stems = [output_stem(p) for p in paths]
    depth = 0
    while len(set(stems)) < len(stems) and depth < 8:
        depth += 1
        counts = {s: stems.count(s) for s in stems}
        stems = [
            "_".join([*[q.name for q in reversed(p.parents[:depth]) if q.name], output_stem(p)]) if counts[s] > 1 else s
            for p, s in zip(paths, stems)
        ]
    if len(set(stems)) < len(stems):  # the same folder: number them
        stems = [f"{output_stem(p)}_{i}" for i, p in enumerate(paths)]
    renamed = sum(a != b for a, b in zip(stems, (output_stem(p) for p in paths)))
    if renamed:
        logger.warning("%d inputs share a file name; their outputs are named after their folders too (e.g. %s)", renamed, stems[0])
    return stems


def per_input_outputs(images: Sequence[str | os.PathLike], output_dir: str | os.PathLike, suffix: str) -> dict[str, str]:
    """``{input: output_dir/<unique stem><suffix>}`` for a run writing one file per input.

    Pass the result to :func:`guard_outputs` (``files=``) to refuse an output that would overwrite an input.

    Args:
        images: the inputs (files or DICOM series folders).
        output_dir: the output folder.
        suffix: appended to the stem, e.g. ``"_seg.nii.gz"``.
    """
    folder = Path(output_dir).expanduser().resolve()
    resolved = [str(Path(os.fspath(p)).expanduser().resolve()) for p in images]
    return {src: str(folder / f"{stem}{suffix}") for src, stem in zip(resolved, unique_output_stems(resolved))}
