# SPDX-License-Identifier: Apache-2.0
"""ResizeShortestSided: resize an image so that its shorter side has a given length, keeping its aspect ratio."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from monai.config import KeysCollection
from monai.transforms import MapTransform, Resize

__all__ = ["ResizeShortestSided"]


class ResizeShortestSided(MapTransform):
    """
    Resize channel-first images so that their shortest spatial side equals ``size``, keeping the aspect ratio
    (each side is rounded to the nearest integer). Downsampling uses ``"area"`` interpolation (averaging, no
    aliasing and much faster than Gaussian anti-aliasing); upsampling uses ``upsample_mode``.

    Args:
        keys: keys of channel-first images.
        size: target length of the shortest spatial side.
        upsample_mode: interpolation used when the image is enlarged (``"bilinear"``, ``"bicubic"``...).
        allow_missing_keys: don't raise if a key is missing.
    """

    def __init__(
        self, keys: KeysCollection, size: int, upsample_mode: str = "bilinear", allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if int(size) < 1:
            raise ValueError(f"ResizeShortestSided: size must be a positive integer, got {size}.")
        self.size = int(size)
        self.upsample_mode = upsample_mode

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """
        Args:
            data: a dict holding ``(C, *spatial)`` images under ``keys``.

        Returns:
            a new dict with resized images.
        """
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            spatial = tuple(int(s) for s in img.shape[1:])
            scale = self.size / min(spatial)
            new_size = tuple(max(1, round(s * scale)) for s in spatial)
            if new_size == spatial:
                continue
            if scale < 1.0:
                resize = Resize(spatial_size=new_size, mode="area")
            else:
                resize = Resize(spatial_size=new_size, mode=self.upsample_mode, align_corners=False)
            d[key] = resize(img)
        return d
