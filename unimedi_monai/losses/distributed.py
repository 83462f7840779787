# SPDX-License-Identifier: Apache-2.0
"""Small torch.distributed helpers shared by the losses (no-ops in a single process)."""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["is_distributed", "all_gather_with_grad", "all_reduce_sum"]


def is_distributed() -> bool:
    """True inside an initialised process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate ``x`` from every rank along dim 0, keeping the autograd graph to the local part.

    Ranks may hold different batch sizes: sizes are exchanged first and features padded.

    Returns:
        ``(gathered, offset)``: the concatenation over ranks and where this rank's rows start.
    """
    if not is_distributed():
        return x, 0
    from torch.distributed.nn.functional import all_gather

    world = dist.get_world_size()
    size = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes_list = [int(s.item()) for s in sizes]
    largest = max(sizes_list)
    padded = x if x.shape[0] == largest else torch.cat([x, x.new_zeros((largest - x.shape[0],) + x.shape[1:])])
    parts = all_gather(padded)
    gathered = torch.cat([p[:n] for p, n in zip(parts, sizes_list)])
    return gathered, sum(sizes_list[: dist.get_rank()])


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum ``x`` over ranks in place (no gradient) and return it."""
    if is_distributed():
        dist.all_reduce(x)
    return x
