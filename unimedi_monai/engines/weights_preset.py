# SPDX-License-Identifier: Apache-2.0
"""The backbone preset a weights file was trained with, so an inference config need not be told it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from unimedi_monai.io.checkpoint import _extract_state_dict, safe_load
from unimedi_monai.networks.presets import preset_of_state_dict

__all__ = ["trained_backbone"]

logger = logging.getLogger(__name__)


def trained_backbone(model_path: str | os.PathLike | None, default: str) -> str:
    """The :data:`~unimedi_monai.networks.BACKBONE_PRESETS` name whose sizes the weights in ``model_path`` have.

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
    logger.info("backbone preset of %s: %s", model_path, name)
    return name
