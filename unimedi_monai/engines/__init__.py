"""Engines: the ignite pre-training trainer, schedules, optimiser groups, checkpoint and log handlers."""

from unimedi_monai.engines.checkpoint import (
    CheckpointMismatchError,
    atomic_save,
    describe_mismatch,
    load_latest_checkpoint,
    load_network_weights,
    safe_load,
)
from unimedi_monai.engines.handlers import CheckpointHandler, JsonlStatsWriter, ProgressBarHandler, ResumableTensorBoardStatsHandler, rank_handlers
from unimedi_monai.engines.optim import param_groups
from unimedi_monai.engines.schedules import cosine_schedule
from unimedi_monai.engines.trained_backbone import trained_backbone
from unimedi_monai.engines.trainer import UniMedITrainer, training_scalars, unwrap_model

__all__ = [
    "CheckpointHandler",
    "CheckpointMismatchError",
    "JsonlStatsWriter",
    "ProgressBarHandler",
    "ResumableTensorBoardStatsHandler",
    "UniMedITrainer",
    "atomic_save",
    "cosine_schedule",
    "describe_mismatch",
    "load_latest_checkpoint",
    "load_network_weights",
    "param_groups",
    "rank_handlers",
    "safe_load",
    "trained_backbone",
    "training_scalars",
    "unwrap_model",
]
