# SPDX-License-Identifier: Apache-2.0
"""BatchNorm with one set of running statistics per input source.

The 2D tokenizer's conv stem serves two kinds of input: X-rays and CT slices. In training BatchNorm
normalises each call with the statistics of its own batch, and the encoder calls the stem once per
kind, so each kind is normalised by its own statistics. A plain BatchNorm keeps one set of running
statistics, which the two kinds overwrite in turn (momentum 0.1: the mean of the last ten or so calls
of both). In eval mode X-rays and CT slices were then normalised by a blend of the two, unlike in
training: on the demo the held-out retrieval, the probes and the cross-modal alignment of a trained
encoder were at chance in eval mode and well above chance with batch statistics.

:class:`SourceBatchNorm` keeps the running statistics per source (``running_mean`` and ``running_var``
are ``(num_sources, C)``) and shares the affine parameters, so training is exactly that of one
BatchNorm and only what eval mode normalises with changes (the idea of domain-specific BatchNorm,
Chang et al. 2019, without per-domain affine parameters).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SourceBatchNorm"]


class SourceBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over ``(B, C, *spatial)`` with running statistics per input source.

    Args:
        num_features: channels ``C``.
        spatial_dims: 1, 2 or 3 (the input has ``spatial_dims + 2`` dimensions).
        num_sources: sets of running statistics; ``forward(x, source)`` picks one.
        eps: added to the variance.
        momentum: running-statistics update factor (``None``: cumulative average, per source count
            shared).

    A state dict of a plain BatchNorm (1-D ``running_mean`` / ``running_var``) loads with its
    statistics copied to every source, which is how that BatchNorm normalised every source.

    Example::

        bn = SourceBatchNorm(32, spatial_dims=2, num_sources=2)
        y = bn(torch.randn(4, 32, 8, 8), source=1)  # updates running_mean[1], running_var[1] only
    """

    def __init__(
        self,
        num_features: int,
        spatial_dims: int = 2,
        num_sources: int = 2,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
    ) -> None:
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"SourceBatchNorm: spatial_dims must be 1, 2 or 3, got {spatial_dims}.")
        if isinstance(num_sources, bool) or int(num_sources) != num_sources or num_sources < 1:
            raise ValueError(f"SourceBatchNorm: num_sources must be a positive integer, got {num_sources!r}.")
        super().__init__(num_features, eps=eps, momentum=momentum, affine=True, track_running_stats=True)
        self.spatial_dims = int(spatial_dims)
        self.num_sources = int(num_sources)
        self.running_mean = torch.zeros(self.num_sources, num_features)  # buffers keep their registration
        self.running_var = torch.ones(self.num_sources, num_features)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"SourceBatchNorm ({self.spatial_dims}D) expects a (B, C, *spatial) input of "
                f"{self.spatial_dims + 2} dims, got shape {tuple(x.shape)}."
            )

    def forward(self, x: torch.Tensor, source: int = 0) -> torch.Tensor:
        """Normalise ``x``: batch statistics in training (updating the running statistics of ``source``),
        the running statistics of ``source`` in eval mode.

        Args:
            x: ``(B, C, *spatial)`` input.
            source: which set of running statistics, in ``[0, num_sources)``.
        """
        self._check_input_dim(x)
        if isinstance(source, bool) or not 0 <= int(source) < self.num_sources:
            raise ValueError(f"SourceBatchNorm: source must be in [0, {self.num_sources - 1}], got {source!r}.")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        mean, var = self.running_mean[int(source)], self.running_var[int(source)]
        return F.batch_norm(x, mean, var, self.weight, self.bias, self.training, factor, self.eps)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        for name in ("running_mean", "running_var"):
            stats = state_dict.get(prefix + name)
            if isinstance(stats, torch.Tensor) and stats.dim() == 1:  # a plain BatchNorm's statistics
                state_dict[prefix + name] = stats.unsqueeze(0).expand(self.num_sources, -1).clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, spatial_dims={self.spatial_dims}, num_sources={self.num_sources}"
