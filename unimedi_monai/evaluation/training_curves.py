# SPDX-License-Identifier: Apache-2.0
"""
Training-curve figures from a metric history or a JSON-lines training log.

The log format is one JSON object per line with an ``"iteration"`` key and scalar metrics, e.g.::

    {"iteration": 10, "epoch": 1, "loss": 3.2, "loss_itc": 2.9, "lr": 0.0001}
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from unimedi_monai.evaluation.embedding_plot import save_figure_png

__all__ = ["read_jsonl_history", "plot_training_curves", "DIAGNOSTIC_PANELS", "default_panels"]

History = Mapping[str, Sequence[tuple[int, float]]]

#: overlay panels for the self-distillation diagnostics written by the UniMedI trainer
#: (title, metrics drawn together); the first metric named ``*log_k`` is drawn as a dashed reference
DIAGNOSTIC_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("L_icl teacher target entropy (dashed: log K)", ("icl_entropy_xray", "icl_entropy_ct", "icl_log_k")),
    (
        "L_pcl teacher target entropy (dashed: log K)",
        ("pcl_entropy_xray", "pcl_entropy_ct3d", "pcl_entropy_ct2d", "pcl_log_k"),
    ),
    ("student-teacher KL", ("icl_kl", "pcl_kl")),
    ("distinct teacher top prototypes ([CLS], per batch)", ("icl_distinct_xray", "icl_distinct_ct")),
    ("teacher [CLS] cosine between images", ("teacher_cls_cos_xray", "teacher_cls_cos_ct")),
    (
        "teacher [CLS] attention: entropy / log N, cosine between images",
        ("teacher_attn_entropy_xray", "teacher_attn_entropy_ct", "teacher_attn_cos_xray", "teacher_attn_cos_ct"),
    ),
    (
        "selected slices: mean index and spread over CTs (text: L_slice's best slice)",
        ("slice_pos_mean", "slice_pos_spread", "slice_pos_text_mean", "slice_pos_text_spread"),
    ),
    ("mask ratio per token group", ("mask_ratio_xray", "mask_ratio_ct3d", "mask_ratio_ct2d")),
)


def default_panels(history: History) -> list[str | tuple[str, ...]]:
    """The default panels: every metric that is not a diagnostic alone (sorted), then the
    :data:`DIAGNOSTIC_PANELS` that have data; per-group diagnostics not in a panel are left out."""
    available = {k for k, v in history.items() if len(v) > 0}
    diagnostic_prefixes = ("icl_", "pcl_", "teacher_cls_cos_", "teacher_attn_", "slice_pos_", "mask_ratio_")
    panels: list[str | tuple[str, ...]] = sorted(k for k in available if not k.startswith(diagnostic_prefixes))
    for _, members in DIAGNOSTIC_PANELS:
        present = tuple(m for m in members if m in available)
        if any(not m.endswith("log_k") for m in present):
            panels.append(present)
    return panels


def read_jsonl_history(path: str | os.PathLike, iteration_key: str = "iteration") -> dict[str, list[tuple[int, float]]]:
    """
    Read a JSON-lines log into a metric history.

    Every non-blank line must be a JSON object with an integer ``iteration_key``. Every other key
    whose value is a number (int or float, NaN/inf included; booleans excluded) becomes a metric;
    non-numeric values (strings, lists, null) are ignored.

    Args:
        path: the ``.jsonl`` file.
        iteration_key: name of the iteration field.

    Returns:
        ``{metric: [(iteration, value), ...]}`` in file order.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: for a line that is not a JSON object or lacks an integer iteration.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"training log {path} does not exist; pass the JSON-lines file written during training."
        )
    history: dict[str, list[tuple[int, float]]] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{path}:{line_no}: not valid JSON ({e.msg}); each line must be one JSON object."
                ) from e
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}.")
            it = record.get(iteration_key)
            if isinstance(it, bool) or not isinstance(it, (int, float)) or not float(it).is_integer():
                raise ValueError(
                    f"{path}:{line_no}: missing or non-integer {iteration_key!r} (got {it!r}); "
                    f"every line needs an integer {iteration_key!r} key."
                )
            for key, value in record.items():
                if key == iteration_key or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                history.setdefault(key, []).append((int(it), float(value)))
    return history


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average ignoring NaN/inf (the first points average what is available)."""
    v = np.where(np.isfinite(values), values, np.nan)
    padded = np.r_[np.full(window - 1, np.nan), v]
    windows = np.lib.stride_tricks.sliding_window_view(padded, window)  # (len(values), window)
    finite = np.isfinite(windows)
    count = finite.sum(axis=1)
    total = np.where(finite, windows, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _plot_overlay(ax: Any, history: History, members: Sequence[str], smoothing_window: int) -> None:
    """Several metrics in one panel (smoothed when asked), a ``*log_k`` metric as a dashed line."""
    for n, name in enumerate(members):
        points = sorted(((int(i), float(v)) for i, v in history[name]), key=lambda p: p[0])
        it = np.array([p[0] for p in points], dtype=np.int64)
        val = np.array([p[1] for p in points], dtype=np.float64)
        finite = val[np.isfinite(val)]
        label = f"{name} (last {finite[-1]:.3g})" if finite.size else name
        if name.endswith("log_k"):
            ax.plot(it, val, color="black", linestyle="--", linewidth=1.0, label=label)
            continue
        shown = _moving_average(val, smoothing_window) if smoothing_window > 1 and val.size > 1 else val
        ax.plot(it, shown, color=f"C{n}", linewidth=1.3, label=label)
    ax.legend(fontsize="x-small")
    ax.set_xlabel("iteration")
    ax.grid(True, alpha=0.3)


def plot_training_curves(
    history: History | str | os.PathLike,
    path: str | os.PathLike,
    keys: Sequence[str] | None = None,
    smoothing_window: int = 1,
    ncols: int = 3,
    title: str = "Training curves",
    dpi: int = 100,
) -> Path:
    """
    One subplot per metric (x = iteration), to show the losses falling during training.

    Args:
        history: ``{metric: [(iteration, value), ...]}`` or the path of a JSON-lines log (read with
            :func:`read_jsonl_history`).
        path: destination PNG file.
        keys: panels to plot, in this order: a metric name, or a tuple of names drawn together in
            one panel; default :func:`default_panels` (each metric alone, the self-distillation
            diagnostics grouped as in :data:`DIAGNOSTIC_PANELS`).
        smoothing_window: when > 1, the raw curve is drawn faintly and a trailing moving average
            over this many points is drawn on top.
        ncols: maximum number of subplots per row.
        title: figure title.
        dpi: resolution; each subplot is 4 x 3 inches, so the PNG is
            ``(4 * columns * dpi, 3 * rows * dpi)`` pixels.

    Returns:
        the written path.
    """
    if isinstance(history, (str, os.PathLike)):
        history = read_jsonl_history(history)
    if not isinstance(history, Mapping):
        raise ValueError(
            f"history must be a dict of metric -> [(iteration, value)] or a log path, got {type(history)}."
        )
    if isinstance(smoothing_window, bool) or not isinstance(smoothing_window, int) or smoothing_window < 1:
        raise ValueError(f"smoothing_window must be a positive integer, got {smoothing_window!r}.")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}.")
    available = sorted(k for k, v in history.items() if len(v) > 0)
    if keys is None:
        keys = default_panels(history)
    else:
        keys = list(keys)
        named = [m for k in keys for m in ((k,) if isinstance(k, str) else tuple(k))]
        missing = [k for k in named if k not in available]
        if missing:
            raise ValueError(f"metrics {missing} are not in the history (or have no points); available: {available}.")
    if not keys:
        raise ValueError("history has no metric with at least one point; nothing to plot.")

    cols = min(ncols, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(4.0 * cols, 3.0 * rows), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    titles = {members: title for title, members in DIAGNOSTIC_PANELS}
    for ax, key in zip(axes, keys):
        if not isinstance(key, str):
            members = tuple(key)
            _plot_overlay(ax, history, members, smoothing_window)
            full = next((t for m, t in titles.items() if set(members) <= set(m)), " / ".join(members))
            ax.set_title(full, fontsize="small")
            continue
        points = sorted(((int(i), float(v)) for i, v in history[key]), key=lambda p: p[0])
        it = np.array([p[0] for p in points], dtype=np.int64)
        val = np.array([p[1] for p in points], dtype=np.float64)
        if smoothing_window > 1 and val.size > 1:
            ax.plot(it, val, color="tab:blue", alpha=0.3, linewidth=0.8, label="raw")
            ax.plot(
                it,
                _moving_average(val, smoothing_window),
                color="tab:blue",
                linewidth=1.5,
                label=f"mean of {smoothing_window}",
            )
            ax.legend(fontsize="x-small")
        else:
            ax.plot(it, val, color="tab:blue", linewidth=1.2, marker="." if val.size < 50 else None)
        finite = val[np.isfinite(val)]
        last = f"{finite[-1]:.4g}" if finite.size else "n/a"
        ax.set_title(f"{key} (last {last})", fontsize="small")
        ax.set_xlabel("iteration")
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(True, alpha=0.3)
    for ax in axes[len(keys) :]:
        ax.set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure_png(fig, path, dpi=dpi)
