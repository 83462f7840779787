# SPDX-License-Identifier: Apache-2.0
"""Where the data comes from: the user's folder, or a built-in demo set generated once (rank 0 first).

:func:`resolve_data_folder` is the one demo-folder resolution of the project: the pre-training data
(:func:`resolve_dataset_dir`), the lesion X-ray demo
(:func:`unimedi_monai.segmentation.resolve_xray_segmentation_data`) and the organ phantoms
(:func:`unimedi_monai.segmentation.resolve_segmentation_data`) all go through it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["is_demo_request", "resolve_data_folder", "resolve_dataset_dir"]

logger = logging.getLogger(__name__)


def is_demo_request(dataset_dir: str | os.PathLike | None) -> bool:
    """Whether the config key ``dataset_dir`` asks for the built-in demo data (None, ``""`` or ``"demo"``)."""
    return dataset_dir is None or str(dataset_dir) in ("", "demo")


def resolve_data_folder(
    dataset_dir: str | os.PathLike | None,
    generate: Callable[[], str | os.PathLike],
    folder_hint: str = "your data folder",
    demo_hint: str = "the demo data",
) -> str:
    """Return ``dataset_dir`` (resolved), or the folder of the demo datalist that ``generate`` writes.

    Under ``torch.distributed`` rank 0 generates first and the other ranks wait at a barrier, then find
    the demo complete (the generators reuse a complete folder).

    Args:
        dataset_dir: the config key ``dataset_dir``; None, ``""`` or ``"demo"`` for the demo data.
        generate: writes the demo (or finds it complete) and returns the path of its datalist file.
        folder_hint: what ``dataset_dir`` should be, named in the error message.
        demo_hint: what leaving it null gives, named in the error message.

    Raises:
        FileNotFoundError: ``dataset_dir`` is set and is not a folder (one line naming the key).
    """
    if is_demo_request(dataset_dir):
        import torch.distributed as dist

        distributed = dist.is_available() and dist.is_initialized()
        if distributed and dist.get_rank() != 0:
            dist.barrier()  # rank 0 generates first; the others then find it complete
        path = generate()
        if distributed and dist.get_rank() == 0:
            dist.barrier()
        return str(Path(path).parent)
    folder = Path(dataset_dir).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"dataset_dir '{folder}' does not exist; set dataset_dir to {folder_hint} (or leave it null for "
            f"{demo_hint})."
        )
    return str(folder.resolve())


def resolve_dataset_dir(
    dataset_dir: str | os.PathLike | None,
    demo_dir: str | os.PathLike,
    datalist: str | os.PathLike | None = None,
    demo: Mapping[str, Any] | None = None,
) -> str:
    """Return the data folder to train on, generating the demo data when none is given.

    Args:
        dataset_dir: the user's data folder (config key ``dataset_dir``); None or ``"demo"`` for the
            built-in demo data.
        demo_dir: where the demo data is generated (reused when already complete).
        datalist: the ``datalist`` key: a datalist file other than ``dataset_dir/datalist.json``.
        demo: arguments of :func:`unimedi_monai.data.demo.generate_demo_dataset` (n_xray, n_ct, seed).

    Raises:
        FileNotFoundError: ``dataset_dir`` does not exist or holds no datalist (one line naming the
            key to set).
    """

    def generate() -> Path:
        from unimedi_monai.data.demo import generate_demo_dataset

        return generate_demo_dataset(demo_dir, **dict(demo or {}))

    folder = resolve_data_folder(dataset_dir, generate)
    if is_demo_request(dataset_dir):
        logger.info("using the built-in demo data in %s", folder)
        return folder
    if datalist is None and not (Path(folder) / "datalist.json").is_file():
        raise FileNotFoundError(
            f"dataset_dir '{Path(dataset_dir).expanduser()}' has no datalist.json; write one with `python -m "
            "unimedi_monai.data.prepare` or set the datalist key."
        )
    return folder
