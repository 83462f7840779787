# SPDX-License-Identifier: Apache-2.0
"""Atomic file writes: a half-written file never appears under its final name.

Files get the permissions of a plain ``open()`` (``0o666`` minus the umask), not ``mkstemp``'s ``0o600``,
so another account (a MONAI Label service, say) can read what a run wrote. A failed write (full disk,
read-only folder) raises :class:`OSError` naming the file and, when the folder was checked by
:func:`unimedi_monai.bundle.guard_outputs`, the config key it came from.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

__all__ = [
    "TMP_SUFFIX",
    "atomic_open",
    "write_json_atomic",
    "register_output_folder",
    "describe_target",
    "file_mode",
    "remove_stale_temporaries",
]

#: suffix of the temporary files :func:`atomic_open` writes (``.<name>.<random>.tmp``).
TMP_SUFFIX = ".tmp"

logger = logging.getLogger(__name__)
#: the names mkstemp gives the temporaries of atomic_open and of the segmentation writer.
_TMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.nii(\.gz)?)?$")
_output_folders: dict[Path, str] = {}
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO}


def register_output_folder(folder: str | os.PathLike, key: str) -> None:
    """Remember that ``folder`` is the output folder of config key ``key`` (named in write errors)."""
    _output_folders[Path(folder).resolve()] = key


def describe_target(path: str | os.PathLike) -> str:
    """``"'path'"``, with ``" (config key 'ckpt_dir')"`` when it lies in a registered output folder."""
    target = Path(path).resolve()
    keys = [(len(f.parts), k) for f, k in _output_folders.items() if target.is_relative_to(f)]
    return f"'{target}'" + (f" (config key '{max(keys)[1]}')" if keys else "")


def file_mode() -> int:
    """``0o666`` minus the process umask: the mode a plain ``open(path, "w")`` gives a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (``.<name>.*.tmp``) an interrupted :func:`atomic_open` left in ``folder``.

    Call it only while holding the folder's run lock (no live writer then).

    Returns:
        the removed files.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if _TMP_NAME.match(p.name) and p.is_file() and not p.is_symlink():
            size = p.stat().st_size
            p.unlink(missing_ok=True)
            removed.append(p)
            logger.warning("removed %s (%d bytes), left by an interrupted write", p, size)
    return removed


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on success it is fsynced and renamed to ``path``.

    On an exception the temporary file is removed and ``path`` keeps its previous content. The new
    file gets the umask's permissions (:func:`file_mode`).

    Args:
        path: the final file; parent folders are created.
        mode: ``"wb"`` or ``"w"``.
        encoding: text encoding for ``"w"`` (UTF-8 by default).

    Raises:
        OSError: the folder cannot be written or the disk is full, naming the file (and its config key).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes only, mode must be 'w' or 'wb', got {mode!r}.")
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, mode, encoding=(encoding or "utf-8") if mode == "w" else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if (isinstance(err, OSError) and err.errno in _WRITE_ERRNOS) or _is_write_failure(err):
            reason = (
                err.strerror
                if isinstance(err, OSError) and err.strerror
                else str(err).splitlines()[0]
                if str(err)
                else type(err).__name__
            )
            raise OSError(
                getattr(err, "errno", None) or 0,
                f"cannot write {describe_target(path)}: {reason}; free disk space or choose a writable folder",
            ) from err
        raise


def _is_write_failure(err: BaseException) -> bool:
    """torch.save reports a full disk as ``RuntimeError: ... enforce fail ... PytorchStreamWriter``."""
    text = str(err)
    return isinstance(err, RuntimeError) and (
        "PytorchStreamWriter" in text or "enforce fail" in text or "file write failed" in text
    )


def write_json_atomic(data: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``data`` as indented, key-sorted JSON atomically."""
    with atomic_open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    return Path(path)
