# SPDX-License-Identifier: Apache-2.0
"""The backbone preset and head options a weights file was trained with, so inference configs need not say them."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from unimedi_monai.io.checkpoint import _extract_state_dict, safe_load
from unimedi_monai.networks.presets import (
    BACKBONE_PRESETS,
    HEAD_OPTIONS,
    head_options_of_state_dict,
    pooling_of_state_dict,
    preset_of_state_dict,
)

__all__ = ["trained_backbone", "trained_head_option"]

logger = logging.getLogger(__name__)


def trained_backbone(model_path: str | os.PathLike | None, default: str) -> str | dict[str, Any]:
    """The :data:`~unimedi_monai.networks.BACKBONE_PRESETS` name whose sizes the weights in ``model_path`` have,
    or ``{"preset": name, "pooling": ...}`` when the weights were trained with another ``pooling`` than the
    preset's (e.g. ``demo`` with ``pooling: cls``, whose checkpoints lack the ``max_norm`` of ``cls_max``).

    An inference config's ``backbone`` key, e.g.
    ``backbone: "$unimedi_monai.engines.trained_backbone(@model_path, default='demo')"``: the network is
    built with the preset its weights need, and ``--backbone NAME`` still overrides it.

    Args:
        model_path: a ``model.pt`` (bare state dict) or a training checkpoint (``network`` entry).
        default: the preset when there are no weights yet (e.g. ``verify_net_in_out`` before training).

    Raises:
        ValueError: the weights match no preset (a custom backbone: pass ``--backbone``), naming the file.
    """
    if model_path is None or not Path(model_path).is_file():
        return default
    state = _extract_state_dict(safe_load(model_path), None)
    name = preset_of_state_dict(state)
    if name is None:
        raise ValueError(
            f"the weights in '{model_path}' match no backbone preset; pass --backbone (a preset name or a dict of "
            "sizes)."
        )
    pooling = pooling_of_state_dict(state)
    if pooling != BACKBONE_PRESETS[name].pooling:
        logger.info("backbone preset of %s: %s with pooling %s", model_path, name, pooling)
        return {"preset": name, "pooling": pooling}
    logger.info("backbone preset of %s: %s", model_path, name)
    return name


def trained_head_option(model_path: str | os.PathLike | None, option: str, default: bool) -> bool:
    """The value of a UniMedI head option (:data:`~unimedi_monai.networks.HEAD_OPTIONS`) the weights in
    ``model_path`` were pre-trained with, so that a config which builds the whole pre-training network to load
    its ``model.pt`` strictly (slice selection, zero-shot) fits any pre-training run's weights.

    E.g. ``head_batch_norm: "$unimedi_monai.engines.trained_head_option(@model_path, 'head_batch_norm', True)"``;
    ``--head_batch_norm`` still overrides it.

    Args:
        model_path: a ``model.pt`` (bare state dict) or a training checkpoint (``network`` entry).
        option: ``"head_batch_norm"`` or ``"center_per_group"``.
        default: the value when there are no weights yet, or when they hold no distillation head.

    Raises:
        ValueError: ``option`` is not a head option.
    """
    if option not in HEAD_OPTIONS:
        raise ValueError(f"trained_head_option: option must be one of {HEAD_OPTIONS}, got {option!r}.")
    if model_path is None or not Path(model_path).is_file():
        return bool(default)
    options = head_options_of_state_dict(_extract_state_dict(safe_load(model_path), None))
    value = bool(options.get(option, default))
    logger.info("%s of %s: %s", option, model_path, value)
    return value
