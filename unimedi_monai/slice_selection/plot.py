# SPDX-License-Identifier: Apache-2.0
"""Picture of a slice selection: the selected slices side by side above the score curve of the whole volume."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from unimedi_monai.evaluation.embedding_plot import save_figure_png

if TYPE_CHECKING:
    from unimedi_monai.slice_selection.selector import SliceSelection

__all__ = ["plot_slice_selection"]

_AXIS_NAMES = ("i", "j", "k")


def _display_window(volume: np.ndarray) -> tuple[float, float]:
    """Grey-level window from the 1st to the 99th percentile of (a subsample of) the volume."""
    flat = volume.reshape(-1)
    step = max(1, flat.size // 1_000_000)
    lo, hi = np.percentile(flat[::step], (1.0, 99.0))
    return float(lo), float(hi) if hi > lo else float(lo) + 1.0


def _display(volume: np.ndarray, s: int, axis: int, affine: np.ndarray | None) -> np.ndarray:
    """Slice ``s`` along ``axis`` as rows x columns; axial slices in radiological view (anterior up, patient's right on
    the left)."""
    piece = np.take(volume, s, axis=axis)  # (first remaining axis, second remaining axis)
    image = piece.T  # rows: the second remaining axis
    if affine is not None and axis == 2:
        ras = np.asarray(affine, dtype=np.float64)[:3, :3]
        if ras[0, 0] > 0:  # columns (i) run to the patient's right: mirror
            image = image[:, ::-1]
        if ras[1, 1] > 0:  # rows (j) run anterior: anterior at the top
            image = image[::-1, :]
    return image


def plot_slice_selection(
    selection: SliceSelection,
    path: str | os.PathLike,
    max_panels: int = 8,
    markers: Sequence[int] | None = None,
    marker_label: str = "lesion centre",
) -> Path:
    """Draw the selected slices (up to ``max_panels``, best first, shown in slice order) above the scores.

    Args:
        selection: a :class:`~unimedi_monai.slice_selection.SliceSelection` holding its ``volume``.
        path: the PNG to write (atomically).
        max_panels: most slices drawn in the top row (all selected slices are marked on the curve).
        markers: slice numbers to mark on the curve (e.g. nodule centres), or None.
        marker_label: legend label of ``markers``.

    Returns:
        the PNG path.
    """
    if selection.volume is None:
        raise ValueError("plot_slice_selection needs the selection's volume (run the selector with keep_volume=True).")
    volume = np.asarray(selection.volume, dtype=np.float32)
    best = [i for i in selection.ranked() if i in set(selection.top_k)][: max(1, int(max_panels))]
    shown = sorted(best)
    lo, hi = _display_window(volume)
    n_panels = len(shown)
    fig = Figure(figsize=(max(6.0, 1.9 * n_panels), 4.6), dpi=100)
    grid = fig.add_gridspec(
        2, n_panels, height_ratios=(1.3, 1.0), hspace=0.32, top=0.86, bottom=0.11, left=0.07, right=0.98
    )
    axis_name = _AXIS_NAMES[selection.slice_axis]
    for col, s in enumerate(shown):
        ax = fig.add_subplot(grid[0, col])
        ax.imshow(
            _display(volume, s, selection.slice_axis, selection.affine), cmap="gray", vmin=lo, vmax=hi, origin="upper"
        )
        ax.set_title(f"{axis_name}={s}\nscore {selection.scores[s]:.4g}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    ax = fig.add_subplot(grid[1, :])
    x = np.arange(selection.num_slices)
    ax.plot(x, selection.scores, color="tab:blue", lw=1.2, label=f"{selection.mode} score")
    ax.scatter(
        selection.top_k,
        selection.scores[selection.top_k],
        color="tab:red",
        s=12,
        zorder=3,
        label=f"selected ({len(selection.top_k)})",
    )
    for m in markers or []:
        ax.axvline(int(m), color="tab:green", ls="--", lw=1.0)
    if markers:
        ax.plot([], [], color="tab:green", ls="--", label=marker_label)
    ax.set_xlim(-0.5, selection.num_slices - 0.5)
    ax.set_xlabel(f"slice ({axis_name}, file numbering: 0..{selection.num_slices - 1})")
    ax.set_ylabel("score")
    ax.legend(fontsize=7, loc="upper right")
    title = Path(selection.image.rstrip("/\\")).name
    if selection.query:
        title += f'  -  query: "{selection.query[:80]}"'
    fig.suptitle(title, fontsize=9)
    return save_figure_png(fig, path)
