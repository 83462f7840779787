# SPDX-License-Identifier: Apache-2.0
"""Run slice selection on one CT file and give the result in the file's own slice numbering."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import Orientationd, SpatialCrop

from unimedi_monai.bundle.output_names import output_stem
from unimedi_monai.data.slice_grid import grid_to_original, slice_axis_of
from unimedi_monai.io.atomic_io import write_json_atomic

__all__ = ["SliceSelection", "SliceSelector", "output_files", "output_stem", "read_query"]

#: a slice window: ``(start, stop)`` or a function of ``(num_slices, slice_axis)`` returning it, or None.
WindowSpec = tuple[int, int] | Callable[[int, int], tuple[int, int]] | None

logger = logging.getLogger(__name__)


def output_files(image: str | os.PathLike | None, output_dir: str | os.PathLike, plot: bool = True) -> list[str]:
    """The files :meth:`SliceSelection.save` writes for ``image`` (for :func:`unimedi_monai.bundle.guard_outputs`)."""
    if image is None:
        return []
    stem = Path(output_dir) / output_stem(image)
    return [f"{stem}_slices.json"] + ([f"{stem}_slices.png"] if plot else [])


def read_query(text: str | os.PathLike | None) -> str | None:
    """A query or report given as text, or as the path of a ``.txt`` file (read as UTF-8); None stays None."""
    if text is None:
        return None
    from unimedi_monai.data.datalist import is_path_like

    value = os.fspath(text)
    if is_path_like(value) and not value.strip().lower().endswith(".txt"):
        raise ValueError(
            f"`report` / `query` is {value.strip()!r}, which looks like a file path but is not a .txt file; "
            "pass the text itself or a UTF-8 .txt file."
        )
    if value.strip().lower().endswith(".txt"):
        path = Path(value.strip())
        if not path.is_file():
            raise FileNotFoundError(
                f"report file not found: '{path}'; set `report` to a .txt file or to the text itself."
            )
        value = path.read_text(encoding="utf-8")
    value = " ".join(value.split())
    return value or None


@dataclass
class SliceSelection:
    """The slice selection of one CT.

    Attributes:
        image: the input file or DICOM folder.
        mode: ``"attention"`` or ``"text"``.
        query: the text query of ``"text"`` mode (None in ``"attention"`` mode).
        scores: ``(n,)`` score of every slice of the file, index = the file's slice number.
        top_k: the ``k`` selected slices (file numbering), ascending.
        grid_scores: ``(T,)`` scores on the model's resampled grid (inferior to superior).
        slice_axis: the file axis the slices are cut along (SimpleITK ``(i, j, k)`` order; 2 = axial).
        flipped: the model's grid runs against the file's slice order.
        spacing: the file's voxel spacing (``(i, j, k)`` order, mm).
        volume: the file's voxel values ``(X, Y, Z)`` as read, for pictures (not written to JSON).
        window: ``[start, stop)`` when only those file slices were scored (the others' scores are NaN).
        affine: the file's RAS voxel-to-world affine (orients the pictures).
    """

    image: str
    mode: str
    query: str | None
    scores: np.ndarray
    top_k: list[int]
    grid_scores: np.ndarray
    slice_axis: int
    flipped: bool
    spacing: list[float]
    volume: np.ndarray | None = field(default=None, repr=False)
    window: list[int] | None = None
    affine: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_slices(self) -> int:
        return int(self.scores.shape[0])

    def ranked(self) -> list[int]:
        """The scored slice numbers by decreasing score (ties: lower slice first)."""
        order = np.argsort(-np.nan_to_num(self.scores, nan=-np.inf), kind="stable")
        return [int(i) for i in order if np.isfinite(self.scores[i])]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready result: every list in the file's slice numbering unless named ``grid_*``."""
        scored = self.num_slices if self.window is None else self.window[1] - self.window[0]
        grid_k = max(1, min(len(self.grid_scores), round(len(self.top_k) * len(self.grid_scores) / scored)))
        grid_top = sorted(int(i) for i in np.argsort(-self.grid_scores, kind="stable")[:grid_k])
        return {
            "image": self.image,
            "mode": self.mode,
            "query": self.query,
            "num_slices": self.num_slices,
            "slice_axis": self.slice_axis,
            "flipped": self.flipped,
            "spacing": [float(s) for s in self.spacing],
            "k": len(self.top_k),
            "top_k": [int(i) for i in self.top_k],
            "top_k_by_score": [i for i in self.ranked() if i in set(self.top_k)],
            "window": self.window,
            "scores": [float(s) if np.isfinite(s) else None for s in self.scores],
            "grid_size": int(len(self.grid_scores)),
            "grid_scores": [float(s) for s in self.grid_scores],
            "grid_top_k": grid_top,
        }

    def save(self, output_dir: str | os.PathLike, stem: str | None = None, plot: bool = True) -> dict[str, str]:
        """Write ``<stem>_slices.json`` (atomically) and, with ``plot``, ``<stem>_slices.png``.

        Returns:
            ``{"json": path, "png": path}`` (``png`` only when written).
        """
        from unimedi_monai.slice_selection.plot import plot_slice_selection

        out = Path(output_dir)
        stem = stem or output_stem(self.image)
        paths: dict[str, str] = {}
        if plot:
            if self.volume is None:
                raise ValueError("this SliceSelection holds no volume to draw; run the selector with keep_volume=True.")
            paths["png"] = str(plot_slice_selection(self, out / f"{stem}_slices.png"))
        paths["json"] = str(write_json_atomic(self.to_dict(), out / f"{stem}_slices.json"))
        logger.info(
            "%s: %d of %d slices selected (%s): %s; wrote %s",
            self.image,
            len(self.top_k),
            self.num_slices,
            self.mode,
            self.top_k,
            ", ".join(paths.values()),
        )
        return paths


def _count(num_slices: int, k: int | None, fraction: float | None) -> int:
    if k is not None:
        if isinstance(k, bool) or int(k) < 1:
            raise ValueError(f"top_k must be a positive number of slices, got {k!r}.")
        return min(int(k), num_slices)
    if fraction is None or not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {fraction!r} (or set top_k).")
    return max(1, min(num_slices, int(math.floor(float(fraction) * num_slices + 0.5))))


class SliceSelector:
    """Score and select the slices of CT files with a :class:`~unimedi_monai.slice_selection.SliceSelectionNet`.

    The file goes through ``transform`` (the slice_selection bundle's ``preprocessing``: the pre-training's CT
    steps, read at full resolution and resampled by ``Orientationd`` + ``Resized``, not by the read-time SimpleITK
    resampling of pre-training), which must contain an ``Orientationd``: the image and its affine are captured just
    before it, the model scores the resampled grid, and the grid scores are mapped back to every slice of the file
    (:func:`~unimedi_monai.data.slice_grid.grid_to_original`).

    Args:
        network: the scoring network (``forward``: ``(B, 1, H, W, D)`` -> ``(B, D)``).
        transform: ``{"image": path}`` -> ``{"image": (1, H, W, D) tensor}``.
        device: where the network runs.
        top_k: slices selected per CT; None to use ``top_fraction``.
        top_fraction: fraction of the file's slices selected when ``top_k`` is None (rounded, >= 1).

    Example::

        from unimedi_monai.bundle import bundle_item

        transform = bundle_item("bundles/slice_selection/configs/inference.yaml", "preprocessing")
        selector = SliceSelector(net, transform, top_k=4)
        result = selector("ct.nii.gz")            # a SliceSelection
        result.save("outputs")                     # outputs/ct_slices.json, outputs/ct_slices.png
    """

    def __init__(
        self,
        network: torch.nn.Module,
        transform: Callable,
        device: torch.device | str = "cpu",
        top_k: int | None = 4,
        top_fraction: float | None = None,
    ) -> None:
        self.network = network
        self.transform = transform
        self.device = torch.device(device)
        self.top_k = top_k
        self.top_fraction = top_fraction
        _count(10, top_k, top_fraction)  # validate once
        transforms = list(getattr(transform, "transforms", []))
        split = next((i for i, t in enumerate(transforms) if isinstance(t, Orientationd)), None)
        if split is None:
            raise ValueError(
                "SliceSelector: the transform has no Orientationd step, so the original slice numbering cannot be "
                "recovered; use the slice_selection bundle's preprocessing (bundles/slice_selection/configs/"
                "inference.yaml), which reads the file at full resolution, then Orientationd + Resized."
            )
        self._split = split
        self._orientation = getattr(getattr(transforms[split], "ornt_transform", None), "axcodes", None) or "RAS"

    def _load(
        self, image: str, window: WindowSpec
    ) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray, tuple[int, int] | None]:
        """The model input ``(1, 1, H, W, D)``, the file's volume ``(X, Y, Z)``, affine, spacing and window."""
        data = self.transform({"image": image}, end=self._split)
        img = data["image"]
        affine = np.asarray(img.affine, dtype=np.float64) if hasattr(img, "affine") else np.eye(4)
        spacing = np.asarray(img.meta.get("spacing", np.sqrt((affine[:3, :3] ** 2).sum(0))), dtype=np.float64)
        volume = np.asarray(img[0].detach().cpu().numpy())
        bounds = None
        if window is not None and volume.ndim == 3:
            axis, _ = slice_axis_of(affine, self._orientation)
            n = int(volume.shape[axis])
            bounds = tuple(int(b) for b in (window(n, axis) if callable(window) else window))
            if len(bounds) != 2 or not 0 <= bounds[0] < bounds[1] <= n:
                raise ValueError(f"'{image}': slice window {bounds} is not a range inside the file's {n} slices.")
            start = [0, 0, 0]
            end = list(volume.shape)
            start[axis], end[axis] = bounds
            data["image"] = SpatialCrop(roi_start=start, roi_end=end)(img)  # updates the affine
        data = self.transform(data, start=self._split)
        return torch.as_tensor(data["image"]).unsqueeze(0), volume, affine, spacing, bounds

    @torch.no_grad()
    def __call__(self, image: str | os.PathLike, keep_volume: bool = True, window: WindowSpec = None) -> SliceSelection:
        """Select the slices of ``image`` (NIfTI, NRRD, MHA/MHD, a DICOM file or series folder).

        Args:
            image: the CT.
            keep_volume: keep the file's voxel values in the result (for :meth:`SliceSelection.save`).
            window: score only the file slices ``start..stop-1`` (a ``(start, stop)`` pair, or a function
                of ``(num_slices, slice_axis)`` returning it), e.g. the 32 consecutive slices around a
                nodule of the authors' LUNA16 check; the other slices get no score (NaN).
        """
        if image is None or not os.fspath(image):
            raise ValueError(
                "no CT given: set the config key `datalist` (--datalist PATH: a NIfTI/NRRD/MHA/MHD file or a DICOM "
                "folder)."
            )
        image = os.fspath(image)
        batch, volume, affine, spacing, bounds = self._load(image, window)
        if volume.ndim != 3:
            raise ValueError(f"'{image}' has {volume.ndim} spatial dimensions; slice selection needs a 3D CT.")
        self.network.eval()
        grid = self.network(batch.to(self.device)).float().cpu().numpy()[0]
        axis, flipped = slice_axis_of(affine, self._orientation)
        n = int(volume.shape[axis])
        start, stop = bounds if bounds is not None else (0, n)
        scores = np.full(n, np.nan)
        scores[start:stop] = grid_to_original(grid, stop - start, flipped)
        k = _count(stop - start, self.top_k, self.top_fraction)
        top = sorted(int(i) + start for i in np.argsort(-scores[start:stop], kind="stable")[:k])
        mode = getattr(self.network, "mode", "attention")
        return SliceSelection(
            image=image,
            mode=mode,
            query=getattr(self.network, "query", None) if mode == "text" else None,
            scores=scores,
            top_k=top,
            grid_scores=grid.astype(np.float64),
            slice_axis=axis,
            flipped=flipped,
            spacing=[float(s) for s in spacing.reshape(-1)[:3]],
            volume=volume if keep_volume else None,
            window=None if bounds is None else [int(start), int(stop)],
            affine=affine,
        )
