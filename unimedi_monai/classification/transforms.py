# SPDX-License-Identifier: Apache-2.0
"""Pre-processing of labelled X-rays for classification: the X-ray pipeline plus the label as a tensor."""

from __future__ import annotations

import torch
from monai.transforms import EnsureTyped

from unimedi_monai.data.transforms import PipelineCompose, xray_transforms

__all__ = ["classification_transforms"]


def classification_transforms(image_size: int = 224, train: bool = False, multi_label: bool = False) -> PipelineCompose:
    """:func:`~unimedi_monai.data.xray_transforms` followed by the ``label`` as a tensor (when present).

    Args:
        image_size: side of the square network input (224).
        train: append the random augmentation (fine-tuning); off for feature extraction and evaluation.
        multi_label: ``label`` is a multi-hot list (float32 tensor, ``-1`` = ignored) instead of a
            class index (int64 scalar).

    Returns:
        a :class:`~unimedi_monai.data.transforms.PipelineCompose` mapping ``{"image": path, "label": ...}``
        to ``{"image": (1, image_size, image_size) float32, "label": tensor}``.

    Example::

        tf = classification_transforms(224, train=False)
        tf({"image": "cxr.png", "label": 2})["label"]   # tensor(2)
    """
    dtype = torch.float32 if multi_label else torch.int64
    label = EnsureTyped(keys="label", data_type="tensor", dtype=dtype, track_meta=False, allow_missing_keys=True)
    return PipelineCompose(list(xray_transforms(image_size=image_size, train=train).transforms) + [label])
