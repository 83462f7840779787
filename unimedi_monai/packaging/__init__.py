"""MONAI ecosystem tooling: metadata checks, the inference network of the pre-training bundle, model-zoo packing.

- :mod:`~unimedi_monai.packaging.metadata`: bundle discovery, schema validation, the lock and version checks.
- :mod:`~unimedi_monai.packaging.embedding_network`: :class:`ImageEmbeddingNetwork` (image -> embedding).
- :mod:`~unimedi_monai.packaging.embed`: the pre-training bundle's ``inference.yaml`` workflow.
- :mod:`~unimedi_monai.packaging.pack`: ``<name>_v<version>.zip`` with ``large_files.yml``.

Command line: ``python -m unimedi_monai.packaging pack bundles/<name> --out dist/`` (see ``__main__``).
"""

from unimedi_monai.packaging.embed import embed_images, infer_modality, list_images
from unimedi_monai.packaging.embedding_network import ImageEmbeddingNetwork
from unimedi_monai.packaging.metadata import (
    META_SCHEMA,
    bundle_name,
    check_metadata,
    declared_versions,
    find_bundles,
    installed_version,
    read_lock,
    read_metadata,
    sync_metadata_versions,
    validate_metadata,
    version_mismatches,
    warn_version_mismatches,
)
from unimedi_monai.packaging.pack import MAX_FILE_SIZE, PackResult, file_hash, pack_bundle

__all__ = [
    "ImageEmbeddingNetwork",
    "MAX_FILE_SIZE",
    "META_SCHEMA",
    "PackResult",
    "bundle_name",
    "check_metadata",
    "declared_versions",
    "embed_images",
    "file_hash",
    "find_bundles",
    "infer_modality",
    "installed_version",
    "list_images",
    "pack_bundle",
    "read_lock",
    "read_metadata",
    "sync_metadata_versions",
    "validate_metadata",
    "version_mismatches",
    "warn_version_mismatches",
]
