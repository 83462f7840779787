# SPDX-License-Identifier: Apache-2.0
"""Loading the pre-trained UniMedI vision encoder into a downstream network's encoder.

The pre-training bundle's ``models/model.pt`` (or a training checkpoint's ``network`` entry) holds
the student vision encoder under ``encoder.`` and the EMA teacher's under ``teacher.encoder.``, with
the attribute names of :class:`~unimedi_monai.networks.vision_encoder.UnifiedVisionEncoder`
(``tokenizer_2d``, ``tokenizer_3d``, ``backbone``, ``mask_token``). A downstream encoder that keeps
those names for the parts it uses (the 3D segmentation network: ``tokenizer_3d`` and ``backbone``;
the 2D one: ``tokenizer_2d`` and ``backbone``) loads them with :func:`load_pretrained_encoder`; the
parts it does not use are reported as unexpected.
"""

from __future__ import annotations

import logging
import os

from torch import nn

__all__ = ["PRETRAINED_PREFIXES", "load_pretrained_encoder"]

logger = logging.getLogger(__name__)

#: checkpoint key prefixes of the pre-training bundle's vision encoder: the student and the EMA teacher.
PRETRAINED_PREFIXES = {"student": "encoder.", "teacher": "teacher.encoder."}


def load_pretrained_encoder(encoder: nn.Module, path: str | os.PathLike, source: str = "student") -> dict[str, list[str]]:
    """Load the student or teacher vision encoder of a pre-training checkpoint into ``encoder``.

    Every key of ``encoder`` must be in the checkpoint (with its shape); checkpoint keys that
    ``encoder`` lacks (e.g. the tokenizer of the other modality) are reported as unexpected. The
    loaded, missing and unexpected keys are logged.

    Args:
        encoder: the downstream network's encoder (attribute names of ``UnifiedVisionEncoder``).
        path: checkpoint file.
        source: ``"student"`` or ``"teacher"`` (the EMA teacher, as DINO evaluates).

    Returns:
        ``{"loaded": [...], "missing": [...], "unexpected": [...]}`` (keys relative to the prefix).

    Raises:
        ValueError: an unknown ``source``.
        CheckpointMismatchError: the checkpoint has no encoder keys, misses some of ``encoder``'s, or
            has other shapes (e.g. another backbone preset), in one line naming the file.

    Example::

        report = load_pretrained_encoder(net.encoder, "bundles/pretrain/models/model.pt", "teacher")
    """
    from unimedi_monai.engines.checkpoint import CheckpointMismatchError, load_network_weights

    if source not in PRETRAINED_PREFIXES:
        raise ValueError(f"source must be one of {sorted(PRETRAINED_PREFIXES)}, got {source!r}.")
    report = load_network_weights(encoder, path, prefix=PRETRAINED_PREFIXES[source], strict=False)
    if report["missing"]:
        raise CheckpointMismatchError(
            f"checkpoint '{path}' lacks {len(report['missing'])} encoder keys {report['missing'][:5]}; "
            f"it is not a pre-training checkpoint of this backbone preset."
        )
    logger.info(
        "pre-trained %s encoder from %s: %d keys loaded, %d missing, %d unexpected (unused: %s)",
        source, path, len(report["loaded"]), len(report["missing"]), len(report["unexpected"]),
        sorted({k.split(".")[0] for k in report["unexpected"]}),
    )
    return report
