# SPDX-License-Identifier: Apache-2.0
"""What an image's MONAI metadata says about where it came from, for the messages that name the file."""

from __future__ import annotations

from typing import Any

__all__ = ["UNKNOWN_SOURCE", "source_filename"]

#: ``monai.utils.ImageMetaKey.FILENAME_OR_OBJ``, spelled out so that this module imports nothing.
_FILENAME_KEY = "filename_or_obj"
#: what :func:`source_filename` returns for an image without a recorded source file.
UNKNOWN_SOURCE = "<unknown file>"


def source_filename(img: Any) -> str:
    """The source file recorded in an image's metadata (a ``MetaTensor``'s ``meta``), else :data:`UNKNOWN_SOURCE`.

    Args:
        img: a ``MetaTensor`` or any object with a ``meta`` mapping (other objects give the default).
    """
    meta = getattr(img, "meta", None) or {}
    name = meta.get(_FILENAME_KEY) if hasattr(meta, "get") else None
    return f"{name}" if name else UNKNOWN_SOURCE
