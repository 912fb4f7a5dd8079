"""Figures of `hilo attn-map`. Each function takes results and returns (Figure, plotted data).

The plotted dict holds the arrays handed to matplotlib, so tests can check that the figure shows
what the analysis computed. No pyplot state: figures are `matplotlib.figure.Figure`.

Layer figure: panels in model-input pixels (see `mosaic`); heads wrap into bands of at most
MAX_COLUMNS columns, so the figure grows down, not sideways, with many heads. Positions are
labelled with their order: query (x, y) in pixels, token (row, col).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from hilocli.attn_map.heads import HeadColumn
from hilocli.attn_map.mosaic import (
    Mosaic,
    background,
    colours,
    compose,
    outline,
    panel_size,
    weight_norm,
)
from hilocli.models.geometry import LayerGeometry

COLORS = {"hifi": "tab:red", "lofi": "tab:blue", "msa": "0.25"}  # MSA: neither branch
MAX_COLUMNS = 8  # panels per band of a layer figure
LEFT_IN, RIGHT_IN, GAP_IN, BAND_GAP_IN = 1.35, 0.15, 0.12, 0.25
LINE_IN = 0.15  # one line of 7.5-8 pt text, inches


def wrap(text: str, width_px: float, px_per_char: float) -> str:
    width = max(8, int(width_px / px_per_char))
    return "\n".join(
        textwrap.fill(line, width, break_on_hyphens=False) for line in text.splitlines()
    )


def query_label(k: int, x: float, y: float, token: tuple[int, int]) -> str:
    """Row label of query k: its (x, y) in original-image pixels and its (row, col) token."""
    return (
        f"q{k}: x, y = {x:.0f}, {y:.0f}\n(original image px)\ntoken: row {token[0]}, col {token[1]}"
    )


def _hifi_panel(
    bg: np.ndarray, g: LayerGeometry, weights: np.ndarray, norm, token, origin
) -> np.ndarray:
    """The window's weights painted where it sits, outlined, and a zoomed inset of the s x s
    weights (query cell outlined) in the corner away from the window."""
    s, t = g.layer.window_size, g.stride
    th, tw = bg.shape[:2]
    w_in, h_in = g.input_size
    r0, c0 = origin
    x0, y0 = c0 * t, r0 * t
    panel = compose(bg, weights, (x0, y0, x0 + s * t, y0 + s * t), g.input_size, norm, 1.0)
    ky, kx = th / h_in, tw / w_in  # panel pixels per input pixel
    outline(
        panel,
        int(round(y0 * ky)),
        int(round(x0 * kx)),
        max(2, int(round(s * t * ky))),
        max(2, int(round(s * t * kx))),
    )
    side = max(s, int(0.42 * min(th, tw)) // s * s)  # inset size, a multiple of s
    cell = side // s
    left = 2 if x0 + s * t / 2 > w_in / 2 else tw - side - 2
    top = th - side - 2 if y0 + s * t / 2 < h_in / 2 else 2
    panel[top : top + side, left : left + side] = np.repeat(
        np.repeat(colours(weights, norm), cell, 0), cell, 1
    )
    outline(panel, top - 1, left - 1, side + 2, side + 2)
    outline(panel, top + (token[0] - r0) * cell, left + (token[1] - c0) * cell, cell, cell)
    return panel


@dataclass(frozen=True)
class Column:
    """One painted column: a head column of a layer, on its branch's colour scales."""

    layer: Any  # an `AttnMapResult` layer
    head: HeadColumn
    norm: Normalize  # the query rows
    received_norm: Normalize | None  # the attention-received row (Lo-Fi and MSA columns)
    maps: list[np.ndarray]  # the column's map of each query
    received: np.ndarray | None  # its attention received (Lo-Fi and MSA columns), else None


def scaled_columns(layer, heads: Sequence[HeadColumn]) -> list[Column]:
    """The layer's columns with one colour scale per branch (0 .. the largest weight over its
    columns and queries), so heads of a branch compare at a glance."""
    g = layer.geometry
    maps = {c: [c.select(g.layer, m.hifi, m.lofi) for m in layer.maps] for c in heads}
    received = {c: _received(layer, c) for c in heads}
    norms = {}
    for b in {c.branch for c in heads}:
        of_b = [c for c in heads if c.branch == b]
        rec = [received[c] for c in of_b if received[c] is not None]
        norms[b] = (
            weight_norm([a for c in of_b for a in maps[c]]),
            weight_norm(rec) if rec else None,
        )
    return [Column(layer, c, *norms[c.branch], maps[c], received[c]) for c in heads]


def _received(layer, col: HeadColumn) -> np.ndarray | None:
    lofi = layer.summary.lofi if layer.summary is not None else None
    if lofi is None or col.branch != "lofi":
        return None
    return col.select(layer.geometry.layer, None, lofi.received)


def paint(bg, columns: Sequence[Column], queries, received: bool, groups=()) -> tuple:
    """Mosaics of the columns: query rows (+ the attention-received row when `received`), a
    colour bar under each column with the uniform weight (1 / keys) ticked. Returns (top, low or
    None, drawn: the arrays painted and the query marks)."""
    th, tw = bg.shape[:2]
    rows = len(queries)
    top = Mosaic(rows, len(columns), th, tw, groups=groups)
    low = Mosaic(1, len(columns), th, tw, groups=groups) if received else None
    drawn: dict[str, Any] = {"query_maps": [], "received": [], "marks": []}
    for ci, c in enumerate(columns):
        g = c.layer.geometry
        kx, ky = tw / g.input_size[0], th / g.input_size[1]
        col_maps = c.maps
        drawn["query_maps"].append(col_maps)
        top.colour_bar(ci, c.norm, 1.0 / col_maps[0].size)
        span = g.layer.window_size * g.stride  # input pixels per pooled key
        for ri, (m, w) in enumerate(zip(c.layer.maps, col_maps)):
            if c.head.branch == "hifi":
                panel = _hifi_panel(bg, g, w, c.norm, m.token, m.window_origin)
            else:
                box = (0, 0, w.shape[1] * span, w.shape[0] * span)
                panel = compose(bg, w, box, g.input_size, c.norm)
            top.put(ri, ci, panel)
            oy, ox = top.origin(ri, ci)
            qx, qy = queries[ri].input_xy
            drawn["marks"].append((ox + qx * kx, oy + qy * ky))
        rec = c.received if received else None
        if rec is not None:
            box = (0, 0, rec.shape[1] * span, rec.shape[0] * span)
            low.put(0, ci, compose(bg, rec, box, g.input_size, c.received_norm))
            low.colour_bar(ci, c.received_norm, 1.0 / rec.size)
        drawn["received"].append(rec)
    return top, low, drawn


def mark_queries(ax, marks) -> None:
    if marks:
        xs, ys = zip(*marks)
        ax.plot(xs, ys, linestyle="none", marker="+", color="cyan", markersize=8, mew=1.6)


def label_rows(ax, top: Mosaic, queries, maps, th: int) -> None:
    for ri, (q, m) in enumerate(zip(queries, maps)):
        oy, _ = top.origin(ri, 0)
        ax.text(-6, oy + th / 2, query_label(ri, float(q.x), float(q.y), m.token), ha="right",
                va="center", fontsize=7, clip_on=False)  # fmt: skip


def label_received(lax, low: Mosaic, columns: Sequence[Column], th: int, tw: int) -> None:
    lax.text(-6, th / 2, "attention received\n(mean over\nall queries)", ha="right",
             va="center", fontsize=7, clip_on=False)  # fmt: skip
    for ci, c in enumerate(columns):
        if c.head.branch == "hifi":
            _, ox = low.origin(0, ci)
            lax.text(ox + tw / 2, th / 2, "Hi-Fi: window-\nlocal, no\nglobal map",
                     ha="center", va="center", fontsize=7)  # fmt: skip


def colour(layer_info, branch: str) -> str:
    """Hi-Fi red, Lo-Fi blue; an MSA layer (window 1: one global branch) neither."""
    return COLORS["msa"] if layer_info.window_size <= 1 else COLORS[branch]


SCALE_NOTE = (
    "colour: attention weight, 0 .. the largest weight of the branch in this layer (one scale "
    "per branch); white tick on each bar: uniform weight 1 / keys; + : query point"
)


def layer_figure(
    display, layer, queries: Sequence, title: str = "", dpi: int = 100
) -> tuple[Figure, dict[str, Any]]:
    """One layer (an `AttnMapResult` layer) for the given queries (`Query` list), every column
    of `layer.columns`: the detail figure (`--detail`). Rows: query points (+ Lo-Fi attention
    received over all queries, when the layer has Lo-Fi heads); columns wrap into bands. One
    colour scale per branch (`scaled_columns`). Save at `dpi` for 1:1 panel pixels."""
    g = layer.geometry
    tw, th = panel_size(g.input_size)
    bg = background(display, (tw, th))
    received = layer.summary is not None and layer.summary.lofi is not None
    columns = scaled_columns(layer, layer.columns)
    n_bands = math.ceil(len(columns) / MAX_COLUMNS)
    per_band = math.ceil(len(columns) / n_bands)
    bands = [columns[i : i + per_band] for i in range(0, len(columns), per_band)]
    plotted: dict[str, Any] = {"columns": [c.label for c in layer.columns]}
    built = [(cols, *paint(bg, cols, queries, received)) for cols in bands]
    plotted["query_maps"] = [m for *_, drawn in built for m in drawn["query_maps"]]
    plotted["received"] = [r for *_, drawn in built for r in drawn["received"]]

    width_px = max(top.image.shape[1] for _, top, _, _ in built)
    fig_w = LEFT_IN + width_px / dpi + RIGHT_IN
    title_text = wrap(title, (fig_w - 0.2) * dpi, 6.4)
    note = wrap(SCALE_NOTE, (fig_w - 0.2) * dpi, 6.0)
    y_in = 0.08 + LINE_IN * (title_text.count("\n") + note.count("\n") + 2) + 0.1
    layout = []
    for cols, top, low, drawn in built:
        y_in += 0.08 + LINE_IN * max(wrap(c.head.label, tw, 6.2).count("\n") + 1 for c in cols)
        layout.append((y_in, cols, top, low, drawn))
        y_in += top.image.shape[0] / dpi + (GAP_IN + low.image.shape[0] / dpi if low else 0)
        y_in += BAND_GAP_IN
    fig = Figure(figsize=(fig_w, y_in), dpi=dpi)
    for y_top, cols, top, low, drawn in layout:
        ax = show_mosaic(fig, top, y_top, dpi)
        mark_queries(ax, drawn["marks"])
        for ci, c in enumerate(cols):
            _, ox = top.origin(0, ci)
            ax.text(ox + tw / 2, -4, wrap(c.head.label, tw, 6.2), ha="center", va="bottom",
                    fontsize=7.5, color=colour(g.layer, c.head.branch), clip_on=False)  # fmt: skip
        label_rows(ax, top, queries, layer.maps, th)
        if low is not None:
            lax = show_mosaic(fig, low, y_top + top.image.shape[0] / dpi + GAP_IN, dpi)
            label_received(lax, low, cols, th, tw)
    fig.text(0.1 / fig_w, 1 - 0.08 / y_in, f"{title_text}\n{note}", fontsize=8, ha="left",
             va="top")  # fmt: skip
    return fig, plotted


def show_mosaic(fig: Figure, m: Mosaic, y_top: float, dpi: int):
    """The mosaic at LEFT_IN from the left, y_top inches from the top, 1:1 pixels at dpi."""
    fig_w, fig_h = fig.get_figwidth(), fig.get_figheight()
    h_px, w_px = m.image.shape[:2]
    rect = (
        LEFT_IN / fig_w,
        1 - (y_top + h_px / dpi) / fig_h,
        w_px / dpi / fig_w,
        h_px / dpi / fig_h,
    )
    return m.show(fig, rect)


def distance_figure(summaries: Sequence, title: str = "") -> tuple[Figure, dict[str, Any]]:
    """Mean attention distance per head, one panel per layer (`LayerSummary` list): Hi-Fi red,
    Lo-Fi blue, MSA grey bars; dashed: what uniform weights over the same keys would give
    (Lo-Fi or MSA); dotted: the largest distance a Hi-Fi head can reach, (s - 1) * sqrt(2) * stride.
    One legend for all panels, below them."""
    n = len(summaries)
    cols = min(4, n)
    fig, axes, title_text, ncols = _distance_grid(summaries, cols, title)
    plotted: dict[str, Any] = {"layers": []}
    legend: dict[str, Any] = {}
    for k, summ in enumerate(summaries):
        plotted["layers"].append(_distance_panel(axes[k // cols][k % cols], summ, legend))
    for k in range(n, len(axes) * cols):
        axes[k // cols][k % cols].axis("off")
    fig_h = fig.get_figheight()
    fig.legend(
        list(legend.values()),
        list(legend.keys()),
        loc="lower center",
        bbox_to_anchor=(0.5, 0.05 / fig_h),
        ncols=min(len(legend), ncols),
        fontsize=7,
        frameon=False,
    )
    plotted["legend"] = list(legend)
    fig.suptitle(title_text, fontsize=9, y=1 - 0.1 / fig_h, va="top")
    return fig, plotted


def _distance_grid(summaries: Sequence, cols: int, title: str) -> tuple[Figure, list, str, int]:
    """(figure, rows of axes, wrapped title, legend columns): panels of one size on fixed margins
    (one draw), room for the title on top and for ticks, labels and the legend below."""
    rows = math.ceil(len(summaries) / cols)
    max_heads = max(s.geometry.layer.num_heads for s in summaries)
    panel_w, panel_h = max(2.4, 0.4 + 0.15 * max_heads), 1.9  # inches: fixed margins, one draw
    left, gap_x, right = 0.75, 0.7, 0.15
    fig_w = left + cols * panel_w + (cols - 1) * gap_x + right
    ncols = min(5, max(1, int(fig_w // 2.2)))  # legend columns (at most 5 entries)
    title_text = wrap(title, fig_w * 100, 7.0)
    top = 0.15 + 0.17 * (title_text.count("\n") + 1) + 0.4  # title, then two-line panel titles
    below, gap_y = 0.45 + 0.2 * math.ceil(5 / ncols) + 0.1, 0.45 + 0.4  # ticks, xlabel, legend
    fig_h = top + rows * panel_h + (rows - 1) * gap_y + below
    fig = Figure(figsize=(fig_w, fig_h))
    axes = [
        [
            fig.add_axes(
                [
                    (left + c * (panel_w + gap_x)) / fig_w,
                    1 - (top + r * (panel_h + gap_y) + panel_h) / fig_h,
                    panel_w / fig_w,
                    panel_h / fig_h,
                ]
            )
            for c in range(cols)
        ]
        for r in range(rows)
    ]
    return fig, axes, title_text, ncols


def _distance_panel(ax, summ, legend: dict[str, Any]) -> dict[str, Any]:
    """One layer's bars and reference lines; adds its artists to `legend` by label and returns
    the plotted distances per branch."""
    info, g = summ.geometry.layer, summ.geometry
    entry: dict[str, Any] = {"index": info.index}
    for b in summ.branches():
        label = (
            "Hi-Fi heads"
            if b.branch == "hifi"
            else "Lo-Fi heads"
            if info.window_size > 1
            else "MSA heads"
        )
        legend[label] = ax.bar(b.heads, b.mean_distance, color=colour(info, b.branch))
        entry[b.branch] = np.asarray(b.mean_distance)
    if summ.lofi is not None:
        legend["uniform weights over the same keys"] = ax.axhline(
            summ.lofi.uniform_distance, color="k", linestyle="--", linewidth=1
        )
    if summ.hifi is not None:
        legend["farthest a Hi-Fi head can reach"] = ax.axhline(
            g.hifi_max_distance, color=COLORS["hifi"], linestyle=":", linewidth=1
        )
    ax.set_title(
        f"layer {info.index} ({info.name})\ns = {info.window_size}, grid "
        f"{g.grid[0]}x{g.grid[1]} (rows x cols)",
        fontsize=8,
    )
    ax.set_xlabel("head (Hi-Fi first)" if info.hifi_heads else "head", fontsize=7)
    ax.set_ylabel("mean attention\ndistance (input px)", fontsize=7)
    ax.set_xticks(range(0, info.num_heads, math.ceil(info.num_heads / 16)))
    ax.set_xlim(-0.6, info.num_heads - 0.4)
    ax.tick_params(labelsize=7)
    return entry
