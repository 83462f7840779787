# SPDX-License-Identifier: Apache-2.0
"""Engines: the ignite pre-training trainer, schedules, optimiser groups, the training checkpoint, the
best-model saver and log handlers. Checkpoint files themselves are read and written by :mod:`unimedi_monai.io`."""

from __future__ import annotations

from unimedi_monai.lazy_exports import lazy_exports

_EXPORTS = {
    "BestModelSaver": "best_model",
    "CheckpointHandler": "handlers",
    "JsonlStatsWriter": "handlers",
    "ProgressBarHandler": "handlers",
    "ResumableTensorBoardStatsHandler": "handlers",
    "rank_handlers": "handlers",
    "param_groups": "optim",
    "cosine_schedule": "schedules",
    "trained_backbone": "weights_preset",
    "trained_head_option": "weights_preset",
    "UniMedITrainer": "trainer",
    "training_scalars": "trainer",
    "unwrap_model": "trainer",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
