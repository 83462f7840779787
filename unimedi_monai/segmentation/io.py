# SPDX-License-Identifier: Apache-2.0
"""Inputs and outputs of segmentation inference: input lists and an atomic NIfTI writer."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.config import PathLike
from monai.data import NibabelWriter
from monai.data.folder_layout import FolderLayoutBase

from unimedi_monai.data.inputs import list_inputs
from unimedi_monai.io.atomic_io import TMP_SUFFIX, describe_target, file_mode

__all__ = ["AtomicNibabelWriter", "MappedLayout", "inference_items", "inference_outputs"]


class AtomicNibabelWriter(NibabelWriter):
    """MONAI's ``NibabelWriter`` writing to a temporary file beside the target, then renaming it into place,
    so an interrupted run never leaves a truncated label map under the final name.

    Use as ``SaveImaged(..., writer=AtomicNibabelWriter)``.
    """

    def write(self, filename: PathLike, verbose: bool = False, **obj_kwargs: Any) -> None:
        target = Path(filename)
        target.parent.mkdir(parents=True, exist_ok=True)
        suffix = "".join(target.suffixes[-2:]) if target.name.endswith(".nii.gz") else target.suffix
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f"{TMP_SUFFIX}{suffix}", dir=target.parent)
        os.close(fd)
        try:
            super().write(tmp, verbose=verbose, **obj_kwargs)
            os.chmod(tmp, file_mode())  # mkstemp creates 0600; give the file the usual permissions
            os.replace(tmp, target)
        except BaseException as err:
            if os.path.exists(tmp):
                os.unlink(tmp)
            if isinstance(err, OSError):
                raise OSError(err.errno or 0, f"cannot write {describe_target(target)}: {err.strerror or err}") from err
            raise


class MappedLayout(FolderLayoutBase):
    """A MONAI folder layout that writes each input's output to a path given in advance.

    ``SaveImaged(..., folder_layout=MappedLayout(files))`` with ``files`` from
    :func:`unimedi_monai.bundle.per_input_outputs`: names are unique (inputs sharing a file name get their
    folder's name too) and were checked against the inputs by :func:`unimedi_monai.bundle.guard_outputs`.

    Args:
        files: ``{input path: output file}``.
    """

    def __init__(self, files: Mapping[str, str]) -> None:
        self.files = {str(Path(k).resolve()): str(v) for k, v in files.items()}

    def filename(self, subject: PathLike = "", idx: Any = None, **kwargs: Any) -> PathLike:
        key = str(Path(os.fspath(subject)).resolve())
        if key not in self.files:
            raise KeyError(
                f"no output file was planned for input '{subject}'; pass the same inputs to per_input_outputs."
            )
        return self.files[key]


def inference_items(
    datalist: str | os.PathLike | Sequence[str | os.PathLike] | None, dataset_dir: str | os.PathLike | None = None
) -> list[dict[str, str]]:
    """``[{"image": path}, ...]`` for CT files (NIfTI, NRRD, MHA) and DICOM series folders.

    Args:
        datalist: one path, a glob, a list of them, or a ``.txt`` file listing one path per line
            (:func:`unimedi_monai.data.inputs.list_inputs`).
        dataset_dir: a folder: every CT file and DICOM-series folder directly in it (when ``datalist`` is not set).

    Raises:
        FileNotFoundError: a path does not exist (naming it and the config key).
        ValueError: no input given.
    """
    return [{"image": str(Path(path).resolve())} for path in list_inputs(datalist, dataset_dir, modality="ct")]


def inference_outputs(
    datalist: str | os.PathLike | Sequence[str | os.PathLike] | None,
    output_dir: str | os.PathLike,
    output_postfix: str = "seg",
    dataset_dir: str | os.PathLike | None = None,
) -> dict[str, str] | None:
    """``{input: output_dir/<name>_<postfix>.nii.gz}`` for the inputs of :func:`inference_items`, names made
    unique by :func:`unimedi_monai.bundle.per_input_outputs`; None when neither ``datalist`` nor ``dataset_dir``
    is set (e.g. MONAI Label, which gives its images itself).

    Args:
        datalist: as for :func:`inference_items`.
        output_dir: the folder of the label maps.
        output_postfix: appended to the input's name with ``_`` (``""``: the input's name alone).
        dataset_dir: as for :func:`inference_items`.
    """
    from unimedi_monai.bundle.output_names import per_input_outputs

    if datalist is None and dataset_dir is None:
        return None
    suffix = (f"_{output_postfix}" if output_postfix else "") + ".nii.gz"
    return per_input_outputs([item["image"] for item in inference_items(datalist, dataset_dir)], output_dir, suffix)
