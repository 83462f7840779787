# SPDX-License-Identifier: Apache-2.0
"""Where the pre-training data comes from: the user's folder with a datalist, or the built-in demo set."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

__all__ = ["resolve_dataset_dir"]

logger = logging.getLogger(__name__)


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
    if dataset_dir is None or str(dataset_dir) in ("", "demo"):
        import torch.distributed as dist

        from unimedi_monai.data.demo import generate_demo_dataset

        distributed = dist.is_available() and dist.is_initialized()
        if distributed and dist.get_rank() != 0:
            dist.barrier()  # rank 0 generates first; the others then find it complete
        path = generate_demo_dataset(demo_dir, **dict(demo or {}))
        if distributed and dist.get_rank() == 0:
            dist.barrier()
        logger.info("using the built-in demo data in %s", Path(path).parent)
        return str(Path(path).parent)
    folder = Path(dataset_dir).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset_dir '{folder}' does not exist; set dataset_dir to your data folder (or leave it null for the demo data).")
    if datalist is None and not (folder / "datalist.json").is_file():
        raise FileNotFoundError(
            f"dataset_dir '{folder}' has no datalist.json; write one with `python -m unimedi_monai.data.prepare` or set the datalist key."
        )
    return str(folder.resolve())
