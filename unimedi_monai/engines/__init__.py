"""Engines: the ignite pre-training trainer, schedules, optimiser groups, the training checkpoint, the
best-model saver and log handlers. Checkpoint files themselves are read and written by :mod:`unimedi_monai.io`."""

from unimedi_monai.engines.best_model import BestModelSaver
from unimedi_monai.engines.handlers import CheckpointHandler, JsonlStatsWriter, ProgressBarHandler, ResumableTensorBoardStatsHandler
from unimedi_monai.engines.optim import param_groups
from unimedi_monai.engines.schedules import cosine_schedule
from unimedi_monai.engines.trainer import UniMedITrainer, training_scalars, unwrap_model

__all__ = [
    "BestModelSaver",
    "CheckpointHandler",
    "JsonlStatsWriter",
    "ProgressBarHandler",
    "ResumableTensorBoardStatsHandler",
    "UniMedITrainer",
    "cosine_schedule",
    "param_groups",
    "training_scalars",
    "unwrap_model",
]
