# SPDX-License-Identifier: Apache-2.0
"""Command line: pack bundles for the model zoo, check their metadata, keep versions in line with the lock.

python -m unimedi_monai.packaging pack bundles/pretrain --out dist/ [--url_template URL] [--max_size_mb 25]
python -m unimedi_monai.packaging pack_all --out dist/ [--bundles_dir bundles]   # every bundle folder
python -m unimedi_monai.packaging check bundles/pretrain [--lock constraints/lock.txt]
python -m unimedi_monai.packaging sync_versions --lock constraints/lock.txt [--bundles_dir bundles]
python -m unimedi_monai.packaging check_env --lock constraints/lock.txt       # installed == lock
python -m unimedi_monai.packaging schema        # path of the metadata schema, for verify_metadata --filepath
"""

from __future__ import annotations

import sys

from unimedi_monai.packaging.metadata import (
    META_SCHEMA,
    canonical_name,
    check_metadata,
    find_bundles,
    installed_version,
    read_lock,
    sync_metadata_versions,
)
from unimedi_monai.packaging.pack import MAX_FILE_SIZE, pack_bundle


def pack(
    bundle: str, out: str = "dist", url_template: str | None = None, max_size_mb: float = MAX_FILE_SIZE / 2**20
) -> None:
    """Pack one bundle folder and print the zip's path (and the large files to upload)."""
    result = pack_bundle(bundle, out, url_template=url_template, max_file_size=int(max_size_mb * 2**20))
    print(
        f"{result.zip_path}: {len(result.files)} files"
        + (f", {len(result.large_files)} in large_files.yml" if result.large_files else "")
    )
    for entry in result.large_files:
        print(f"  upload {bundle}/{entry['path']} to {entry['url']} ({entry['hash_type']} {entry['hash_val']})")


def pack_all(
    out: str = "dist",
    bundles_dir: str = "bundles",
    url_template: str | None = None,
    max_size_mb: float = MAX_FILE_SIZE / 2**20,
) -> None:
    """Pack every bundle folder of ``bundles_dir`` (a folder holding ``<name>/configs/metadata.json``)."""
    for bundle in find_bundles(bundles_dir):
        pack(str(bundle), out, url_template, max_size_mb)


def check(bundle: str, versions: bool = True, lock: str | None = None) -> None:
    """Schema, changelog entry for the current version and (``versions``) the declared package versions,
    against ``lock`` when given, else against the installed packages."""
    metadata = check_metadata(bundle, check_versions=versions, versions=read_lock(lock) if lock else None)
    print(f"{bundle}: metadata of version {metadata['version']} is valid")


def sync_versions(lock: str, bundles_dir: str = "bundles") -> None:
    """Write the lock's versions into every bundle's metadata (a changed bundle gets a patch version and a changelog
    entry)."""
    import unimedi_monai

    versions = {**read_lock(lock), "unimedi-monai": unimedi_monai.__version__}
    for bundle in find_bundles(bundles_dir):
        changes = sync_metadata_versions(bundle, versions)
        print(f"{bundle}: " + (", ".join(changes) if changes else "up to date"))


def check_env(lock: str) -> None:
    """Compare the installed distributions with the lock: a missing or different package is an error, an extra one a
    warning."""
    from importlib import metadata as importlib_metadata

    locked = read_lock(lock)
    wrong = []
    for name, version in sorted(locked.items()):
        found = installed_version(name)
        if found != version:
            wrong.append(f"{name}: lock {version}, installed {found or 'nothing'}")
    installed = {canonical_name(d.metadata["Name"]) for d in importlib_metadata.distributions() if d.metadata["Name"]}
    extra = sorted(installed - set(locked) - {"unimedi-monai"})
    if extra:
        print(
            f"warning: installed but not in {lock}: {', '.join(extra)} (a CUDA torch brings its own; otherwise start "
            "from a new venv)",
            file=sys.stderr,
        )
    if wrong:
        raise ValueError(f"the environment differs from {lock}: {'; '.join(wrong)}")
    print(f"environment matches {lock} ({len(locked)} packages)")


def schema() -> None:
    """Print the path of the bundle metadata schema shipped in the package."""
    print(META_SCHEMA)


def main(argv: list[str] | None = None) -> None:
    import fire

    commands = {
        "pack": pack,
        "pack_all": pack_all,
        "check": check,
        "sync_versions": sync_versions,
        "check_env": check_env,
        "schema": schema,
    }
    try:
        fire.Fire(commands, command=argv, name="python -m unimedi_monai.packaging")
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
