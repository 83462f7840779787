# SPDX-License-Identifier: Apache-2.0
"""The one check of what a run reads and writes, before it does any work: :func:`guard_outputs`,
:func:`check_dataset_dir`."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from unimedi_monai.bundle.run_lock import LOCK_FILENAME, OutputFolderError, _held_locks, acquire_lock
from unimedi_monai.io.rank import is_rank0

__all__ = ["OutputFolderError", "check_dataset_dir", "guard_outputs"]


def check_dataset_dir(
    dataset_dir: str | os.PathLike | None, key: str = "dataset_dir", required: bool = False
) -> str | None:
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
        raise FileNotFoundError(
            f"{key} '{folder}' does not exist or is not a folder; pass --{key} with your data folder."
        )
    return str(folder.resolve())


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
            raise OutputFolderError(
                f"two outputs of this run would be written to '{path}' (outputs {seen[path]} and {i}); give the inputs "
                "distinct names."
            )
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
