# SPDX-License-Identifier: Apache-2.0
"""Engines: the ignite pre-training trainer, schedules, optimiser groups, checkpoint and log handlers."""

from __future__ import annotations

from unimedi_monai.lazy_exports import lazy_exports

_EXPORTS = {
    "CheckpointMismatchError": "checkpoint",
    "atomic_save": "checkpoint",
    "describe_mismatch": "checkpoint",
    "load_latest_checkpoint": "checkpoint",
    "load_network_weights": "checkpoint",
    "safe_load": "checkpoint",
    "CheckpointHandler": "handlers",
    "JsonlStatsWriter": "handlers",
    "ProgressBarHandler": "handlers",
    "ResumableTensorBoardStatsHandler": "handlers",
    "param_groups": "optim",
    "cosine_schedule": "schedules",
    "UniMedITrainer": "trainer",
    "training_scalars": "trainer",
    "unwrap_model": "trainer",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
