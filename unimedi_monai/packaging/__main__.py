"""Command line: pack bundles for the model zoo and check their metadata.

    python -m unimedi_monai.packaging pack bundles/pretrain --out dist/ [--url_template URL] [--max_size_mb 25]
    python -m unimedi_monai.packaging pack_all --out dist/          # every bundles/*/
    python -m unimedi_monai.packaging check bundles/pretrain        # schema, changelog, installed versions
"""

from __future__ import annotations

import sys

from unimedi_monai.packaging.metadata import check_metadata, find_bundles
from unimedi_monai.packaging.pack import MAX_FILE_SIZE, pack_bundle


def pack(bundle: str, out: str = "dist", url_template: str | None = None, max_size_mb: float = MAX_FILE_SIZE / 2**20) -> None:
    """Pack one bundle folder and print the zip's path (and the large files to upload)."""
    result = pack_bundle(bundle, out, url_template=url_template, max_file_size=int(max_size_mb * 2**20))
    print(f"{result.zip_path}: {len(result.files)} files" + (f", {len(result.large_files)} in large_files.yml" if result.large_files else ""))
    for entry in result.large_files:
        print(f"  upload {bundle}/{entry['path']} to {entry['url']} ({entry['hash_type']} {entry['hash_val']})")


def pack_all(out: str = "dist", bundles_dir: str | None = None, url_template: str | None = None, max_size_mb: float = MAX_FILE_SIZE / 2**20) -> None:
    """Pack every ``bundles/*/`` with a ``configs/metadata.json``."""
    for bundle in find_bundles(bundles_dir):
        pack(str(bundle), out, url_template, max_size_mb)


def check(bundle: str, versions: bool = True) -> None:
    """Schema, changelog entry for the current version and (``versions``) installed package versions."""
    metadata = check_metadata(bundle, check_versions=versions)
    print(f"{bundle}: metadata of version {metadata['version']} is valid")


def main(argv: list[str] | None = None) -> None:
    import fire

    try:
        fire.Fire({"pack": pack, "pack_all": pack_all, "check": check}, command=argv, name="python -m unimedi_monai.packaging")
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
