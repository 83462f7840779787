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


def load_latest_checkpoint(save_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[dict, Path] | None:
    """The newest readable training checkpoint in ``save_dir``; unreadable ones are skipped with a warning."""
    for _, path in reversed(list_checkpoints(save_dir)):
        try:
            return safe_load(path, map_location), path
        except RuntimeError as err:
            logger.warning("%s; trying the previous checkpoint.", err)
    return None


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
    mismatched = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        raise CheckpointMismatchError(
            f"checkpoint '{path}' does not fit the network: shape mismatch for {mismatched[:5]}"
            f"{' and more' if len(mismatched) > 5 else ''}; check that the backbone preset matches the one it was trained with."
        )
    result = network.load_state_dict(state, strict=False)
    report = {
        "loaded": [k for k in state if k in own],
        "missing": list(result.missing_keys),
        "unexpected": list(result.unexpected_keys),
    }
    if strict and (report["missing"] or report["unexpected"]):
        raise CheckpointMismatchError(
            f"checkpoint '{path}' does not fit the network: {len(report['missing'])} missing keys {report['missing'][:5]}, "
            f"{len(report['unexpected'])} unexpected keys {report['unexpected'][:5]}; pass strict=False to load the overlap."
        )
    return report
