# SPDX-License-Identifier: Apache-2.0
"""Checkpoint I/O: atomic writes, safe reads, the latest good training checkpoint, and the one weight loader.

Checkpoints are written to a temporary file in the target folder, flushed to disk and renamed
into place, so a crash never leaves a half-written file under a checkpoint's name. A checkpoint
that cannot be read (truncated, corrupt) is reported and the previous one is used. Every load uses
``torch.load(..., weights_only=True)``.

:func:`load_weights` is how every bundle puts weights into a network (``$unimedi_monai.io.load_weights(...)``):
a bundle's own ``models/model.pt`` into the whole network, or the student / EMA-teacher vision encoder
of the pre-training bundle's ``models/model.pt`` into a downstream network's ``encoder``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from unimedi_monai.io.atomic_io import atomic_open

__all__ = [
    "atomic_save",
    "safe_load",
    "list_checkpoints",
    "load_latest_checkpoint",
    "load_weights",
    "non_finite_entries",
    "CheckpointMismatchError",
    "describe_mismatch",
    "PRETRAINED_PREFIXES",
    "WEIGHT_SOURCES",
    "INIT_MODES",
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
        raise RuntimeError(
            f"cannot read checkpoint '{path}' ({type(err).__name__}: {err}); it may be truncated or not a weights file."
        ) from err


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


def load_latest_checkpoint(
    save_dir: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[dict, Path] | None:
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
        logger.warning(
            "none of the %d checkpoints in %s can be read: training starts again from iteration 0.",
            len(found),
            save_dir,
        )
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
        e.g. ``"2 missing keys [a, b], 1 unexpected key [c], 1 shape mismatch [d (3, 4) in the checkpoint vs
        (3, 8) in the network]"``, or ``"keys and shapes match"``.
    """
    own = network.state_dict()
    missing = [] if shapes_only else [k for k in own if k not in state]
    unexpected = [] if shapes_only else [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(v.shape)} in the checkpoint vs {tuple(own[k].shape)} in the network"
        for k, v in state.items()
        if k in own and isinstance(v, torch.Tensor) and tuple(v.shape) != tuple(own[k].shape)
    ]
    parts = [
        f"{len(x)} {name}{'' if len(x) == 1 else plural} {_listed(x)}"
        for x, name, plural in (
            (missing, "missing key", "s"),
            (unexpected, "unexpected key", "s"),
            (shapes, "shape mismatch", "es"),
        )
        if x
    ]
    return ", ".join(parts) if parts else "keys and shapes match"


def non_finite_entries(state_dict: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold NaN or inf."""
    return [
        k
        for k, v in state_dict.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]


def _extract_state_dict(obj: Any, key: str | None) -> Mapping[str, torch.Tensor]:
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            raise CheckpointMismatchError(
                f"checkpoint has no '{key}' entry; found "
                f"{sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__}."
            )
        return obj[key]
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    for candidate in ("network", "model", "state_dict"):
        if isinstance(obj, Mapping) and candidate in obj:
            return obj[candidate]
    raise CheckpointMismatchError("checkpoint holds no state dict (expected tensors, or a 'network' / 'model' entry).")


#: checkpoint key prefixes of the pre-training bundle's vision encoder: the student and the EMA teacher.
PRETRAINED_PREFIXES = {"student": "encoder.", "teacher": "teacher.encoder."}
#: values of :func:`load_weights`' ``source``: the whole network, or one encoder of a pre-training checkpoint.
WEIGHT_SOURCES = ("network", *PRETRAINED_PREFIXES)
#: values of the bundles' ``init`` key: load the weights, or keep the network's own initialisation.
INIT_MODES = ("pretrained", "random")

Net = TypeVar("Net", bound=nn.Module)


def _encoder_of(network: nn.Module) -> nn.Module:
    encoder = getattr(network, "encoder", None)
    return encoder if isinstance(encoder, nn.Module) else network


def _absent_message(path: str | os.PathLike | None, source: str) -> str:
    if source == "network":
        return (
            f"checkpoint '{path}' does not exist; run train.yaml first (a training run writes models/model.pt at its "
            "first validation, so val_interval must be <= max_epochs), or set model_path to the weights file."
        )
    return (
        f"pretrained_path '{path}' does not exist; run the pretrain bundle first, set --pretrained_path to its "
        "models/model.pt, or use --init random for the from-scratch baseline."
    )


def load_weights(
    network: Net,
    path: str | os.PathLike | None,
    source: str = "network",
    strict: bool = True,
    init: str = "pretrained",
    key: str | None = None,
    map_location: str | torch.device = "cpu",
) -> Net:
    """Load a checkpoint's weights into ``network`` (in place) and return it, with the report in
    ``network.load_report``.

    Two kinds of checkpoint:

    - ``source="network"``: the network's own weights: a bundle's ``models/model.pt`` (a bare state
      dict) or a training checkpoint (its ``network`` entry), loaded into the whole network. A network
      may take a part of a larger state dict by overriding ``load_state_dict`` (the pre-training
      bundle's inference network drops the report encoder of a whole UniMedI state dict).
    - ``source="student"`` / ``"teacher"``: the student or EMA-teacher vision encoder of the
      pre-training bundle's ``models/model.pt`` (keys under ``encoder.`` / ``teacher.encoder.``, the
      attribute names of :class:`~unimedi_monai.networks.vision_encoder.UnifiedVisionEncoder`), loaded
      into ``network.encoder`` (a classifier's or a segmentation network's; ``network`` itself when it
      has none). Encoder parts of the checkpoint the target does not use (a 3D network does not use
      the 2D tokenizer) are reported as unexpected; the rest of the network (head, decoder) is left
      as it is.

    Shape mismatches always raise. A network may define ``checkpoint_mismatch_hint(state) -> str | None``,
    a sentence explaining a checkpoint that does not fit it (the classifier: another number of classes),
    raised before the generic report.

    Args:
        network: the target module.
        path: the checkpoint file (None only with ``init="random"``).
        source: ``"network"``, ``"student"`` or ``"teacher"`` (see above).
        strict: every weight of the target must come from the checkpoint (missing keys raise) and, with
            ``source="network"``, every checkpoint entry must be used (unexpected keys raise). False
            loads the overlap.
        init: a training bundle's ``init`` key: ``"pretrained"`` loads, ``"random"`` loads nothing and
            keeps the network's own initialisation (the from-scratch baseline).
        key: entry of the checkpoint holding the state dict (auto-detected when None).
        map_location: device the tensors are read to.

    Returns:
        ``network``; ``network.load_report`` is ``{"loaded": [...], "missing": [...], "unexpected": [...]}``
        (keys of the target, so relative to ``encoder.`` for an encoder source), None with ``init="random"``.

    Raises:
        ValueError: an unknown ``init`` or ``source``.
        FileNotFoundError: no file at ``path``, saying which run writes it.
        CheckpointMismatchError: one line naming the file and the missing / unexpected / mis-shaped keys.

    Example::

        net = load_weights(UniMedIUNETR(14, backbone="demo"), "bundles/pretrain/models/model.pt", source="teacher")
        load_weights(net, "bundles/bcv_segmentation/models/model.pt")   # a trained segmentation network
    """
    if init not in INIT_MODES:
        raise ValueError(f"init must be one of {list(INIT_MODES)} (config key 'init'), got {init!r}.")
    if source not in WEIGHT_SOURCES:
        raise ValueError(
            f"source must be one of {list(WEIGHT_SOURCES)} (config key 'pretrained_source'), got {source!r}."
        )
    network.load_report = None  # type: ignore[assignment]
    if init == "random":
        logger.info(
            "init=random: %s keeps its own initialisation, no weights loaded (from-scratch baseline)",
            type(network).__name__,
        )
        return network
    if path is None or not Path(path).is_file():
        raise FileNotFoundError(_absent_message(path, source))
    target = network if source == "network" else _encoder_of(network)
    prefix = PRETRAINED_PREFIXES.get(source, "")
    state = dict(_extract_state_dict(safe_load(path, map_location), key))
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise CheckpointMismatchError(
                f"checkpoint '{path}' has no keys starting with '{prefix}'; it is not a pre-training checkpoint (the "
                "pretrain bundle's models/model.pt)."
            )
    hint = getattr(target, "checkpoint_mismatch_hint", None)
    message = hint(state) if callable(hint) else None
    if message:
        raise CheckpointMismatchError(f"checkpoint '{path}' {message}")
    own = target.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        raise CheckpointMismatchError(
            f"checkpoint '{path}' does not fit the network: {describe_mismatch(target, state, shapes_only=True)}; "
            "shape mismatches are never loaded: use the backbone preset (and text model) it was trained with."
        )
    result = target.load_state_dict(state, strict=False)
    report = {
        "loaded": [k for k in state if k in own],
        "missing": list(result.missing_keys),
        "unexpected": list(result.unexpected_keys),
    }
    if strict and report["missing"] and prefix:
        raise CheckpointMismatchError(
            f"checkpoint '{path}' lacks {len(report['missing'])} {type(target).__name__} keys under '{prefix}' "
            f"{_listed(report['missing'])}; it is not a pre-training checkpoint of this backbone preset (config key "
            "'backbone')."
        )
    if strict and not prefix and (report["missing"] or report["unexpected"]):
        raise CheckpointMismatchError(
            f"checkpoint '{path}' does not fit the network: {describe_mismatch(target, state)}; "
            "check the backbone preset, or pass strict=False to load the overlap."
        )
    if prefix:
        logger.info(
            "pre-trained %s encoder from %s: %d keys loaded, %d missing, %d unexpected (unused: %s)",
            source,
            path,
            len(report["loaded"]),
            len(report["missing"]),
            len(report["unexpected"]),
            sorted({k.split(".")[0] for k in report["unexpected"]}),
        )
    else:
        logger.info(
            "loaded %d tensors from %s into %s (%d missing, %d unexpected)",
            len(report["loaded"]),
            path,
            type(network).__name__,
            len(report["missing"]),
            len(report["unexpected"]),
        )
    network.load_report = report  # type: ignore[assignment]
    return network
