# SPDX-License-Identifier: Apache-2.0
"""Pack a bundle as a model-zoo zip: ``<name>_v<version>.zip`` holding ``<name>/``."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from unimedi_monai.io.atomic_io import atomic_open
from unimedi_monai.packaging.metadata import bundle_name, check_metadata, read_metadata

__all__ = ["MAX_FILE_SIZE", "EXCLUDED_PATTERNS", "PackResult", "file_hash", "pack_bundle"]

MAX_FILE_SIZE = 25 * 1024 * 1024  # the model zoo's limit for files inside a bundle
# runtime outputs and caches; training checkpoints (models/model.pt and models/model.ts are kept)
EXCLUDED_PATTERNS: tuple[str, ...] = (
    "eval/*",
    "logs/*",
    "runs/*",
    "cache/*",
    "demo_data/*",
    "demo_eval_data/*",
    "dist/*",
    "models/checkpoint_*",
    "models/*.tmp*",
    "*/__pycache__/*",
    "__pycache__/*",
    "*.pyc",
    ".*",
    "*/.*",
    "large_files.yml",
    "large_files.yaml",
    "large_files.json",
)
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # fixed entry times: the same bundle gives the same zip


@dataclass
class PackResult:
    """What :func:`pack_bundle` wrote: the zip, the files in it, the large files left out (``large_files.yml``
    entries)."""

    zip_path: Path
    files: list[str] = field(default_factory=list)
    large_files: list[dict[str, str]] = field(default_factory=list)


def file_hash(path: str | os.PathLike, hash_type: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file (``md5``, ``sha1``, ``sha256`` or ``sha512``, the types MONAI's download checks)."""
    h = hashlib.new(hash_type)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _excluded(rel: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(rel, p) for p in patterns)


def pack_bundle(
    bundle_dir: str | os.PathLike,
    out_dir: str | os.PathLike = "dist",
    url_template: str | None = None,
    max_file_size: int = MAX_FILE_SIZE,
    hash_type: str = "sha256",
    exclude: Sequence[str] = (),
    check: bool = True,
) -> PackResult:
    """Write ``<out_dir>/<name>_v<version>.zip`` that unpacks to ``<name>/`` (what ``monai.bundle download`` expects).

    Files larger than ``max_file_size`` (25 MB, the model-zoo limit) are left out and listed in the
    zip's ``<name>/large_files.yml`` (``large_files: [{path, url, hash_val, hash_type}]``), from where
    ``python -m monai.bundle download_large_files --bundle_path <name>`` fetches them and checks
    their hash. Upload each such file to the URL given by ``url_template``.

    Args:
        bundle_dir: the bundle folder (``configs/metadata.json`` inside).
        out_dir: folder for the zip (created).
        url_template: download URL of a large file, with ``{name}``, ``{version}``, ``{path}`` (path in
            the bundle) and ``{filename}`` (its base name) placeholders, e.g.
            ``https://github.com/OWNER/REPO/releases/download/{name}_v{version}/{filename}``.
            Required only when a file is over ``max_file_size``.
        max_file_size: bytes; larger files go to ``large_files.yml``.
        hash_type: hash recorded for large files.
        exclude: extra glob patterns (relative to the bundle) to leave out.
        check: run :func:`~unimedi_monai.packaging.metadata.check_metadata` first (schema, changelog;
            not the installed versions).

    Returns:
        :class:`PackResult`.

    Raises:
        ValueError: a large file and no ``url_template``; the message names the file and the option.
    """
    bundle_dir = Path(bundle_dir).resolve()
    if check:
        check_metadata(bundle_dir, check_versions=False)
    metadata = read_metadata(bundle_dir)
    name, version = bundle_name(bundle_dir), str(metadata["version"])
    patterns = tuple(EXCLUDED_PATTERNS) + tuple(exclude)

    files, large = [], []
    for path in sorted(p for p in bundle_dir.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(bundle_dir).as_posix()
        if _excluded(rel, patterns):
            continue
        if path.is_symlink() or not path.is_file():
            raise ValueError(f"{path}: links are not packed; replace it with the file or add it to the exclusions.")
        if path.stat().st_size > max_file_size:
            if url_template is None:
                raise ValueError(
                    f"{path} is {path.stat().st_size / 2**20:.2f} MB, over the {max_file_size / 2**20:g} MB limit; "
                    "pass --url_template (where the file will be uploaded) so it is listed in large_files.yml."
                )
            url = url_template.format(name=name, version=version, path=rel, filename=path.name)
            large.append({"path": rel, "url": url, "hash_val": file_hash(path, hash_type), "hash_type": hash_type})
            continue
        files.append(rel)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"{name}_v{version}.zip"
    with atomic_open(zip_path, "wb") as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel in files:
            info = zipfile.ZipInfo(f"{name}/{rel}", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with open(bundle_dir / rel, "rb") as src, zf.open(info, "w") as dst:
                for block in iter(lambda: src.read(1 << 20), b""):
                    dst.write(block)
        if large:
            info = zipfile.ZipInfo(f"{name}/large_files.yml", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, yaml.safe_dump({"large_files": large}, sort_keys=False))
    return PackResult(zip_path=zip_path, files=files, large_files=large)
