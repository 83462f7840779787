# SPDX-License-Identifier: Apache-2.0
"""Atomic checkpoints, resume from the latest good one, and safe loading of network weights.

Checkpoints are written to a temporary file in the target folder, flushed to disk and renamed
into place, so a crash never leaves a half-written file under a checkpoint's name. A checkpoint
that cannot be read (truncated, corrupt) is reported and the previous one is used. Every load uses
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from unimedi_monai.atomic_io import atomic_open

__all__ = [
    "atomic_save",
    "safe_load",
    "list_checkpoints",
    "load_latest_checkpoint",
    "load_network_weights",
    "CheckpointMismatchError",
    "describe_mismatch",
]

logger = logging.getLogger(__name__)
CHECKPOINT_PATTERN = re.compile(r"^checkpoint_(\d+)\.pt$")


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the network (missing / unexpected keys or shape mismatches)."""


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then ``os.replace`` into place."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def safe_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``; a clear error naming the file when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, pickle of a non-weights object, ...
        raise RuntimeError(f"cannot read checkpoint '{path}' ({type(err).__name__}: {err}); it may be truncated or not a weights file.") from err


def list_checkpoints(save_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(iteration, path)`` of ``checkpoint_<iteration>.pt`` files in ``save_dir``, oldest first."""
    save_dir = Path(save_dir)
    if not save_dir.is_dir():
        return []
    found = []
    for p in save_dir.iterdir():
        m = CHECKPOINT_PATTERN.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


#: suffix given to a checkpoint that cannot be read, so that it is kept for inspection but never counts.
UNREADABLE_SUFFIX = ".unreadable"


def load_latest_checkpoint(save_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[dict, Path] | None:
    """The newest readable training checkpoint in ``save_dir``.

    An unreadable one (truncated, corrupt) is renamed to ``<name>.unreadable`` with a warning naming it:
    kept for inspection, it is no longer a checkpoint (never resumed from, never one of the kept ones).
    When checkpoints exist but none can be read, a warning says the run starts from iteration 0.
    """
    found = list_checkpoints(save_dir)
    for _, path in reversed(found):
        try:
            return safe_load(path, map_location), path
        except RuntimeError as err:
            aside = path.with_name(path.name + UNREADABLE_SUFFIX)
            os.replace(path, aside)
            logger.warning("%s; set aside as %s, trying the previous checkpoint.", err, aside.name)
    if found:
        logger.warning("none of the %d checkpoints in %s can be read: training starts again from iteration 0.", len(found), save_dir)
    return None


def _listed(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{', ...' if len(keys) > limit else ''}]"


def describe_mismatch(network: nn.Module, state: Mapping[str, Any], shapes_only: bool = False) -> str:
    """One line listing how ``state`` differs from ``network.state_dict()``.

    Args:
        network: the module the state dict should fit.
        state: the state dict.
        shapes_only: report the shape mismatches alone.

    Returns:
        e.g. ``"2 missing keys [a, b], 1 unexpected key [c], 1 shape mismatch [d (3, 4) in the checkpoint vs (3, 8) in the network]"``,
        or ``"keys and shapes match"``.
    """
    own = network.state_dict()
    missing = [] if shapes_only else [k for k in own if k not in state]
    unexpected = [] if shapes_only else [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(v.shape)} in the checkpoint vs {tuple(own[k].shape)} in the network"
        for k, v in state.items()
        if k in own and isinstance(v, torch.Tensor) and tuple(v.shape) != tuple(own[k].shape)
    ]
    parts = [f"{len(x)} {name}{'' if len(x) == 1 else plural} {_listed(x)}" for x, name, plural in (
        (missing, "missing key", "s"), (unexpected, "unexpected key", "s"), (shapes, "shape mismatch", "es")) if x]
    return ", ".join(parts) if parts else "keys and shapes match"


def _extract_state_dict(obj: Any, key: str | None) -> Mapping[str, torch.Tensor]:
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            raise CheckpointMismatchError(f"checkpoint has no '{key}' entry; found {sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__}.")
        return obj[key]
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    for candidate in ("network", "model", "state_dict"):
        if isinstance(obj, Mapping) and candidate in obj:
            return obj[candidate]
    raise CheckpointMismatchError("checkpoint holds no state dict (expected tensors, or a 'network' / 'model' entry).")


def load_network_weights(
    network: nn.Module,
    path: str | os.PathLike,
    key: str | None = None,
    prefix: str = "",
    strict: bool = True,
    map_location: str | torch.device = "cpu",
) -> dict[str, list[str]]:
    """Load weights from a checkpoint into ``network`` and report what was loaded.

    Args:
        network: the target module.
        path: a ``model.pt`` (bare state dict) or a training checkpoint (``network`` entry).
        key: entry of the checkpoint holding the state dict (auto-detected when None).
        prefix: keep only keys starting with ``prefix`` and strip it (e.g. ``"encoder."`` to load the
            pre-trained vision encoder into a downstream network's encoder).
        strict: raise on missing or unexpected keys (shape mismatches always raise).

    Returns:
        ``{"loaded": [...], "missing": [...], "unexpected": [...]}``.

    Raises:
        CheckpointMismatchError: one line saying which keys are missing / unexpected / mis-shaped.
    """
    state = dict(_extract_state_dict(safe_load(path, map_location), key))
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise CheckpointMismatchError(f"checkpoint '{path}' has no keys starting with '{prefix}'.")
    own = network.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        raise CheckpointMismatchError(
            f"checkpoint '{path}' does not fit the network: {describe_mismatch(network, state, shapes_only=True)}; "
            "shape mismatches are never loaded: use the backbone preset (and text model) it was trained with."
        )
    result = network.load_state_dict(state, strict=False)
    report = {
        "loaded": [k for k in state if k in own],
        "missing": list(result.missing_keys),
        "unexpected": list(result.unexpected_keys),
    }
    if strict and (report["missing"] or report["unexpected"]):
        raise CheckpointMismatchError(
            f"checkpoint '{path}' does not fit the network: {describe_mismatch(network, state)}; "
            f"check the backbone preset{f' and the prefix {prefix!r}' if prefix else ''}, or pass strict=False to load the overlap."
        )
    return report
