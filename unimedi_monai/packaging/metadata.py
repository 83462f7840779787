# SPDX-License-Identifier: Apache-2.0
"""Bundle discovery, the checks on ``configs/metadata.json`` that MONAI's tools rely on, and the lock.

The metadata schema ships inside the package (:data:`META_SCHEMA`, read through
``importlib.resources``), so an installed wheel validates bundles unpacked anywhere. The bundles'
declared package versions are the versions of the environment lock (``constraints/lock.txt`` in the
repository): :func:`sync_metadata_versions` writes them, :func:`version_mismatches` compares them
with the lock or with what is installed, and :func:`warn_version_mismatches` tells a user once when
a bundle runs with other versions (it does not fail).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from importlib import metadata as importlib_metadata
from importlib import resources
from pathlib import Path
from typing import Any

from unimedi_monai.json_files import read_json_object

__all__ = [
    "META_SCHEMA",
    "find_bundles",
    "read_metadata",
    "bundle_name",
    "validate_metadata",
    "installed_version",
    "canonical_name",
    "read_lock",
    "declared_versions",
    "version_mismatches",
    "warn_version_mismatches",
    "sync_metadata_versions",
    "check_metadata",
]

logger = logging.getLogger(__name__)

#: the bundle metadata JSON schema (MONAI's model-zoo schema with the keys this project requires)
META_SCHEMA = Path(str(resources.files("unimedi_monai.packaging").joinpath("meta_schema.json")))
_TOP_LEVEL_PACKAGES = {"monai_version": "monai", "pytorch_version": "torch", "numpy_version": "numpy"}
_PROJECT = "unimedi-monai"
_warned: set[str] = set()


def find_bundles(bundles_dir: str | os.PathLike) -> list[Path]:
    """Folders under ``bundles_dir`` with a ``configs/metadata.json``, sorted.

    Raises:
        FileNotFoundError: ``bundles_dir`` is not a folder.
    """
    root = Path(bundles_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"bundles folder {root} does not exist.")
    return sorted(p.parent.parent for p in root.glob("*/configs/metadata.json"))


def read_metadata(bundle_dir: str | os.PathLike) -> dict[str, Any]:
    """``configs/metadata.json`` of a bundle, with a one-line error naming the file when it is missing or invalid."""
    path = Path(bundle_dir) / "configs" / "metadata.json"
    return read_json_object(
        path, "bundle metadata", missing=f"{path} does not exist; a bundle needs configs/metadata.json."
    )


def bundle_name(bundle_dir: str | os.PathLike) -> str:
    """The bundle's model-zoo name: ``name`` in its metadata, else the folder name."""
    name = read_metadata(bundle_dir).get("name") or Path(bundle_dir).name
    if not re.fullmatch(r"[A-Za-z0-9_]+", str(name)):
        raise ValueError(
            f"{Path(bundle_dir) / 'configs' / 'metadata.json'}: 'name' {name!r} must use letters, digits and '_' only."
        )
    return str(name)


def validate_metadata(
    metadata: Mapping[str, Any], schema_path: str | os.PathLike = META_SCHEMA, source: str = "metadata"
) -> None:
    """Validate ``metadata`` against the JSON schema shipped in the package (:data:`META_SCHEMA`).

    Raises:
        ValueError: one line: ``source``, the key path and what is wrong (e.g. a missing required key).
    """
    import jsonschema

    schema = json.loads(Path(schema_path).read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(
        validator.iter_errors(dict(metadata)), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path)))
    )
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


def canonical_name(name: str) -> str:
    """PEP 503 name: ``SimpleITK`` and ``simpleitk``, ``pytorch_ignite`` and ``pytorch-ignite`` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(lock_file: str | os.PathLike) -> dict[str, str]:
    """``{normalised name: version}`` of a pip lock (``name==version`` lines, ``#`` comments).

    Raises:
        ValueError: a line that is not ``name==version``, naming the file and the line number.
    """
    path = Path(lock_file)
    versions: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if match is None:
            raise ValueError(f"{path}, line {number}: {raw.strip()!r} is not 'name==version'.")
        versions[canonical_name(match.group(1))] = match.group(2).split("+")[0]
    return versions


def declared_versions(metadata: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(metadata key, package, version)`` for every version a bundle's metadata declares."""
    pairs = [
        (key, pkg, str(metadata[key])) for key, pkg in _TOP_LEVEL_PACKAGES.items() if metadata.get(key) is not None
    ]
    pairs += [
        (f"required_packages_version#{pkg}", pkg, str(ver))
        for pkg, ver in dict(metadata.get("required_packages_version") or {}).items()
    ]
    return pairs


def version_mismatches(
    metadata: Mapping[str, Any], versions: Mapping[str, str] | None = None, source: str = "installed"
) -> list[str]:
    """Declared versions (``monai_version``, ``pytorch_version``, ``numpy_version``, ``required_packages_version``)
    that differ.

    Args:
        metadata: a bundle's metadata.
        versions: ``{package: version}`` to compare with (e.g. :func:`read_lock`); None for the
            installed distributions. ``unimedi-monai`` is compared with the installed package.
        source: the word used for ``versions`` in the messages.

    Returns:
        one line per mismatch, e.g. ``"numpy_version: metadata 2.4.5, installed 2.4.6"``.
    """
    wanted = None if versions is None else {canonical_name(k): str(v).split("+")[0] for k, v in versions.items()}
    problems = []
    for key, pkg, declared in declared_versions(metadata):
        found = (
            installed_version(pkg)
            if wanted is None or canonical_name(pkg) == _PROJECT
            else wanted.get(canonical_name(pkg))
        )
        label = "installed" if wanted is None or canonical_name(pkg) == _PROJECT else source
        if found is None:
            problems.append(f"{key}: metadata {declared}, but {pkg} is not {label}")
        elif found != declared.split("+")[0]:
            problems.append(f"{key}: metadata {declared}, {label} {found}")
    return problems


def warn_version_mismatches(bundle_dir: str | os.PathLike) -> list[str]:
    """Log one warning (once per bundle and process) when the installed packages differ from the bundle's metadata.

    The bundle still runs: other versions may work, but they are not the tested set
    (``constraints/lock.txt``). Unreadable metadata is left to the checks that need it.

    Returns:
        the mismatches (empty when the versions agree or the metadata cannot be read).
    """
    key = str(Path(bundle_dir).resolve())
    try:
        problems = version_mismatches(read_metadata(bundle_dir))
    except (OSError, ValueError):
        return []
    if problems and key not in _warned:
        _warned.add(key)
        logger.warning(
            "%s: running with package versions other than the tested ones (%s); results may differ. "
            "The tested set is the repository's constraints/lock.txt (bash scripts/setup_env.sh installs it).",
            Path(bundle_dir) / "configs" / "metadata.json",
            "; ".join(problems),
        )
    return problems


def sync_metadata_versions(bundle_dir: str | os.PathLike, versions: Mapping[str, str]) -> list[str]:
    """Write ``versions`` (a lock) into a bundle's declared versions; bump the patch version when any changed.

    The file is edited in place line by line (its layout is kept); a changed bundle gets a new patch
    version and a changelog entry naming the packages that moved, as the model zoo asks.

    Args:
        bundle_dir: the bundle folder.
        versions: ``{package: version}``, e.g. :func:`read_lock` of ``constraints/lock.txt``, plus
            ``unimedi-monai`` (the project's own version).

    Returns:
        ``"package old -> new"`` for each change (empty: the file is untouched).

    Raises:
        ValueError: a declared package that ``versions`` does not hold, naming the metadata key.
    """
    from unimedi_monai.io.atomic_io import atomic_open

    path = Path(bundle_dir) / "configs" / "metadata.json"
    metadata = read_metadata(bundle_dir)
    wanted = {canonical_name(k): str(v).split("+")[0] for k, v in versions.items()}
    text = path.read_text(encoding="utf-8")
    changes = []
    for key, pkg, declared in declared_versions(metadata):
        new = wanted.get(canonical_name(pkg))
        if new is None:
            raise ValueError(f"{path}: {key} names {pkg}, which the lock does not hold; remove it or add the package.")
        if new == declared:
            continue
        name = key.rpartition("#")[2]
        pattern = re.compile(rf'("{re.escape(name)}"\s*:\s*)"{re.escape(declared)}"')
        if key.startswith("required_packages_version#"):
            block = re.search(r'"required_packages_version"\s*:\s*\{[^}]*\}', text)
            assert block is not None
            inner = pattern.sub(rf'\g<1>"{new}"', block.group(0), count=1)
            text = text[: block.start()] + inner + text[block.end() :]
        else:
            text = pattern.sub(rf'\g<1>"{new}"', text, count=1)
        changes.append(f"{pkg} {declared} -> {new}")
    if not changes:
        return []
    old_version = str(metadata["version"])
    major, minor, patch = (old_version.split(".") + ["0", "0"])[:3]
    patch_number = int(re.match(r"\d*", patch).group(0) or 0)
    new_version = f"{major}.{minor}.{patch_number + 1}"
    data = json.loads(text)
    data["version"] = new_version
    data["changelog"] = {new_version: f"tested with new package versions: {', '.join(changes)}", **data["changelog"]}
    text = re.sub(r'("version"\s*:\s*)"[^"]*"', rf'\g<1>"{new_version}"', text, count=1)
    text = re.sub(
        r'("changelog"\s*:\s*\{)(\s*)',
        lambda m: (
            f"{m.group(1)}{m.group(2)}{json.dumps(new_version)}: "
            f"{json.dumps(data['changelog'][new_version])},{m.group(2)}"
        ),
        text,
        count=1,
    )
    if json.loads(text) != data:  # the line edits must give exactly the intended metadata
        raise RuntimeError(
            f"{path}: could not update the versions in place; edit the file by hand ({'; '.join(changes)})."
        )
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return changes


def check_metadata(
    bundle_dir: str | os.PathLike,
    schema_path: str | os.PathLike = META_SCHEMA,
    check_versions: bool = True,
    versions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Every metadata check of one bundle: the schema, a changelog entry for ``version``, declared versions.

    Args:
        bundle_dir: the bundle folder.
        schema_path: the JSON schema (default: the one shipped in the package).
        check_versions: compare the declared package versions with ``versions``.
        versions: ``{package: version}`` to compare with, e.g. :func:`read_lock`; None for the
            installed packages.

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
        raise ValueError(
            f"{path}: key changelog has no entry for the current version {version!r}; add one saying what changed."
        )
    if check_versions:
        problems = version_mismatches(metadata, versions, source="locked")
        if problems:
            where = "the installed packages" if versions is None else "the lock"
            raise ValueError(
                f"{path}: versions differ from {where}: {'; '.join(problems)}; run "
                "`python -m unimedi_monai.packaging sync_versions` (scripts/update_lock.sh does it)."
            )
    return metadata
