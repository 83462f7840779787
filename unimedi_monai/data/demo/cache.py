# SPDX-License-Identifier: Apache-2.0
"""Generate-once folders: a generated data set is built in a temporary sibling folder and renamed into place.

Every built-in demo (the pre-training demo of :mod:`unimedi_monai.data.demo`, the lesion X-rays of
:func:`unimedi_monai.segmentation.generate_lesion_demo`, the organ phantoms of
:func:`unimedi_monai.segmentation.generate_organ_phantoms`) is written this way, so an interrupted run
never leaves a half data set that looks complete, and several processes (e.g. the ranks of one
run) that generate the same folder at once end with one complete copy. Each generator decides for
itself when an existing folder already holds what it would write (its ``is_complete`` check).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["build_folder", "stored_parameters"]


def build_folder(
    out_dir: Path,
    write: Callable[[Path], None],
    is_complete: Callable[[Path], bool],
    replace: bool = False,
    force: bool = False,
) -> None:
    """Run ``write`` on a new temporary sibling of ``out_dir``, then rename that folder to ``out_dir``.

    Args:
        out_dir: the destination folder (absolute); its parent is created when needed.
        write: fills the folder it is given (the temporary one) completely.
        is_complete: whether a folder already holds the complete result (called on ``out_dir`` after
            ``write``: another process may have finished the same folder meanwhile, and that copy is kept,
            since it may be in use).
        replace: ``out_dir`` may be non-empty; its old contents are moved aside and deleted after the
            rename. Otherwise it must be absent or empty (or complete, see above).
        force: replace ``out_dir`` even when it is already complete (requires ``replace``).

    Raises:
        OSError: the rename failed for another reason than a concurrent complete copy (the temporary
            folder is removed; ``out_dir`` is left as it was).
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        write(tmp)
        if not force and is_complete(out_dir):
            return
        old = None
        if out_dir.exists():
            if replace and any(out_dir.iterdir()):
                old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}-{time.monotonic_ns()}")
                os.replace(out_dir, old)
            else:
                try:
                    out_dir.rmdir()  # empty folder: make room for the rename
                except OSError:
                    pass
        try:
            os.replace(tmp, out_dir)
        except OSError as exc:
            if old is not None:
                os.replace(old, out_dir)  # put the old contents back
                old = None
            # another process (e.g. another rank) may have finished the same folder first
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and is_complete(out_dir):
                return
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def stored_parameters(json_path: Path, key: str) -> Any:
    """The generator arguments a demo datalist records under ``key``; None when the file is absent or unreadable."""
    try:
        return json.loads(json_path.read_text(encoding="utf-8")).get(key)
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
