# SPDX-License-Identifier: Apache-2.0
"""
Figures for inspecting the joint embedding space and the slice selection.

All figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly (no pyplot
global state, no backend switching) and written as PNG atomically: the image is rendered to a
temporary file in the destination folder and moved in place with :func:`os.replace`, so a reader
never sees a half-written file.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from unimedi_monai.io.atomic_io import atomic_open

__all__ = [
    "save_figure_png",
    "project_2d",
    "plot_embeddings",
    "plot_similarity_matrix",
    "plot_slice_scores",
]

logger = logging.getLogger(__name__)

_MARKERS = ("o", "^", "s", "D", "v", "P", "X", "*", "<", ">")


def save_figure_png(fig: Figure, path: str | os.PathLike, dpi: int | None = None) -> Path:
    """
    Render ``fig`` to ``path`` as PNG atomically (temporary file + :func:`os.replace`).

    Args:
        fig: the figure to save.
        path: destination file; parent folders are created.
        dpi: resolution; defaults to the figure's own dpi, so the image is ``figsize * dpi`` pixels.

    Returns:
        the destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi if dpi is not None else fig.dpi)
    return path


def _to_numpy_2d(x: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    arr = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, D) with N >= 1, got shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN/inf values; check the model outputs.")
    return arr


def _pca_2d(x: np.ndarray) -> np.ndarray:
    """First two principal-component scores of ``x`` (zero-padded when rank < 2)."""
    centered = x - x.mean(axis=0, keepdims=True)
    u, s, _ = np.linalg.svd(centered, full_matrices=False)
    coords = np.zeros((x.shape[0], 2))
    r = min(2, s.shape[0])
    coords[:, :r] = u[:, :r] * s[:r]
    return coords


def project_2d(emb: torch.Tensor | np.ndarray, method: str = "pca", seed: int = 0) -> tuple[np.ndarray, str]:
    """
    Project embeddings to 2D.

    Args:
        emb: (N, D) embeddings.
        method: ``"pca"`` (SVD of the centred embeddings) or ``"tsne"``. t-SNE needs scikit-learn,
            which is optional: when it cannot be imported (or N < 4) a warning is logged and PCA is used.
        seed: random state of t-SNE.

    Returns:
        ((N, 2) coordinates, the method actually used: ``"pca"`` or ``"tsne"``).
    """
    x = _to_numpy_2d(emb, "emb")
    method = method.lower()
    if method not in ("pca", "tsne"):
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}.")
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            logger.warning("t-SNE needs scikit-learn, which is not installed; falling back to PCA.")
        else:
            n = x.shape[0]
            if n < 4:
                logger.warning(f"t-SNE needs at least 4 points, got {n}; falling back to PCA.")
            else:
                perplexity = float(min(30.0, (n - 1) / 3.0))
                tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
                return np.asarray(tsne.fit_transform(x), dtype=np.float64), "tsne"
    return _pca_2d(x), "pca"


def _category_colors(categories: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(categories) <= 10 else "tab20"]
    return {c: cmap(i % cmap.N) for i, c in enumerate(categories)}


def _check_labels(labels: Sequence[str], n: int, name: str) -> list[str]:
    if len(labels) != n:
        raise ValueError(f"{name} has {len(labels)} entries but there are {n} embeddings; give one per embedding.")
    return [str(v) for v in labels]


def plot_embeddings(
    emb: torch.Tensor | np.ndarray,
    modality: Sequence[str],
    finding: Sequence[str],
    path: str | os.PathLike,
    method: str = "pca",
    title: str = "Joint embedding space",
    max_legend: int = 20,
    figsize: tuple[float, float] = (13.0, 5.5),
    dpi: int = 100,
    seed: int = 0,
) -> Path:
    """
    Scatter plot of a 2D projection of the embeddings, in two panels side by side: coloured by
    modality (left) and by finding (right). Each modality also has its own marker shape in both
    panels, so 2D X-ray and 3D CT points can be told apart everywhere.

    Args:
        emb: (N, D) embeddings (image and/or text).
        modality: modality name per embedding (e.g. ``"xray"``, ``"ct"``).
        finding: finding / label name per embedding (e.g. ``"pneumonia"``, ``"no finding"``).
        path: destination PNG file.
        method: ``"pca"`` or ``"tsne"`` (see :func:`project_2d`; falls back to PCA without scikit-learn).
        title: figure title; the projection method actually used is appended.
        max_legend: at most this many findings get their own colour; the rarest remaining ones are
            merged into ``"other"``.
        figsize: figure size in inches; the PNG is ``figsize * dpi`` pixels.
        dpi: resolution.
        seed: random state of t-SNE.

    Returns:
        the written path.
    """
    x = _to_numpy_2d(emb, "emb")
    n = x.shape[0]
    modality = _check_labels(modality, n, "modality")
    finding = _check_labels(finding, n, "finding")
    if max_legend < 2:
        raise ValueError(f"max_legend must be >= 2, got {max_legend}.")
    coords, used = project_2d(x, method=method, seed=seed)

    counts = Counter(finding)
    if len(counts) > max_legend:
        keep = {f for f, _ in counts.most_common(max_legend - 1)}
        finding = [f if f in keep else "other" for f in finding]
    modalities = sorted(set(modality))
    findings = sorted(set(finding))
    markers = {m: _MARKERS[i % len(_MARKERS)] for i, m in enumerate(modalities)}
    mod_colors = _category_colors(modalities)
    find_colors = _category_colors(findings)
    mod_arr, find_arr = np.asarray(modality), np.asarray(finding)

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    ax_mod, ax_find = fig.subplots(1, 2)
    size = float(np.clip(2000.0 / max(n, 1), 4.0, 40.0))
    for m in modalities:
        sel = mod_arr == m
        ax_mod.scatter(
            coords[sel, 0],
            coords[sel, 1],
            s=size,
            marker=markers[m],
            color=mod_colors[m],
            alpha=0.7,
            label=f"{m} ({int(sel.sum())})",
        )
        for f in findings:
            both = sel & (find_arr == f)
            if both.any():
                ax_find.scatter(
                    coords[both, 0], coords[both, 1], s=size, marker=markers[m], color=find_colors[f], alpha=0.7
                )
    for f in findings:  # one legend entry per finding, independent of the marker shape
        ax_find.scatter([], [], s=30, marker="o", color=find_colors[f], label=f"{f} ({int((find_arr == f).sum())})")
    ax_mod.set_title("coloured by modality")
    ax_find.set_title("coloured by finding (marker = modality)")
    ax_mod.legend(loc="best", fontsize="small")
    ax_find.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="x-small")
    axis_name = "PC" if used == "pca" else "t-SNE "
    for ax in (ax_mod, ax_find):
        ax.set_xlabel(f"{axis_name}1")
        ax.set_ylabel(f"{axis_name}2")
    fig.suptitle(f"{title} ({used.upper()}, N={n})")
    fig.tight_layout()
    return save_figure_png(fig, path, dpi=dpi)


def plot_similarity_matrix(
    image_emb: torch.Tensor | np.ndarray,
    text_emb: torch.Tensor | np.ndarray,
    path: str | os.PathLike,
    labels: Sequence[str] | None = None,
    max_items: int = 256,
    title: str = "Image-text cosine similarity",
    figsize: tuple[float, float] = (7.0, 6.0),
    dpi: int = 100,
) -> Path:
    """
    Heatmap of image-text cosine similarities (rows images, columns texts).

    Args:
        image_emb: (N, D) image embeddings.
        text_emb: (M, D) text embeddings; with ``labels`` row ``i`` and column ``i`` are a pair, so ``M == N``.
        path: destination PNG file.
        labels: optional finding per pair; rows and columns are then sorted (stably) by finding and
            the groups are separated by lines and named on the axes.
        max_items: when there are more rows/columns than this, an evenly spaced subset of
            ``max_items`` indices is shown (deterministic), keeping the figure readable.
        title: figure title.
        figsize: figure size in inches; the PNG is ``figsize * dpi`` pixels.
        dpi: resolution.

    Returns:
        the written path.
    """
    img = _to_numpy_2d(image_emb, "image_emb")
    txt = _to_numpy_2d(text_emb, "text_emb")
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"image_emb dim {img.shape[1]} != text_emb dim {txt.shape[1]}; use the joint embeddings.")
    if max_items < 1:
        raise ValueError(f"max_items must be >= 1, got {max_items}.")
    rows, cols = np.arange(img.shape[0]), np.arange(txt.shape[0])
    lab = None
    if labels is not None:
        if txt.shape[0] != img.shape[0]:
            raise ValueError(
                f"labels need paired embeddings but image_emb has {img.shape[0]} rows and text_emb {txt.shape[0]}."
            )
        lab = np.asarray(_check_labels(labels, img.shape[0], "labels"))
    if rows.size > max_items:
        rows = rows[np.linspace(0, rows.size - 1, max_items).round().astype(int)]
    if cols.size > max_items:
        cols = cols[np.linspace(0, cols.size - 1, max_items).round().astype(int)]
    if lab is not None:
        rows = rows[np.argsort(lab[rows], kind="stable")]
        cols = cols[np.argsort(lab[cols], kind="stable")]
    img_n = img[rows] / np.maximum(np.linalg.norm(img[rows], axis=1, keepdims=True), 1e-12)
    txt_n = txt[cols] / np.maximum(np.linalg.norm(txt[cols], axis=1, keepdims=True), 1e-12)
    sim = img_n @ txt_n.T

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    im = ax.imshow(sim, cmap="viridis", aspect="auto", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="cosine similarity")
    ax.set_xlabel("texts")
    ax.set_ylabel("images")
    if lab is not None:
        for axis_idx, (setter, line) in ((rows, (ax.set_yticks, ax.axhline)), (cols, (ax.set_xticks, ax.axvline))):
            names = lab[axis_idx]
            starts = np.flatnonzero(np.r_[True, names[1:] != names[:-1]])
            ends = np.r_[starts[1:], names.size]
            setter((starts + ends - 1) / 2.0, labels=list(names[starts]), fontsize="x-small")
            for b in starts[1:]:
                line(b - 0.5, color="white", linewidth=0.8)
        ax.tick_params(axis="x", labelrotation=90)
    ax.set_title(f"{title} ({sim.shape[0]} x {sim.shape[1]})")
    fig.tight_layout()
    return save_figure_png(fig, path, dpi=dpi)


def plot_slice_scores(
    scores: Sequence[float] | np.ndarray | torch.Tensor,
    selected: Sequence[int],
    lesion: Sequence[int],
    path: str | os.PathLike,
    volume_slices: np.ndarray | torch.Tensor | None = None,
    title: str = "Slice selection",
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
) -> Path:
    """
    Per-slice score curve of one volume with the selected slices marked and the lesion slices shaded;
    optionally the selected slices are shown as images in a top row.

    Args:
        scores: (num_slices,) score of every slice (e.g. attention of the [CLS] token).
        selected: indices of the selected slices.
        lesion: indices of the slices containing a lesion (may be empty).
        path: destination PNG file.
        volume_slices: optional (k, H, W) images of the ``k = len(selected)`` selected slices, in
            the order of ``selected``.
        title: figure title.
        figsize: figure size in inches; default ``(10, 6)`` with images, ``(10, 3.5)`` without.
        dpi: resolution; the PNG is ``figsize * dpi`` pixels.

    Returns:
        the written path.
    """
    s = scores.detach().cpu().double().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores, float)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"scores must be a non-empty 1D sequence (one score per slice), got shape {s.shape}.")
    n = s.size
    selected = [int(i) for i in selected]
    lesion = [int(i) for i in lesion]
    for name, idx in (("selected", selected), ("lesion", lesion)):
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise ValueError(f"{name} slice indices {bad} are outside [0, {n}) for {n} slice scores.")
    imgs = None
    if volume_slices is not None:
        imgs = (
            volume_slices.detach().cpu().float().numpy()
            if isinstance(volume_slices, torch.Tensor)
            else (np.asarray(volume_slices, dtype=np.float32))
        )
        if imgs.ndim != 3 or imgs.shape[0] != len(selected):
            raise ValueError(
                f"volume_slices must have shape (k, H, W) with k = len(selected) = {len(selected)}, got {imgs.shape}."
            )
        if len(selected) == 0:
            imgs = None
    if figsize is None:
        figsize = (10.0, 6.0) if imgs is not None else (10.0, 3.5)

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    if imgs is not None:
        k = imgs.shape[0]
        grid = fig.add_gridspec(2, k, height_ratios=(1.2, 1.0))
        for j in range(k):
            ax_img = fig.add_subplot(grid[0, j])
            ax_img.imshow(imgs[j], cmap="gray", interpolation="nearest")
            on_lesion = selected[j] in lesion
            ax_img.set_title(f"slice {selected[j]}" + (" (lesion)" if on_lesion else ""), fontsize="small")
            ax_img.set_axis_off()
        ax = fig.add_subplot(grid[1, :])
    else:
        ax = fig.subplots()

    x = np.arange(n)
    if lesion:  # shade contiguous runs of lesion slices
        les = np.unique(lesion)
        starts = les[np.r_[True, np.diff(les) > 1]]
        ends = les[np.r_[np.diff(les) > 1, True]]
        for i, (a, b) in enumerate(zip(starts, ends)):
            ax.axvspan(a - 0.5, b + 0.5, color="tab:red", alpha=0.2, label="lesion" if i == 0 else None)
    ax.plot(x, s, color="tab:blue", linewidth=1.2, label="slice score")
    if selected:
        ax.scatter(selected, s[selected], color="tab:orange", edgecolor="black", zorder=3, s=40, label="selected")
        for i in selected:
            ax.axvline(i, color="tab:orange", linestyle=":", linewidth=0.8)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_xlabel("slice index")
    ax.set_ylabel("score")
    ax.legend(loc="upper right", fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure_png(fig, path, dpi=dpi)
