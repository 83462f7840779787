# SPDX-License-Identifier: Apache-2.0
"""The 2D (X-ray) segmentation bundle's own transforms: :class:`LoadXrayMaskd` (a mask file, or RSNA
boxes filled at the image's own resolution, :func:`boxes_to_mask`) and :class:`SavePNGMaskd` (the PNG
mask writer). The pipelines themselves are listed in bundles/rsna_segmentation/configs (train.yaml's
``preprocessing`` and ``augmentation``, inference.yaml's ``preprocessing``).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import (
    MapTransform,
    SaveImaged,
)

from unimedi_monai.data.meta import UNKNOWN_SOURCE, source_filename
from unimedi_monai.data.readers import XRayDicomReader, XRayPILReader
from unimedi_monai.data.transforms import ReadImaged
from unimedi_monai.io.atomic_io import atomic_open

__all__ = ["LoadXrayMaskd", "SavePNGMaskd", "boxes_to_mask"]


def boxes_to_mask(boxes: Sequence[Sequence[float]], shape: Sequence[int]) -> np.ndarray:
    """A ``(rows, columns)`` uint8 mask with 1 inside the union of ``[x, y, width, height]`` boxes.

    ``x`` is the column and ``y`` the row of the top-left corner, in pixels (RSNA's convention); a
    box covers the pixels ``floor(y) .. ceil(y + height) - 1`` and likewise along x, clipped to the image.

    Raises:
        ValueError: a box without 4 numbers or entirely outside the image.
    """
    rows, cols = (int(s) for s in shape)
    mask = np.zeros((rows, cols), dtype=np.uint8)
    for i, box in enumerate(boxes):
        if len(box) != 4:
            raise ValueError(f"box {i} {box!r} must be [x, y, width, height].")
        x, y, w, h = (float(v) for v in box)
        r0, r1 = max(0, math.floor(y)), min(rows, math.ceil(y + h))
        c0, c1 = max(0, math.floor(x)), min(cols, math.ceil(x + w))
        if r0 >= r1 or c0 >= c1:
            raise ValueError(
                f"box {i} [x={x:g}, y={y:g}, width={w:g}, height={h:g}] lies outside the {rows} x {cols} image."
            )
        mask[r0:r1, c0:c1] = 1
    return mask


class LoadXrayMaskd(MapTransform):
    """Put the reference mask ``(1, H, W)`` (float class ids) of a channel-first image under ``keys``.

    With ``boxes_key`` in the item (RSNA), the boxes are filled at the image's own resolution
    (:func:`boxes_to_mask`; no boxes: an empty mask) and ``boxes_key`` is removed (box lists of
    different lengths would not collate into a batch). Otherwise ``keys`` holds a mask file (PNG, or
    any file the X-ray readers take), read rows first like the image; a mask of 0 and 255 only is a
    one-class mask (255 becomes 1), other masks hold class ids.

    Args:
        keys: the label key (``"label"``).
        image_key: the already-read image, whose spatial shape the mask must have.
        boxes_key: the item key of RSNA-style boxes.

    Raises:
        ValueError: a mask whose size differs from the image's (naming both files), or a box outside the image.
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        image_key: str = "image",
        boxes_key: str = "boxes",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.image_key = image_key
        self.boxes_key = boxes_key
        self._reader = ReadImaged(keys=keys, readers=[XRayPILReader(), XRayDicomReader()], dtype=None)
        self._strict = not allow_missing_keys

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.image_key]
        shape = tuple(int(s) for s in image.shape[1:])
        for key in self.keys:
            if self.boxes_key in d:
                try:
                    mask = torch.from_numpy(boxes_to_mask(d[self.boxes_key], shape)).to(torch.float32)[None]
                except ValueError as err:
                    raise ValueError(f"image '{source_filename(image)}': {err}") from None
                meta = dict(getattr(image, "meta", {}) or {})
                d[key] = MetaTensor(mask, meta=meta)
                d.pop(self.boxes_key)  # boxes differ in number per image: they would not collate into a batch
                continue
            if key not in d:
                if self._strict:
                    raise KeyError(
                        f"item of image '{source_filename(image)}' has neither a '{key}' mask file "
                        f"nor '{self.boxes_key}'."
                    )
                continue
            path = d[key]
            label = self._reader({key: path})[key]
            array = torch.as_tensor(label)
            if array.ndim == 3:  # (H, W, C) colour mask: its first channel
                array = array[..., 0]
            values = torch.unique(array)
            if values.numel() <= 2 and set(values.tolist()) <= {0, 255} and int(values.max()) == 255:
                array = array // 255
            if tuple(array.shape) != shape:
                raise ValueError(
                    f"mask '{path}' is {tuple(array.shape)} but its image '{source_filename(image)}' is {shape}; "
                    "a mask must have its image's size."
                )
            d[key] = MetaTensor(array.to(torch.float32)[None], meta=dict(getattr(label, "meta", {}) or {}))
        return d


class SavePNGMaskd(SaveImaged):
    """Write a ``(1, H, W)`` class-id prediction as a PNG named after its input, atomically.

    ``<output_dir>/<input name>_<postfix>.png``, rows first as in the input picture; a one-class
    prediction is written 0 / 255 (as the usual lung-mask files), more classes as their ids. A
    ``SaveImaged``, so that MONAI Label (which writes its own result) drops it from the bundle's
    post-processing.

    Args:
        keys: the prediction key.
        output_dir: folder of the masks.
        output_postfix: appended to the input's name.
        num_classes: classes of the network (2: written 0 / 255).
        files: ``{input: output file}`` planned in advance (:func:`unimedi_monai.bundle.per_input_outputs`,
            checked by :func:`unimedi_monai.bundle.guard_outputs`): unique names, never an input. Without
            it the name is ``<input name>_<postfix>.png``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | os.PathLike,
        output_postfix: str = "seg",
        num_classes: int = 2,
        files: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            keys=keys,
            output_dir=str(output_dir),
            output_postfix=output_postfix,
            output_ext=".png",
            resample=False,
            separate_folder=False,
            print_log=False,
        )
        self.output_dir_path = Path(output_dir)
        self.postfix = output_postfix
        self.num_classes = int(num_classes)
        self.files = None if files is None else {str(Path(k).resolve()): str(v) for k, v in files.items()}

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from PIL import Image

        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            source = source_filename(pred)
            if source == UNKNOWN_SOURCE and "image" in d:
                source = source_filename(d["image"])
            array = np.asarray(torch.as_tensor(pred).detach().cpu()).astype(np.int64)
            array = array[0] if array.ndim == 3 else array
            array = (array * 255 if self.num_classes == 2 else array).astype(np.uint8)
            stem = Path(source).name
            for suffix in (".png", ".jpg", ".jpeg", ".bmp", ".dcm", ".dicom"):
                if stem.lower().endswith(suffix):
                    stem = stem[: -len(suffix)]
                    break
            target = self.output_dir_path / (f"{stem}_{self.postfix}.png" if self.postfix else f"{stem}.png")
            if self.files is not None:
                planned = self.files.get(str(Path(source).resolve()))
                if planned is None:
                    raise KeyError(
                        f"no output file was planned for input '{source}'; pass the same inputs to per_input_outputs."
                    )
                target = Path(planned)
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, format="PNG")
            with atomic_open(target, "wb") as f:
                f.write(buffer.getvalue())
        return d
