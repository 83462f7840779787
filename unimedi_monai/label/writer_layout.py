# SPDX-License-Identifier: Apache-2.0
"""The layout MONAI Label 0.8.5's result writer needs for 2D masks (import-light: numpy only, no monailabel)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["mask_2d_for_label_writer"]


def mask_2d_for_label_writer(pred: Any) -> np.ndarray:
    """A 2D class-id prediction in the project's ``(rows, columns)`` order, laid out for MONAI Label's writer.

    The project's X-ray readers keep arrays as ``(H, W)`` (rows first, as in the picture), while
    MONAI Label 0.8.5's ``Writer`` takes MONAI's default 2D layout ``(W, H)`` and transposes before
    writing; it also writes the array's dtype, and PNG takes only 8- or 16-bit unsigned integers
    (a float mask fails with ``PNG supports unsigned char and unsigned short``). So the channel is
    dropped, the array transposed to ``(W, H)`` and the class ids cast to ``uint8`` (``uint16`` above 255).

    Args:
        pred: ``(1, H, W)`` or ``(H, W)`` class ids (tensor or array).

    Returns:
        the ``(W, H)`` unsigned-integer array; the written picture has the input's ``H`` rows and ``W`` columns.

    Raises:
        ValueError: not one 2D channel, or ids that are negative or not whole numbers.
    """
    array = np.asarray(pred.detach().cpu() if hasattr(pred, "detach") else pred)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(
            f"a 2D infer task returns one (H, W) class-id channel; got a prediction of shape {array.shape}."
        )
    if array.size and (array.min() < 0 or not np.array_equal(array, np.round(array))):
        raise ValueError(
            "a 2D infer task returns class ids (whole numbers >= 0); the bundle's postprocessing must end with argmax."
        )
    dtype = np.uint8 if not array.size or array.max() < 256 else np.uint16
    return np.ascontiguousarray(array.T.astype(dtype))
