# SPDX-License-Identifier: Apache-2.0
"""Ignite handler saving the network whenever a MONAI evaluator reports a new best key metric."""

from __future__ import annotations

import logging
import os

from ignite.engine import Engine, Events
from torch import nn

from unimedi_monai.engines.checkpoint import atomic_save

__all__ = ["BestModelSaver"]

logger = logging.getLogger(__name__)


class BestModelSaver:
    """Attach to a MONAI ``SupervisedEvaluator``: after each validation whose key metric is the best
    so far (``engine.state.best_metric_epoch == engine.state.epoch``), write the network's state dict
    to ``path`` atomically.

    Args:
        network: the network to save (a DDP wrapper is unwrapped).
        path: the model file (``models/model.pt``).

    Example::

        evaluator = SupervisedEvaluator(..., val_handlers=[BestModelSaver(net, "models/model.pt")])
    """

    def __init__(self, network: nn.Module, path: str | os.PathLike) -> None:
        self.network = network
        self.path = path

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        from unimedi_monai.engines.trainer import unwrap_model

        if getattr(engine.state, "best_metric_epoch", -1) != engine.state.epoch:
            return
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return
        atomic_save(unwrap_model(self.network).state_dict(), self.path)
        logger.info("best %s %.4f at epoch %d: saved %s", engine.state.key_metric_name, engine.state.best_metric,
                    engine.state.epoch, self.path)
