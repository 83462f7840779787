# SPDX-License-Identifier: Apache-2.0
"""MONAI ecosystem tooling: metadata checks, the inference network of the pre-training bundle, model-zoo packing.

- :mod:`~unimedi_monai.packaging.metadata`: bundle discovery, schema validation, the lock and version checks.
- :mod:`~unimedi_monai.packaging.embedding_network`: :class:`ImageEmbeddingNetwork` (image -> embedding).
- :mod:`~unimedi_monai.packaging.embed`: the pre-training bundle's ``inference.yaml`` workflow.
- :mod:`~unimedi_monai.packaging.pack`: ``<name>_v<version>.zip`` with ``large_files.yml``.

Command line: ``python -m unimedi_monai.packaging pack bundles/<name> --out dist/`` (see ``__main__``).
"""

from __future__ import annotations

from unimedi_monai.lazy_exports import lazy_exports

_EXPORTS = {
    "embed_images": "embed",
    "infer_modality": "embed",
    "list_images": "embed",
    "ImageEmbeddingNetwork": "embedding_network",
    "META_SCHEMA": "metadata",
    "bundle_name": "metadata",
    "check_metadata": "metadata",
    "declared_versions": "metadata",
    "find_bundles": "metadata",
    "installed_version": "metadata",
    "read_lock": "metadata",
    "read_metadata": "metadata",
    "sync_metadata_versions": "metadata",
    "validate_metadata": "metadata",
    "version_mismatches": "metadata",
    "warn_version_mismatches": "metadata",
    "MAX_FILE_SIZE": "pack",
    "PackResult": "pack",
    "file_hash": "pack",
    "pack_bundle": "pack",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
