# SPDX-License-Identifier: Apache-2.0
"""Reading a JSON file a user wrote (a datalist, a bundle's metadata) with one-line errors naming the file.

The one reader of the package: :func:`read_json_object`. Writing goes through
:func:`unimedi_monai.io.atomic_io.write_json_atomic`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["read_json_object"]


def read_json_object(
    path: str | os.PathLike, what: str = "JSON file", expected: str = "", missing: str | None = None
) -> dict[str, Any]:
    """The top-level JSON object of ``path``, or a one-line error naming the file (and the line of a syntax error).

    Args:
        path: the file.
        what: what the file is, starting the messages (``"datalist"`` gives
            ``datalist /x/d.json is not valid JSON: ...``).
        expected: what the object should hold, for the message when the top level is not an object
            (e.g. ``" with a 'training' list"``; appended after ``must hold a JSON object``).
        missing: the message when ``path`` is not a file (default: ``<what> <path> does not exist.``).

    Returns:
        the parsed object.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: not UTF-8, not valid JSON (line and column named), or its top level is not an object.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(missing or f"{what} {path} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{what} {path} is not valid UTF-8 ({e}); save it as UTF-8 JSON.") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{what} {path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}; fix the file."
        ) from e
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path} must hold a JSON object{expected}, got a JSON {type(data).__name__}.")
    return data
