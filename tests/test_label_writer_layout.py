"""``mask_2d_for_label_writer``: a 2D mask in the project's ``(rows, columns)`` order, laid out for MONAI Label's
writer.

MONAI Label 0.8.5's ``Writer`` (``write_itk``) transposes a 2D array and hands it to ITK, whose first
array axis becomes the picture's rows; so the laid-out array, transposed, must be the input mask.
The same path through the real writer and server is ``tests/label/test_label_server.py``'s
``rsna_segmentation`` case.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from unimedi_monai.label.writer_layout import mask_2d_for_label_writer


def _asymmetric_mask() -> np.ndarray:
    mask = np.zeros((1, 5, 7), dtype=np.float32)  # 5 rows, 7 columns
    mask[0, 0, :3] = 1  # along the first row, from the left
    mask[0, 4, 6] = 2  # the bottom-right pixel, another class
    return mask


def test_layout_is_transposed_unsigned_class_ids():
    mask = _asymmetric_mask()
    out = mask_2d_for_label_writer(MetaTensor(torch.from_numpy(mask)))
    assert out.shape == (7, 5) and out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out.T, mask[0].astype(np.uint8))  # what the writer's transpose turns back into rows
    np.testing.assert_array_equal(mask_2d_for_label_writer(mask[0]), out)  # (H, W) without a channel: the same


def test_many_classes_use_16_bits():
    out = mask_2d_for_label_writer(np.full((2, 3), 300.0))
    assert out.dtype == np.uint16 and out.shape == (3, 2) and int(out.max()) == 300


@pytest.mark.parametrize(
    "bad, words",
    [
        (np.zeros((2, 5, 7)), "shape (2, 5, 7)"),
        (np.zeros((1, 2, 5, 7)), "shape (1, 2, 5, 7)"),
        (np.full((5, 7), 0.5), "class ids"),
        (-np.ones((5, 7)), "class ids"),
    ],
)
def test_refuses_what_is_not_one_channel_of_class_ids(bad, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        mask_2d_for_label_writer(bad)
