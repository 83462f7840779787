"""Bundle discovery and the checks on ``configs/metadata.json`` that MONAI's tools rely on."""

from __future__ import annotations

import json
import os
import re
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Mapping

__all__ = [
    "REPO_ROOT",
    "META_SCHEMA",
    "find_bundles",
    "read_metadata",
    "bundle_name",
    "validate_metadata",
    "installed_version",
    "version_mismatches",
    "check_metadata",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
META_SCHEMA = REPO_ROOT / "schemas" / "meta_schema.json"
_TOP_LEVEL_PACKAGES = {"monai_version": "monai", "pytorch_version": "torch", "numpy_version": "numpy"}


def find_bundles(bundles_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders under ``bundles_dir`` (default: the repository's ``bundles/``) with a ``configs/metadata.json``, sorted."""
    root = Path(bundles_dir) if bundles_dir is not None else REPO_ROOT / "bundles"
    return sorted(p.parent.parent for p in root.glob("*/configs/metadata.json"))


def read_metadata(bundle_dir: str | os.PathLike) -> dict[str, Any]:
    """``configs/metadata.json`` of a bundle, with a one-line error naming the file when it is missing or invalid."""
    path = Path(bundle_dir) / "configs" / "metadata.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; a bundle needs configs/metadata.json.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}).") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}.")
    return data


def bundle_name(bundle_dir: str | os.PathLike) -> str:
    """The bundle's model-zoo name: ``name`` in its metadata, else the folder name."""
    name = read_metadata(bundle_dir).get("name") or Path(bundle_dir).name
    if not re.fullmatch(r"[A-Za-z0-9_]+", str(name)):
        raise ValueError(f"{Path(bundle_dir) / 'configs' / 'metadata.json'}: 'name' {name!r} must use letters, digits and '_' only.")
    return str(name)


def validate_metadata(metadata: Mapping[str, Any], schema_path: str | os.PathLike = META_SCHEMA, source: str = "metadata") -> None:
    """Validate ``metadata`` against the JSON schema kept in the repository.

    Raises:
        ValueError: one line: ``source``, the key path and what is wrong (e.g. a missing required key).
    """
    import jsonschema

    schema = json.loads(Path(schema_path).read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(dict(metadata)), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = errors[0]
        where = "#".join(str(p) for p in err.absolute_path) or "(top level)"
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise ValueError(f"{source}: key {where}: {err.message}{more}; see {schema_path}.")


def installed_version(package: str) -> str | None:
    """The installed version of a distribution (local build tags such as ``+cpu`` removed), or None."""
    try:
        version = importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return None
    return version.split("+")[0]


def version_mismatches(metadata: Mapping[str, Any]) -> list[str]:
    """``monai_version`` / ``pytorch_version`` / ``numpy_version`` / ``required_packages_version`` entries that differ from what is installed.

    Returns:
        one line per mismatch, e.g. ``"numpy_version: metadata 2.4.5, installed 2.4.6"``.
    """
    problems = []
    pairs = [(key, pkg, metadata.get(key)) for key, pkg in _TOP_LEVEL_PACKAGES.items()]
    pairs += [(f"required_packages_version#{pkg}", pkg, ver) for pkg, ver in dict(metadata.get("required_packages_version") or {}).items()]
    for key, pkg, declared in pairs:
        if declared is None:
            continue
        found = installed_version(pkg)
        if found is None:
            problems.append(f"{key}: metadata {declared}, but {pkg} is not installed")
        elif found != str(declared).split("+")[0]:
            problems.append(f"{key}: metadata {declared}, installed {found}")
    return problems


def check_metadata(bundle_dir: str | os.PathLike, schema_path: str | os.PathLike = META_SCHEMA, check_versions: bool = True) -> dict[str, Any]:
    """Every metadata check of one bundle: the schema, a changelog entry for ``version``, installed versions.

    Args:
        bundle_dir: the bundle folder.
        schema_path: the JSON schema (default ``schemas/meta_schema.json``).
        check_versions: compare the declared package versions with the installed ones.

    Returns:
        the metadata.

    Raises:
        ValueError: one line naming the metadata file, the key and the fix.
    """
    path = Path(bundle_dir) / "configs" / "metadata.json"
    metadata = read_metadata(bundle_dir)
    validate_metadata(metadata, schema_path, source=str(path))
    version = metadata["version"]
    if version not in metadata["changelog"]:
        raise ValueError(f"{path}: key changelog has no entry for the current version {version!r}; add one saying what changed.")
    if check_versions:
        problems = version_mismatches(metadata)
        if problems:
            raise ValueError(f"{path}: versions differ from the installed packages: {'; '.join(problems)}; update the metadata (and its changelog).")
    return metadata
