# SPDX-License-Identifier: Apache-2.0
"""Value checks and intensity transforms of the X-ray / CT pipelines: CheckFinited, ToGreyscaled, ScaleToUnitd."""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils.type_conversion import convert_to_dst_type

from unimedi_monai.data.integrity import count_nonfinite
from unimedi_monai.data.read_image import filename_of
from unimedi_monai.data.readers import PHOTOMETRIC_KEY

__all__ = ["CheckFinited", "ToGreyscaled", "ScaleToUnitd"]

_LUMA_601 = (0.299, 0.587, 0.114)

#: percentile estimates use at most this many (evenly strided) pixels.
_MAX_PERCENTILE_SAMPLES = 1 << 22

#: images with a shorter side (pixels) are warned about: they carry next to no information once resized.
_MIN_SIDE = 16
_degenerate_count = 0
logger = logging.getLogger(__name__)


def _warn_degenerate(name: str, spatial: tuple[int, ...], constant: float | None) -> None:
    """Log a warning naming an image that is tiny or constant, with the running count of such images."""
    global _degenerate_count
    _degenerate_count += 1
    if min(spatial) < _MIN_SIDE:
        what = f"only {'x'.join(map(str, spatial))} pixels"
    else:
        what = f"constant (every pixel {constant:g})"
    logger.warning(
        "image '%s' is %s; %d such image(s) so far: check the file or remove it from the datalist.",
        name,
        what,
        _degenerate_count,
    )


class CheckFinited(MapTransform):
    """
    Raise :py:class:`ValueError` naming the source file when a floating-point image holds NaN or inf values.
    Integer images are always finite and pass through unchecked.

    Args:
        keys: keys of the images to check.
        allow_missing_keys: don't raise if a key is missing.
    """

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """
        Args:
            data: a dict holding images under ``keys``.

        Returns:
            ``data`` as a new dict, unchanged.
        """
        d = dict(data)
        for key in self.key_iterator(d):
            bad = count_nonfinite(torch.as_tensor(d[key]))
            if bad:
                raise ValueError(
                    f"CheckFinited: image '{filename_of(d[key])}' (key '{key}') holds {bad} NaN/inf values; "
                    "repair the file or remove it from the datalist."
                )
        return d


class ToGreyscaled(MapTransform):
    """
    Convert channel-first RGB or RGBA images to one grey channel with the ITU-R BT.601 luma weights
    (``0.299 R + 0.587 G + 0.114 B``; alpha is dropped). One-channel images pass through unchanged.
    Integer images stay integer (the luma is rounded), so :py:class:`ScaleToUnitd` still sees the bit depth.

    Args:
        keys: keys of channel-first images.
        allow_missing_keys: don't raise if a key is missing.
    """

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """
        Args:
            data: a dict holding ``(C, *spatial)`` images under ``keys``, with ``C`` in (1, 3, 4).

        Returns:
            a new dict with ``(1, *spatial)`` images.
        """
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            channels = img.shape[0]
            if channels == 1:
                continue
            if channels not in (3, 4):
                raise ValueError(
                    f"ToGreyscaled: image '{filename_of(img)}' (key '{key}') has {channels} channels; "
                    "expected 1 (grey), 3 (RGB) or 4 (RGBA) channels first."
                )
            t = torch.as_tensor(img)
            weights = torch.tensor(_LUMA_601, dtype=torch.float32).view(3, *([1] * (t.ndim - 1)))
            grey = (t[:3].to(torch.float32) * weights).sum(dim=0, keepdim=True)
            if not t.is_floating_point():
                info = torch.iinfo(t.dtype)
                grey = grey.round().clamp(info.min, info.max).to(t.dtype)
            else:
                grey = grey.to(t.dtype)
            d[key] = convert_to_dst_type(grey, dst=img, dtype=grey.dtype)[0]
        return d


class ScaleToUnitd(MapTransform):
    """
    Scale X-ray intensities to ``[0, 1]`` according to the input dtype:

    - ``uint8`` (8-bit PNG/JPEG/DICOM): divided by 255, so the stored grey levels are kept as they are;
    - other integer types (16-bit PNG, 12/16-bit DICOM): robust window between the ``percentiles``
      (default 0.5 and 99.5) of the image, clipped to ``[0, 1]``. A 16-bit file rarely uses its full range
      and often holds a few saturated pixels (burnt-in labels, collimator edges), so neither the dtype range
      nor the plain maximum gives a consistent contrast;
    - floating-point input (e.g. DICOM with rescale slope/intercept applied): min/max of the image.

    A constant image becomes all zeros. Images whose metadata say ``MONOCHROME1`` (``meta["PhotometricInterpretation"]``
    as written by :py:class:`~unimedi_monai.data.readers.XRayDicomReader`, or DICOM JSON tag ``"00280004"`` as written
    by ``PydicomReader(prune_metadata=False)``) are inverted (``1 - x``) so bone is bright for every input.

    Args:
        keys: keys of the images to scale.
        percentiles: lower and upper percentiles (0..100) for integer inputs wider than 8 bits.
        allow_missing_keys: don't raise if a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        percentiles: tuple[float, float] = (0.5, 99.5),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        lo, hi = (float(p) for p in percentiles)
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"ScaleToUnitd: percentiles must satisfy 0 <= low < high <= 100, got {percentiles}.")
        self.percentiles = (lo, hi)

    @staticmethod
    def _is_monochrome1(img: Any) -> bool:
        if not isinstance(img, MetaTensor):
            return False
        value = img.meta.get(PHOTOMETRIC_KEY)
        if value is None:
            tag = img.meta.get("00280004")
            if isinstance(tag, Mapping):
                value = (tag.get("Value") or [""])[0]
        return isinstance(value, str) and value.strip().upper() == "MONOCHROME1"

    def _window(self, t: torch.Tensor) -> tuple[float, float]:
        """Return the intensity window ``(low, high)`` mapped to ``(0, 1)``."""
        if t.dtype == torch.uint8:
            return 0.0, 255.0
        if t.dtype == torch.bool:
            return 0.0, 1.0
        if t.is_floating_point():
            return float(t.min()), float(t.max())
        flat = t.detach().reshape(-1).cpu()
        step = max(1, math.ceil(flat.numel() / _MAX_PERCENTILE_SAMPLES))
        lo, hi = np.percentile(flat[::step].numpy(), self.percentiles)
        return float(lo), float(hi)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """
        Args:
            data: a dict holding images under ``keys``.

        Returns:
            a new dict with ``float32`` images in ``[0, 1]``.
        """
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            t = torch.as_tensor(img)
            if t.numel() == 0:
                raise ValueError(f"ScaleToUnitd: image '{filename_of(img)}' (key '{key}') is empty.")
            lo, hi = self._window(t)
            spatial = tuple(int(s) for s in t.shape[1:]) if t.ndim > 2 else tuple(int(s) for s in t.shape)
            constant = bool(t.min() == t.max())
            if min(spatial) < _MIN_SIDE or constant:
                _warn_degenerate(filename_of(img), spatial, float(t.reshape(-1)[0]) if constant else None)
            out = t.to(torch.float32)
            out = ((out - lo) / (hi - lo)).clamp_(0.0, 1.0) if hi > lo else torch.zeros_like(out)
            if self._is_monochrome1(img):
                out = 1.0 - out
            d[key] = convert_to_dst_type(out, dst=img, dtype=torch.float32)[0]
        return d
