# SPDX-License-Identifier: Apache-2.0
"""PipelineCompose: the pipelines' Compose, raising the failing transform's own error.

Kept beside MONAI's ``Compose`` (which it subclasses, changing nothing else) because ``Compose`` wraps
every error in ``RuntimeError("applying transform ...")``, so the first line a user sees would not name
the bad file or value.
"""

from __future__ import annotations

from monai.transforms import Compose

__all__ = ["PipelineCompose", "unwrap_transform_error"]


def unwrap_transform_error(error: BaseException) -> BaseException:
    """
    Return the error raised inside a transform, following the ``RuntimeError("applying transform ...")``
    wrappers that :py:func:`monai.transforms.apply_transform` puts around it.

    Args:
        error: an exception raised by a MONAI transform or Compose.

    Returns:
        the innermost wrapped exception, or ``error`` itself when it is not a wrapper.
    """
    seen = {id(error)}
    while (
        type(error) is RuntimeError
        and str(error).startswith("applying transform")
        and error.__cause__ is not None
        and id(error.__cause__) not in seen
    ):
        error = error.__cause__
        seen.add(id(error))
    return error


class PipelineCompose(Compose):
    """
    :py:class:`monai.transforms.Compose` that re-raises the original error of a failing transform (e.g. the
    :py:class:`FileNotFoundError` or :py:class:`ValueError` naming the file) instead of MONAI's generic
    ``RuntimeError("applying transform <object>")`` wrapper, so the first line of the error says what is wrong.
    Everything else (caching up to the first random transform, ``start``/``end``, random state) is unchanged.
    """

    def __call__(self, input_, start=0, end=None, threading=False, lazy: bool | None = None):  # type: ignore[override]
        try:
            return super().__call__(input_, start=start, end=end, threading=threading, lazy=lazy)
        except RuntimeError as e:
            root = unwrap_transform_error(e)
            if root is e:
                raise
            raise root from None
