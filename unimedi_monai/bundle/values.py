# SPDX-License-Identifier: Apache-2.0
"""Numeric config keys of the wrong type or out of range: :func:`check_values` and the ranges, :data:`NUMERIC_KEYS`;
the sizes and windows the pre-processing transforms take: :func:`check_spatial_values`, :data:`SPATIAL_KEYS`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["NUMERIC_KEYS", "SPATIAL_KEYS", "check_spatial_values", "check_values"]

#: range of every numeric key the bundles declare: (kind, low, high, None allowed); bounds inclusive,
#: ``"float>"`` / ``"<float"`` mark exclusive ones.
NUMERIC_KEYS: dict[str, tuple[str, float | None, float | None, bool]] = {
    "batch_size": ("int", 1, None, False),
    "max_epochs": ("int", 1, None, False),
    "checkpoint_interval": ("int", 0, None, False),
    "num_workers": ("int", 0, None, False),
    "val_interval": ("int", 1, None, False),
    "seed": ("int", 0, None, False),
    "fraction_seed": ("int", 0, None, False),
    "num_samples": ("int", 1, None, False),
    "sw_batch_size": ("int", 1, None, False),
    "slice_top_k": ("int", 1, None, False),
    "text_max_length": ("int", 1, None, False),
    "text_trainable_layers": ("int", -1, None, False),
    "feature_size": ("int", 1, None, False),
    "decoder_channels": ("int", 1, None, False),
    "num_classes": ("int", 2, None, False),
    "warmup_epochs": ("int", 0, None, False),
    "mask_warmup_epochs": ("int", 0, None, False),
    "eval_slice_k": ("int", 1, None, False),
    "eval_tolerance": ("int", 0, None, False),
    "tolerance": ("int", 0, None, False),
    "top_k": ("int", 1, None, True),
    "max_cases": ("int", 1, None, True),
    "window_slices": ("int", 1, None, True),
    "num_plots": ("int", 0, None, False),
    "image_size": ("int", 1, None, False),
    "epochs": ("int", 1, None, False),
    "feature_batch_size": ("int", 1, None, False),
    "data_pct": ("float>", 0, 1, False),
    "lr": ("float>", 0, None, False),
    "min_lr": ("float", 0, None, False),
    "weight_decay": ("float", 0, None, False),
    "weight_decay_end": ("float", 0, None, False),
    "text_lr_scale": ("float", 0, None, False),
    "encoder_lr_scale": ("float", 0, None, False),
    "grad_clip": ("float>", 0, None, True),
    "teacher_momentum": ("float", 0, 1, False),
    "ct_fraction": ("float", 0, 1, False),
    "mask_ratio": ("float<", 0, 1, False),
    "label_fraction": ("float>", 0, 1, False),
    "cache_rate": ("float", 0, 1, False),
    "overlap": ("float<", 0, 1, False),
    "top_fraction": ("float>", 0, 1, True),
    "val_fraction": ("float<", 0, 1, False),
    "test_fraction": ("float<", 0, 1, False),
    "pos": ("float", 0, None, False),
    "neg": ("float", 0, None, False),
    "min_diameter_mm": ("float", 0, None, False),
    "flip_prob": ("float", 0, 1, False),
    "shift_prob": ("float", 0, 1, False),
    "shift_offset": ("float", 0, None, False),
    "norm_std": ("float>", 0, None, False),
    "affine_prob": ("float", 0, 1, False),
}

#: the sequence keys the pre-processing takes: (what each value is, how many); ``"window"`` is ``(low, high)``
#: with ``low < high``.
SPATIAL_KEYS: dict[str, tuple[str, int]] = {
    "pixdim": ("positive number", 3),
    "roi_size": ("positive integer", 3),
    "ct_size": ("positive integer", 3),
    "hu_window": ("window", 2),
}


def check_values(values: Mapping[str, Any]) -> None:
    """Refuse a numeric config key with a value of the wrong type or out of range, naming the key.

    ``--batch_size abc``, ``--max_epochs -1`` or ``--checkpoint_interval -5`` would otherwise fail deep
    inside the run, or not at all. Call it in ``initialize``, after :func:`check_overrides`::

        - "$unimedi_monai.bundle.check_values({'batch_size': @batch_size, 'max_epochs': @max_epochs})"

    The ranges are those of :data:`NUMERIC_KEYS` (``checkpoint_interval: 0`` means a checkpoint at the
    end only).

    Args:
        values: config key -> its value in this run.

    Raises:
        ValueError: one line naming the key, the value and the accepted range.
    """
    for key, value in values.items():
        key = key.replace("::", "#")  # MONAI may hand nested ids over with either separator
        name = key.rpartition("#")[2]
        if name not in NUMERIC_KEYS:
            raise KeyError(f"check_values: no range is declared for config key '{key}' (add it to NUMERIC_KEYS).")
        kind, low, high, nullable = NUMERIC_KEYS[name]
        if value is None and nullable:
            continue
        is_int = isinstance(value, int) and not isinstance(value, bool)
        number = is_int or (isinstance(value, float) and kind != "int")
        if kind != "int" and number and not math.isfinite(float(value)):
            number = False
        lo_ok = low is None or (value > low if kind == "float>" else value >= low) if number else False
        hi_ok = high is None or (value < high if kind == "float<" else value <= high) if number else False
        if not (number and lo_ok and hi_ok):
            what = "an integer" if kind == "int" else "a number"
            bounds = []
            if low is not None:
                bounds.append(f"{'>' if kind == 'float>' else '>='} {low:g}")
            if high is not None:
                bounds.append(f"{'<' if kind == 'float<' else '<='} {high:g}")
            null = " (or null)" if nullable else ""
            raise ValueError(
                f"config key '{key}' must be {what} {' and '.join(bounds)}{null}, got {value!r} (command line --{key})."
            )


def check_spatial_values(values: Mapping[str, Any]) -> None:
    """Refuse a voxel spacing, ROI size or intensity window of the wrong length or range, naming the key.

    The bundles list their pre-processing transforms in the YAML, which hand these keys to MONAI as they
    are; a wrong one would fail deep inside a transform or, worse, run. Call it in ``initialize``::

        - "$unimedi_monai.bundle.check_spatial_values({'pixdim': @pixdim, 'hu_window': @hu_window})"

    Args:
        values: config key -> its value in this run (a key of :data:`SPATIAL_KEYS`).

    Raises:
        ValueError: one line naming the key, the value and what it must be.
    """
    for key, value in values.items():
        key = key.replace("::", "#")
        name = key.rpartition("#")[2]
        if name not in SPATIAL_KEYS:
            raise KeyError(
                f"check_spatial_values: no shape is declared for config key '{key}' (add it to SPATIAL_KEYS)."
            )
        kind, length = SPATIAL_KEYS[name]
        items = list(value) if isinstance(value, (list, tuple)) else None
        numbers = items is not None and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in items
        )
        if kind == "positive integer":
            ok = numbers and all(isinstance(v, int) and v >= 1 for v in items)
        elif kind == "positive number":
            ok = numbers and all(v > 0 for v in items)
        else:
            ok = numbers and len(items) == 2 and items[0] < items[1]
        if not ok or len(items) != length:
            what = "(low, high) with low < high" if kind == "window" else f"{length} {kind}s"
            raise ValueError(f"config key '{key}' must be {what}, got {value!r} (command line --{key}).")
