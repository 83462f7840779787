# SPDX-License-Identifier: Apache-2.0
"""The run lock of an output folder: two runs never write into the same one (:func:`acquire_lock`)."""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import socket
from pathlib import Path

__all__ = ["LOCK_FILENAME", "OutputFolderError", "acquire_lock", "release_locks"]

logger = logging.getLogger(__name__)

#: name of the lock file written in each guarded output folder.
LOCK_FILENAME = ".unimedi_run.lock"

_held_locks: dict[Path, int] = {}  # lock file -> the open descriptor holding its flock


class OutputFolderError(RuntimeError):
    """An output folder is inside a data folder, or another live run is writing to it."""


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
            logger.warning(
                "taking over the stale lock %s of process %d on %s, which no longer holds it", lock, pid, host
            )
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
