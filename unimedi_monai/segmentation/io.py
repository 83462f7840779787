"""Inputs and outputs of segmentation inference: input lists and an atomic NIfTI writer."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

from monai.config import PathLike
from monai.data import NibabelWriter

__all__ = ["AtomicNibabelWriter", "inference_items"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicNibabelWriter(NibabelWriter):
    """MONAI's ``NibabelWriter`` writing to a temporary file beside the target, then renaming it into place,
    so an interrupted run never leaves a truncated label map under the final name.

    Use as ``SaveImaged(..., writer=AtomicNibabelWriter)``.
    """

    def write(self, filename: PathLike, verbose: bool = False, **obj_kwargs: Any) -> None:
        target = Path(filename)
        target.parent.mkdir(parents=True, exist_ok=True)
        suffix = "".join(target.suffixes[-2:]) if target.name.endswith(".nii.gz") else target.suffix
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
        os.close(fd)
        try:
            super().write(tmp, verbose=verbose, **obj_kwargs)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def inference_items(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[dict[str, str]]:
    """``[{"image": path}, ...]`` for CT files (NIfTI, NRRD, MHA) and DICOM series folders.

    Args:
        inputs: one path, a list of paths, or a ``.txt`` file listing one path per line.

    Raises:
        FileNotFoundError: a path does not exist (naming it).
        ValueError: no input given.
    """
    if inputs is None or (isinstance(inputs, (list, tuple)) and not inputs):
        raise ValueError("no input CT given; set the `input` key to a NIfTI file, a DICOM series folder or a list of them.")
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if len(paths) == 1 and str(paths[0]).endswith(".txt") and Path(paths[0]).is_file():
        listing = Path(paths[0])
        paths = [listing.parent / line.strip() if not os.path.isabs(line.strip()) else line.strip()
                 for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]
    items = []
    for i, p in enumerate(paths):
        path = Path(p).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"input {i} '{path}' does not exist; set `input` to existing NIfTI files or DICOM series folders.")
        items.append({"image": str(path.resolve())})
    return items
