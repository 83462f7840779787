# SPDX-License-Identifier: Apache-2.0
"""The lowest layer: atomic file writes, checkpoint reading and writing, the one weight loader, rank 0.

Every other package (networks, losses, data, engines, the downstream stages, packaging, label)
imports from here and nothing here imports from them. Names load on first use, like
:mod:`unimedi_monai.data`, so ``import unimedi_monai.io`` pulls in neither torch nor MONAI and bundle
configs can reference ``$unimedi_monai.io.load_weights(...)`` after ``$import unimedi_monai``.
"""

from __future__ import annotations

from unimedi_monai.lazy_exports import lazy_exports

_EXPORTS = {
    "TMP_SUFFIX": "atomic_io",
    "atomic_open": "atomic_io",
    "describe_target": "atomic_io",
    "file_mode": "atomic_io",
    "register_output_folder": "atomic_io",
    "remove_stale_temporaries": "atomic_io",
    "write_json_atomic": "atomic_io",
    "CheckpointMismatchError": "checkpoint",
    "INIT_MODES": "checkpoint",
    "PRETRAINED_PREFIXES": "checkpoint",
    "WEIGHT_SOURCES": "checkpoint",
    "atomic_save": "checkpoint",
    "describe_mismatch": "checkpoint",
    "list_checkpoints": "checkpoint",
    "load_latest_checkpoint": "checkpoint",
    "load_weights": "checkpoint",
    "non_finite_entries": "checkpoint",
    "safe_load": "checkpoint",
    "is_rank0": "rank",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
