# SPDX-License-Identifier: Apache-2.0
""":func:`bundle_item`: one item of a bundle config, parsed, for code that reuses what the YAML lists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["bundle_item"]


def bundle_item(
    config_file: str | Path | Sequence[str | Path], id: str, overrides: Mapping[str, Any] | None = None
) -> Any:
    """Parse one item of a bundle config (e.g. its pre-processing), so that the YAML stays its one definition.

    Only ``id`` and what it references are instantiated (no ``initialize`` step runs, no output folder is
    touched).

    Args:
        config_file: the config file, or a list of them merged in order as ``monai.bundle run`` does.
        id: the config id to parse, e.g. ``"train#transforms"``.
        overrides: ``{config id: value}`` set before parsing, as ``--key value`` on the command line would.

    Returns:
        the parsed item (e.g. a ``Compose``).

    Raises:
        FileNotFoundError: a config file is missing.
        KeyError: ``id`` is not in the config (naming the file).

    Example::

        config = "bundles/bcv_segmentation/configs/train.yaml"
        train_tf = bundle_item(config, "train#transforms", {"roi_size": [32, 32, 8]})
    """
    from monai.bundle import ConfigParser

    files = [config_file] if isinstance(config_file, (str, Path)) else list(config_file)
    for path in files:
        if not Path(path).is_file():
            raise FileNotFoundError(f"bundle_item: config file '{path}' does not exist.")
    parser = ConfigParser()
    parser.read_config([str(p) for p in files])
    for key, value in (overrides or {}).items():
        parser[key] = value
    if id not in parser:
        raise KeyError(f"bundle_item: no config id '{id}' in {', '.join(str(p) for p in files)}.")
    return parser.get_parsed_content(id)
