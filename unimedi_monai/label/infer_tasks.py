# SPDX-License-Identifier: Apache-2.0
"""MONAI Label infer tasks for the project's bundles (imported by the MONAI Label app only).

- :class:`UniMedIBundleInferTask`: MONAI Label's ``BundleInferTask`` (segmentation bundles such as
  ``bcv_segmentation`` and the 2D ``rsna_segmentation``) made to work with monai 1.6.
- :class:`SliceSelectionInferTask`: a bundle whose inference config defines a ``selector`` (the
  slice-selection bundle) as an infer task that returns the selected slices.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from monailabel.tasks.infer.bundle import BundleInferTask

from unimedi_monai.io.checkpoint import load_weights
from unimedi_monai.label.writer_layout import mask_2d_for_label_writer
from unimedi_monai.packaging.metadata import read_metadata

__all__ = ["UniMedIBundleInferTask", "SliceSelectionInferTask", "inference_config", "selected_slices_label_map"]

logger = logging.getLogger(__name__)


def inference_config(bundle_path: str | os.PathLike) -> Path:
    """The bundle's ``configs/inference.yaml`` (or ``.json``).

    Raises:
        FileNotFoundError: neither exists (names the bundle folder).
    """
    for name in ("inference.yaml", "inference.json"):
        path = Path(bundle_path) / "configs" / name
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"bundle {bundle_path} has no configs/inference.yaml or configs/inference.json; MONAI Label serves inference "
        "configs only."
    )


class UniMedIBundleInferTask(BundleInferTask):
    """``BundleInferTask`` for the project's segmentation bundles, 3D and 2D.

    MONAI Label 0.8.5 adds ``image_path`` (a string) to the data dictionary; monai 1.6's ``Spacingd``
    updates every ``image_*`` entry as a metadata dictionary and fails on it
    (``AttributeError: 'str' object has no attribute 'update'``). The entry is held back while the
    pre-transforms run and restored for the writer.

    A 2D bundle (``dimension`` 2, from its metadata's input ``spatial_shape``) returns its mask at the
    image's own size through the bundle's postprocessing (``Invertd``); before MONAI Label writes it,
    :func:`mask_2d_for_label_writer` puts it in the layout and dtype that MONAI Label's writer needs,
    so the returned file (PNG unless the request asks for ``result_extension``) has the image's rows
    and columns and holds the class ids of ``labels``.

    The bundle's ``models/model.pt`` (or the request's ``model_filename``) is loaded by
    :func:`unimedi_monai.io.load_weights`, as the bundle's own ``inference.yaml`` loads it: strictly,
    ``weights_only``, a checkpoint that does not fit refused in one line naming the file and the keys
    (MONAI Label itself loads non-strictly and only warns). A TorchScript ``model.ts`` is loaded by
    MONAI Label.

    Args:
        path: the bundle folder.
        conf: the server's ``--conf`` pairs.
        overrides: bundle config overrides (``{"overlap": 0.25}``), applied when the config is read.
        kwargs: other ``BundleInferTask`` arguments.
    """

    def __init__(
        self, path: str, conf: Mapping[str, str], overrides: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        self._overrides = dict(overrides or {})
        super().__init__(path, dict(conf), **kwargs)

    def _load_bundle_config(self, path: str, config: str) -> Any:
        parser = super()._load_bundle_config(path, config)
        for key, value in self._overrides.items():
            parser[key] = value
        return parser

    def _get_network(self, device: str, data: Any) -> Any:
        path = self.get_path()
        name = data.get("model_filename") if data and self._config.get("model_filename") else None
        if name:  # the request's choice among the bundle's models/*.pt, as MONAI Label resolves it
            user_path = os.path.join(os.path.dirname(self.path[0]), name if isinstance(name, str) else name[0])
            path = user_path if os.path.exists(user_path) else path
        if self.network is None or not path:  # TorchScript model.ts, or MONAI Label's own error
            return super()._get_network(device, data)
        mtime = os.stat(path).st_mtime
        cached = self._networks.get(device)
        if cached and cached[1] == mtime:
            return cached[0]
        network = load_weights(copy.deepcopy(self.network), path).to(torch.device(device))
        network.train(bool(self.train_mode))
        self._networks[device] = (network, mtime)
        return network

    def run_pre_transforms(self, data: dict[str, Any], transforms: Sequence[Callable]) -> dict[str, Any]:
        image_path = data.pop("image_path", None)
        try:
            data = super().run_pre_transforms(data, transforms)
        finally:
            if image_path is not None:
                data["image_path"] = image_path
        return data

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: str | None = None) -> tuple[Any, Any]:
        if self.dimension == 2:
            data[self.output_label_key] = mask_2d_for_label_writer(data[self.output_label_key])
            if extension is None and not data.get("result_extension"):
                extension = ".png"
        return super().writer(data, extension=extension, dtype=dtype)


def selected_slices_label_map(image_path: str, selected: Sequence[int], slice_axis: int, output_path: str) -> str:
    """Write a label map on the grid of ``image_path``: 1 on the ``selected`` slices along ``slice_axis``, 0 elsewhere.

    Args:
        image_path: the CT (a file or a DICOM-series folder), read with SimpleITK.
        selected: slice numbers in the file's numbering.
        slice_axis: the axis in SimpleITK ``(i, j, k)`` order (2: axial).
        output_path: the NIfTI file to write (same origin, spacing and direction as the CT).

    Returns:
        ``output_path``.
    """
    import SimpleITK as sitk

    if os.path.isdir(image_path):
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(image_path))
        image = reader.Execute()
    else:
        image = sitk.ReadImage(image_path)
    size = image.GetSize()  # (i, j, k)
    mask = np.zeros(size[::-1], dtype=np.uint8)  # SimpleITK arrays are (k, j, i)
    axis = 2 - int(slice_axis)
    for s in selected:
        if not 0 <= int(s) < size[slice_axis]:
            raise ValueError(
                f"selected slice {s} is outside {image_path}'s {size[slice_axis]} slices along axis {slice_axis}."
            )
        index = [slice(None)] * 3
        index[axis] = int(s)
        mask[tuple(index)] = 1
    label = sitk.GetImageFromArray(mask)
    label.CopyInformation(image)
    sitk.WriteImage(label, output_path, useCompression=True)
    return output_path


class SliceSelectionInferTask(InferTask):
    """Serve a slice-selection bundle: a CT in, its selected slices out (JSON and a label map).

    The bundle's inference config must define ``selector``: a callable that takes the CT path and
    returns an object with ``to_dict()`` holding ``top_k`` (selected slices, file numbering),
    ``slice_axis`` and ``scores``. The result JSON is that dictionary; the label file marks the
    selected slices with 1 on the CT's grid, so a viewer shows them.

    Args:
        path: the bundle folder (``configs/inference.yaml``, ``configs/metadata.json``).
        conf: the server's ``--conf`` pairs (unused keys are ignored).
        overrides: config overrides (``{"top_k": 6}``), applied before parsing.

    Example::

        task = SliceSelectionInferTask("bundles/slice_selection", {})
        label_file, result = task({"image": "/data/ct.nii.gz"})   # result["top_k"]: selected slices
    """

    def __init__(
        self, path: str, conf: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> None:
        self.bundle_path = str(path)
        self.config_path = inference_config(path)
        metadata = read_metadata(path)
        self.overrides = dict(overrides or {})
        self._selector: Callable[[str], Any] | None = None
        super().__init__(
            type=InferType.CLASSIFICATION,
            labels={"selected slice": 1},
            dimension=3,
            description=metadata.get("description", "slice selection"),
            config={"top_k": self.overrides.get("top_k", 4)},
        )
        self.version = metadata.get("version")

    def is_valid(self) -> bool:
        return self.config_path.is_file()

    def info(self) -> dict[str, Any]:
        info = super().info()
        info["version"] = self.version
        return info

    def _parser(self, top_k: int | None):
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config(str(self.config_path))
        parser.read_meta(str(Path(self.bundle_path) / "configs" / "metadata.json"))
        parser["bundle_root"] = self.bundle_path
        for key, value in self.overrides.items():
            parser[key] = value
        if top_k is not None:
            parser["top_k"] = int(top_k)
        if "selector" not in parser.get():
            raise ValueError(f"{self.config_path} defines no 'selector'; the slice-selection task needs one.")
        return parser

    def __call__(self, request: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
        image = request.get("image")
        if not isinstance(image, str) or not os.path.exists(image):
            raise ValueError(f"slice selection needs 'image', an existing CT file or DICOM folder; got {image!r}.")
        top_k = request.get("top_k")
        if self._selector is None or top_k is not None:
            self._selector = self._parser(top_k).get_parsed_content("selector")
        result = self._selector(image).to_dict()
        fd, label_path = tempfile.mkstemp(suffix=".nii.gz", prefix="slices_")
        os.close(fd)
        selected_slices_label_map(image, result["top_k"], int(result.get("slice_axis", 2)), label_path)
        result = {k: v for k, v in result.items() if k != "image"}
        logger.info("slice selection of %s: %s", image, result["top_k"])
        return label_path, result
