# SPDX-License-Identifier: Apache-2.0
"""Which process writes: rank 0 of a distributed run, or the only process."""

from __future__ import annotations

import os

__all__ = ["is_rank0"]


def is_rank0() -> bool:
    """True on rank 0 of an initialised ``torch.distributed`` process group, else when the ``RANK``
    environment variable (set by ``torchrun`` before the group exists) is unset or ``0``.

    ``torch.distributed`` is imported on the first call only, so command-line tools that never call
    it start without torch.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0
