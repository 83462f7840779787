# SPDX-License-Identifier: Apache-2.0
"""
A batch sampler that mixes 2D X-rays and 3D CTs at a fixed ratio in every batch, deterministic, distributed
and resumable mid-epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import numpy as np
import torch

__all__ = ["MixedBatchSampler"]

_XRAY_STREAM, _CT_STREAM = 0, 1


class _Stream:
    """
    An endless, seekable stream of indices ``offset + perm_p[j]``: pass ``p`` is a permutation of ``range(size)``
    drawn from ``(seed, epoch, stream_id, p)``, so any position can be produced without replaying earlier ones.
    """

    def __init__(self, size: int, offset: int, seed: int, epoch: int, stream_id: int) -> None:
        self.size, self.offset = size, offset
        self.key = (seed, epoch, stream_id)
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, p: int) -> np.ndarray:
        if p not in self._perms:
            if len(self._perms) > 2:  # positions only move forward: keep the last few passes
                self._perms.pop(min(self._perms))
            rng = np.random.default_rng([*self.key, p])
            self._perms[p] = rng.permutation(self.size) + self.offset
        return self._perms[p]

    def take(self, start: int, count: int) -> list[int]:
        """Return the ``count`` indices at stream positions ``start .. start + count - 1``."""
        out: list[int] = []
        pos = start
        while len(out) < count:
            p, j = divmod(pos, self.size)
            chunk = self._perm(p)[j : j + count - len(out)]
            out.extend(int(v) for v in chunk)
            pos += len(chunk)
        return out


class MixedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """
    Yield batches of global indices (X-rays ``0 .. num_xray - 1``, CTs ``num_xray ..``, as in
    :py:class:`~unimedi_monai.data.dataset.MixedModalityDataset`) with a fixed number of CTs per batch.

    Composition: when both pools are non-empty every batch holds ``n_ct = max(1, round(batch_size * ct_fraction))``
    CTs (capped at ``batch_size - 1`` so that every batch also holds at least one X-ray) and ``n_xray =
    batch_size - n_ct`` X-rays, X-rays first. When one pool is empty, batches are all of the other modality.

    Epoch: each modality is an endless stream of shuffled passes over its pool (a fresh permutation per pass,
    drawn from ``(seed, epoch)``), so the smaller pool is cycled and the ratio holds whatever the pool sizes.
    Global batch ``b`` takes stream positions ``b * n .. (b + 1) * n - 1`` of each modality. The epoch covers
    ``steps = max(num_xray / n_xray, num_ct / n_ct)`` global batches, the number needed to see the larger-by-steps
    pool once; per rank that is ``floor(steps / num_replicas)`` batches with ``drop_last=True`` (no sample of that
    pool repeats within the epoch; the last partial pass is left for the next epoch's fresh shuffle) or
    ``ceil(steps / num_replicas)`` with ``drop_last=False`` (the stream wraps into its next pass to fill the
    last batches, so every sample is seen at least once). Batches are always full.

    Distributed: global batches are dealt round-robin, rank ``r`` gets ``b = k * num_replicas + r``; the ranks'
    batches are disjoint slices of the same global stream and every rank yields ``len(self)`` batches.

    Resume: ``position`` counts the batches this sampler has handed out in the current epoch and is updated as
    batches are yielded; :py:meth:`state_dict` / :py:meth:`load_state_dict` save and restore ``(epoch, position)``
    and the next iteration continues with the first batch not yet yielded. A completed pass resets ``position``
    to 0. :py:meth:`set_epoch` resets ``position`` only when the epoch changes, so calling it with the restored
    epoch (as epoch-start handlers do) keeps the resume point. Note that a ``DataLoader`` draws batches ahead of
    the training loop (prefetching), so a trainer that checkpoints mid-epoch should store its own count of
    consumed iterations as ``position``.

    Per-sample seeds: with ``sample_seeds=True`` every batch is a list of ``(index, seed)`` pairs, the seed drawn
    from ``(seed, epoch, global batch, slot)``; :py:class:`~unimedi_monai.data.dataset.MixedModalityDataset`
    re-seeds its random transforms with it, so augmentations do not depend on data-loader workers or on where a
    run was resumed.

    Args:
        num_xray: number of X-ray samples (global indices ``0 .. num_xray - 1``).
        num_ct: number of CT samples (global indices ``num_xray .. num_xray + num_ct - 1``).
        batch_size: samples per batch (per rank).
        ct_fraction: target fraction of CTs per batch, in ``[0, 1]``.
        seed: random seed shared by all ranks.
        num_replicas: number of distributed ranks.
        rank: this process's rank, in ``[0, num_replicas)``.
        drop_last: ``floor`` (True) or ``ceil`` (False) for the number of batches per epoch, see above.
        sample_seeds: yield ``(index, seed)`` pairs instead of indices, see above.
        source: where the samples come from (e.g. ``"datalist /data/datalist.json, section 'training'"``),
            named in the error when they fill no batch.

    Example::

        sampler = MixedBatchSampler(ds.num_xray, ds.num_ct, batch_size=32, ct_fraction=0.25,
                                    num_replicas=world_size, rank=rank)
        loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate_mixed, num_workers=4)
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            for batch in loader:
                ...
    """

    def __init__(
        self,
        num_xray: int,
        num_ct: int,
        batch_size: int,
        ct_fraction: float = 0.25,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = True,
        sample_seeds: bool = False,
        source: str | None = None,
    ) -> None:
        for name, value in (("num_xray", num_xray), ("num_ct", num_ct)):
            if isinstance(value, bool) or int(value) != value or value < 0:
                raise ValueError(f"MixedBatchSampler: {name} must be a non-negative integer, got {value!r}.")
        num_xray, num_ct = int(num_xray), int(num_ct)
        where = f" from {source}" if source else ""
        if num_xray + num_ct == 0:
            raise ValueError(
                f"MixedBatchSampler: no samples{where} (num_xray=0, num_ct=0); add entries to the datalist."
            )
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"MixedBatchSampler: batch_size must be a positive integer, got {batch_size!r}.")
        batch_size = int(batch_size)
        if num_xray > 0 and num_ct > 0 and batch_size < 2:
            raise ValueError(
                "MixedBatchSampler: batch_size must be >= 2 when both X-rays and CTs are present "
                f"(one of each per batch), got {batch_size}."
            )
        if not 0.0 <= float(ct_fraction) <= 1.0:
            raise ValueError(f"MixedBatchSampler: ct_fraction must be in [0, 1], got {ct_fraction!r}.")
        if isinstance(num_replicas, bool) or int(num_replicas) != num_replicas or num_replicas < 1:
            raise ValueError(f"MixedBatchSampler: num_replicas must be a positive integer, got {num_replicas!r}.")
        if int(rank) != rank or not 0 <= rank < num_replicas:
            raise ValueError(f"MixedBatchSampler: rank must be in [0, {int(num_replicas) - 1}], got {rank!r}.")

        self.num_xray, self.num_ct = num_xray, num_ct
        self.batch_size = batch_size
        self.ct_fraction = float(ct_fraction)
        self.seed = int(seed)
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.drop_last = bool(drop_last)
        self.sample_seeds = bool(sample_seeds)

        if num_ct == 0:
            self.n_ct = 0
        elif num_xray == 0:
            self.n_ct = batch_size
        else:
            self.n_ct = min(batch_size - 1, max(1, round(batch_size * self.ct_fraction)))
        self.n_xray = batch_size - self.n_ct

        steps = max(
            num_xray / self.n_xray if self.n_xray else 0.0,
            num_ct / self.n_ct if self.n_ct else 0.0,
        )
        per_rank = steps / self.num_replicas
        self._len = math.floor(per_rank + 1e-9) if self.drop_last else math.ceil(per_rank - 1e-9)
        if self._len < 1:
            raise ValueError(
                f"MixedBatchSampler: the {num_xray} X-rays and {num_ct} CTs{where} fill no full batch "
                f"({self.n_xray} X-rays + {self.n_ct} CTs per batch, {self.num_replicas} replicas, drop_last=True); "
                "add entries to the datalist, lower batch_size (--batch_size) or set drop_last=False "
                "(--train#sampler#drop_last false: the smaller pool is cycled to fill the batch)."
            )
        self.epoch = 0
        self.position = 0

    def __len__(self) -> int:
        """Number of batches per epoch for this rank (the full epoch, regardless of ``position``)."""
        return self._len

    def set_epoch(self, epoch: int) -> None:
        """
        Select the epoch whose shuffles are used; resets ``position`` to 0 when ``epoch`` differs from the
        current one.

        Args:
            epoch: epoch number (non-negative).
        """
        if int(epoch) < 0:
            raise ValueError(f"MixedBatchSampler: epoch must be non-negative, got {epoch}.")
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self.position = 0

    def state_dict(self) -> dict[str, int]:
        """Return ``{"epoch", "position"}``: the epoch and the number of batches already yielded in it."""
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state_dict: Mapping[str, int]) -> None:
        """
        Restore ``epoch`` and ``position`` so that the next iteration starts at the first unseen batch.

        Args:
            state_dict: a dict from :py:meth:`state_dict`.
        """
        missing = {"epoch", "position"} - set(state_dict)
        if missing:
            raise ValueError(f"MixedBatchSampler.load_state_dict: missing keys {sorted(missing)}.")
        epoch, position = int(state_dict["epoch"]), int(state_dict["position"])
        if epoch < 0 or not 0 <= position <= self._len:
            raise ValueError(
                f"MixedBatchSampler.load_state_dict: need epoch >= 0 and 0 <= position <= {self._len}, "
                f"got epoch={epoch}, position={position}."
            )
        self.epoch, self.position = epoch, position

    def batch(self, local_index: int, epoch: int | None = None) -> list:
        """
        Return this rank's batch number ``local_index`` of ``epoch`` (default: the current epoch),
        without changing ``position``.

        Args:
            local_index: batch number in ``[0, len(self))``.
            epoch: epoch number; ``None`` for ``self.epoch``.
        """
        if not 0 <= local_index < self._len:
            raise IndexError(f"MixedBatchSampler: batch {local_index} out of range [0, {self._len}).")
        xray, ct = self._streams(self.epoch if epoch is None else int(epoch))
        epoch = self.epoch if epoch is None else int(epoch)
        return self._global_batch(local_index * self.num_replicas + self.rank, xray, ct, epoch)

    def _streams(self, epoch: int) -> tuple[_Stream | None, _Stream | None]:
        xray = _Stream(self.num_xray, 0, self.seed, epoch, _XRAY_STREAM) if self.n_xray else None
        ct = _Stream(self.num_ct, self.num_xray, self.seed, epoch, _CT_STREAM) if self.n_ct else None
        return xray, ct

    def _global_batch(self, b: int, xray: _Stream | None, ct: _Stream | None, epoch: int | None = None) -> list:
        out: list = []
        if xray is not None:
            out.extend(xray.take(b * self.n_xray, self.n_xray))
        if ct is not None:
            out.extend(ct.take(b * self.n_ct, self.n_ct))
        if self.sample_seeds:
            seeds = np.random.SeedSequence([self.seed, self.epoch if epoch is None else epoch, b]).generate_state(
                len(out)
            )
            out = [(index, int(s)) for index, s in zip(out, seeds)]
        return out

    def __iter__(self) -> Iterator[list[int]]:
        xray, ct = self._streams(self.epoch)
        for k in range(self.position, self._len):
            batch = self._global_batch(k * self.num_replicas + self.rank, xray, ct)
            self.position = k + 1
            yield batch
        self.position = 0
