"""Figures for `hilo attn-map`. Each function takes results and returns (Figure, plotted data).

The returned dict holds the arrays handed to matplotlib, so tests can check that the figure shows
what the analysis computed. No pyplot state: figures are `matplotlib.figure.Figure`.

Drawing convention: every panel is in model-input pixels (what the model saw, `display`). A map
over the pooled Lo-Fi keys (or MSA tokens) is drawn with nearest-neighbour upsampling: each key's
weight covers exactly the input pixels its pooled window covers (s * stride pixels square).
Keys that lie in padding beyond the input are outside the axes and so not visible; pixels that
no stage token covers (token merging floors odd sizes) stay uncovered.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import matplotlib
import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from hilocli.attention import HeadColumn, LayerGeometry, LayerSummary, QueryMap

COLORS = {"hifi": "tab:red", "lofi": "tab:blue"}
CMAP = "inferno"
THUMB = 256  # background image: at most this many pixels a side (drawing speed)


def _background(display, max_side: int = THUMB) -> np.ndarray:
    """Greyed-down RGB array of what the model saw, at most max_side pixels a side."""
    from PIL import Image

    img = display.convert("RGB").copy()
    img.thumbnail((max_side, max_side), Image.BILINEAR)
    arr = np.asarray(img).astype(np.float32) / 255.0
    grey = arr.mean(axis=-1, keepdims=True)
    return 0.35 * arr + 0.35 * grey + 0.15  # dimmed, so the weights stand out


def _frame(ax, bg: np.ndarray, size: tuple[int, int]) -> None:
    w, h = size
    ax.imshow(bg, extent=(0, w, h, 0), interpolation="bilinear")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_xticks([])
    ax.set_yticks([])


def _lofi_panel(ax, bg, g: LayerGeometry, weights: np.ndarray, norm, query_xy) -> Any:
    s, t = g.window_size, g.stride
    Hk, Wk = weights.shape
    _frame(ax, bg, g.input_size)
    im = ax.imshow(weights, extent=(0, Wk * s * t, Hk * s * t, 0), cmap=CMAP, norm=norm,
                   alpha=0.75, interpolation="nearest")
    if query_xy is not None:
        ax.plot(*query_xy, marker="+", color="cyan", markersize=9, markeredgewidth=1.8)
    ax.set_xlim(0, g.input_size[0])
    ax.set_ylim(g.input_size[1], 0)
    return im


def _hifi_panel(ax, bg, g: LayerGeometry, weights: np.ndarray, norm, qmap: QueryMap,
                query_xy) -> Any:
    s, t = g.window_size, g.stride
    r0, c0 = qmap.window_origin
    x0, y0 = c0 * t, r0 * t
    _frame(ax, bg, g.input_size)
    im = ax.imshow(weights, extent=(x0, x0 + s * t, y0 + s * t, y0), cmap=CMAP, norm=norm,
                   interpolation="nearest")
    ax.add_patch(Rectangle((x0, y0), s * t, s * t, fill=False, edgecolor="cyan", linewidth=1.0))
    ax.plot(*query_xy, marker="+", color="cyan", markersize=7, markeredgewidth=1.5)
    ax.set_xlim(0, g.input_size[0])
    ax.set_ylim(g.input_size[1], 0)
    # zoomed inset: the s x s weights, the query's cell outlined
    inset = ax.inset_axes([0.58, 0.58, 0.4, 0.4])
    inset.imshow(weights, cmap=CMAP, norm=norm, interpolation="nearest")
    qr, qc = qmap.token[0] - r0, qmap.token[1] - c0
    inset.add_patch(Rectangle((qc - 0.5, qr - 0.5), 1, 1, fill=False, edgecolor="cyan",
                              linewidth=1.2))
    if s <= 4:
        for (i, j), v in np.ndenumerate(weights):
            inset.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=5,
                       color="white" if norm(v) < 0.6 else "black")
    inset.set_xticks([])
    inset.set_yticks([])
    for side in inset.spines.values():
        side.set_edgecolor("cyan")
    return im


def layer_figure(display, g: LayerGeometry, columns: Sequence[HeadColumn],
                 maps: Sequence[QueryMap], query_xy: Sequence[tuple[float, float]],
                 row_labels: Sequence[str], summary: LayerSummary | None = None,
                 title: str = "") -> tuple[Figure, dict[str, Any]]:
    """Rows: query points (+ a last row: Lo-Fi attention received, when `summary` has it);
    columns: heads (or branch means). Each column has one colour scale over its query rows
    (0 .. the column's largest weight), shown by the colour bar under those rows."""
    bg = _background(display)
    n_rows, n_cols = len(maps), len(columns)
    received = summary is not None and summary.lofi is not None
    w_in, h_in = g.input_size
    aspect = h_in / w_in
    panel = 1.7
    heights = [aspect] * n_rows + [0.07] + ([aspect, 0.07] if received else [])
    fig = Figure(figsize=(panel * n_cols + 1.4, panel * (sum(heights) + 0.25 * len(heights))
                          + 0.9))
    grid = fig.add_gridspec(len(heights), n_cols, height_ratios=heights, hspace=0.35,
                            wspace=0.08, left=1.2 / (panel * n_cols + 1.4), right=0.99,
                            top=1 - 0.75 / fig.get_figheight(), bottom=0.03)
    plotted: dict[str, Any] = {"columns": [c.label for c in columns], "query_maps": [],
                               "received": []}
    for ci, col in enumerate(columns):
        col_maps = [col.select(g, m.hifi, m.lofi) for m in maps]
        vmax = max(float(a.max()) for a in col_maps) if col_maps else 1.0
        norm = Normalize(0.0, vmax if vmax > 0 else 1.0)
        im = None
        for ri, (m, w) in enumerate(zip(maps, col_maps)):
            ax = fig.add_subplot(grid[ri, ci])
            if col.branch == "hifi":
                im = _hifi_panel(ax, bg, g, w, norm, m, query_xy[ri])
            else:
                im = _lofi_panel(ax, bg, g, w, norm, query_xy[ri])
            if ri == 0:
                ax.set_title(col.label, fontsize=8, color=COLORS[col.branch])
            if ci == 0:
                ax.set_ylabel(row_labels[ri], fontsize=7)
        plotted["query_maps"].append(col_maps)
        if im is not None:
            cax = fig.add_subplot(grid[n_rows, ci])
            cb = fig.colorbar(im, cax=cax, orientation="horizontal")
            cb.ax.tick_params(labelsize=6)
            cb.locator = matplotlib.ticker.MaxNLocator(3)
            cb.update_ticks()
        if received:
            ax = fig.add_subplot(grid[n_rows + 1, ci])
            if col.branch == "lofi":
                rec = summary.lofi.received[[h - g.h_heads for h in col.heads]].mean(axis=0)
                rnorm = Normalize(0.0, float(rec.max()) or 1.0)
                rim = _lofi_panel(ax, bg, g, rec, rnorm, None)
                cax = fig.add_subplot(grid[n_rows + 2, ci])
                cb = fig.colorbar(rim, cax=cax, orientation="horizontal")
                cb.ax.tick_params(labelsize=6)
                cb.locator = matplotlib.ticker.MaxNLocator(3)
                cb.update_ticks()
                plotted["received"].append(rec)
            else:
                ax.axis("off")
                ax.text(0.5, 0.5, "Hi-Fi: window-local,\nno global map", ha="center",
                        va="center", fontsize=7, transform=ax.transAxes)
                plotted["received"].append(None)
            if ci == 0:
                ax.set_ylabel("attention received\n(mean over queries)", fontsize=7)
    fig.suptitle(title, fontsize=9, x=0.01, ha="left")
    return fig, plotted


def distance_figure(summaries: Sequence[LayerSummary], title: str = "") -> tuple[Figure,
                                                                                  dict[str, Any]]:
    """Mean attention distance per head, one panel per layer: Hi-Fi and Lo-Fi (or MSA) bars in
    two colours; dashed: what uniform weights over the same keys would give (Lo-Fi); dotted: the
    largest distance a Hi-Fi head can reach, (s - 1) * sqrt(2) * stride."""
    n = len(summaries)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.2 * cols, 2.9 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    plotted: dict[str, Any] = {"layers": []}
    for k, summ in enumerate(summaries):
        ax = axes[k // cols][k % cols]
        g = summ.geometry
        entry = {"index": g.index}
        for b in summ.branches():
            label = "Hi-Fi" if b.branch == "hifi" else ("Lo-Fi" if g.window_size > 1 else "MSA")
            ax.bar(b.heads, b.mean_distance, color=COLORS[b.branch], label=label)
            entry[b.branch] = np.asarray(b.mean_distance)
        if summ.lofi is not None:
            ax.axhline(summ.lofi.uniform_distance, color=COLORS["lofi"], linestyle="--",
                       linewidth=1, label="uniform weights")
        if summ.hifi is not None:
            ax.axhline(g.hifi_max_distance, color=COLORS["hifi"], linestyle=":", linewidth=1,
                       label="Hi-Fi max")
        ax.set_title(f"layer {g.index} ({g.name}), s={g.window_size}, grid "
                     f"{g.grid[0]}x{g.grid[1]}", fontsize=8)
        ax.set_xlabel("head", fontsize=8)
        ax.set_ylabel("mean attention distance (input px)", fontsize=7)
        ax.set_xticks(range(g.num_heads))
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper left")
        plotted["layers"].append(entry)
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle(title, fontsize=9)
    return fig, plotted
