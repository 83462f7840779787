# SPDX-License-Identifier: Apache-2.0
"""A refused ``monai.bundle run`` ends with one line saying why (:func:`install_excepthook`)."""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["FULL_TRACEBACK_ENV", "install_excepthook", "root_error"]

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
