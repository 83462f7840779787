"""Atomic file writes: a half-written file never appears under its final name."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator, Mapping

__all__ = ["atomic_open", "write_json_atomic"]


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on success it is fsynced and renamed to ``path``.

    On an exception the temporary file is removed and ``path`` keeps its previous content.

    Args:
        path: the final file; parent folders are created.
        mode: ``"wb"`` or ``"w"``.
        encoding: text encoding for ``"w"`` (UTF-8 by default).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes only, mode must be 'w' or 'wb', got {mode!r}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=(encoding or "utf-8") if mode == "w" else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(data: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``data`` as indented, key-sorted JSON atomically."""
    with atomic_open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    return Path(path)
