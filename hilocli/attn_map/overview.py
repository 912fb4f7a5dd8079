"""The default figure of `hilo attn-map`: every chosen layer side by side, one column per branch
(the mean over its heads), rows = query points (+ the Lo-Fi attention received). One mosaic image
for all panels (few artists: quick to draw, small to store); per-head detail is `--detail`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

from hilocli.attn_map.figures import (
    BAND_GAP_IN,
    GAP_IN,
    LEFT_IN,
    LINE_IN,
    RIGHT_IN,
    SCALE_NOTE,
    colour,
    label_received,
    label_rows,
    mark_queries,
    paint,
    scaled_columns,
    show_mosaic,
    wrap,
)
from hilocli.attn_map.heads import head_columns
from hilocli.attn_map.mosaic import background, panel_size


def layer_heading(layer) -> str:
    """`layer 5 (2.5)` and its window and grid: what a group of columns shows."""
    info, g = layer.geometry.layer, layer.geometry
    kind = f"s = {info.window_size}" if info.window_size > 1 else "MSA (s = 1)"
    return f"layer {info.index} ({info.short_name})\n{kind}, grid {g.grid[0]}x{g.grid[1]}"


def overview_figure(
    display, layers: Sequence, queries: Sequence, title: str = "", dpi: int = 100
) -> tuple[Figure, dict[str, Any]]:
    """The chosen layers (`AttnMapResult` layers) side by side: per layer its Hi-Fi mean and
    Lo-Fi mean (or MSA mean) columns, each branch on its own colour scale from 0. Save at `dpi`
    for 1:1 panel pixels. Returns (Figure, plotted: per column its layer, label and maps)."""
    g0 = layers[0].geometry
    tw, th = panel_size(g0.input_size)
    bg = background(display, (tw, th))
    columns, groups = [], []
    for lr in layers:
        cols = scaled_columns(lr, head_columns(lr.geometry.layer, "mean"))
        columns += cols
        groups.append(len(cols))
    received = any(lr.summary is not None and lr.summary.lofi is not None for lr in layers)
    top, low, drawn = paint(bg, columns, queries, received, groups)

    fig_w = LEFT_IN + top.image.shape[1] / dpi + RIGHT_IN
    title_text = wrap(title, (fig_w - 0.2) * dpi, 6.4)
    note = wrap(SCALE_NOTE, (fig_w - 0.2) * dpi, 6.0)
    head_in = 0.08 + LINE_IN * (title_text.count("\n") + note.count("\n") + 2) + 0.1
    labels = [wrap(c.head.label, tw, 6.2) for c in columns]
    lines = max(lab.count("\n") + 1 for lab in labels)  # the tallest column label
    y_top = head_in + LINE_IN * (2 + lines) + 0.12
    fig_h = y_top + top.image.shape[0] / dpi + (GAP_IN + low.image.shape[0] / dpi if low else 0)
    fig = Figure(figsize=(fig_w, fig_h + BAND_GAP_IN), dpi=dpi)
    ax = show_mosaic(fig, top, y_top, dpi)
    mark_queries(ax, drawn["marks"])
    first = 0
    for lr, n in zip(layers, groups):
        _, x0 = top.origin(0, first)
        _, x1 = top.origin(0, first + n - 1)
        ax.text((x0 + x1 + tw) / 2, -4 - LINE_IN * dpi * lines - 4, layer_heading(lr),
                ha="center", va="bottom", fontsize=8, clip_on=False)  # fmt: skip
        first += n
    for ci, (c, lab) in enumerate(zip(columns, labels)):
        _, ox = top.origin(0, ci)
        ax.text(ox + tw / 2, -4, lab, ha="center", va="bottom", fontsize=7.5,
                color=colour(c.layer.geometry.layer, c.head.branch), clip_on=False)  # fmt: skip
    label_rows(ax, top, queries, layers[0].maps, th)
    if low is not None:
        lax = show_mosaic(fig, low, y_top + top.image.shape[0] / dpi + GAP_IN, dpi)
        label_received(lax, low, columns, th, tw)
    fig.text(0.1 / fig_w, 1 - 0.08 / fig.get_figheight(), f"{title_text}\n{note}", fontsize=8,
             ha="left", va="top")  # fmt: skip
    plotted = {
        "layers": [c.layer.geometry.layer.index for c in columns],
        "columns": [c.head.label for c in columns],
        "query_maps": drawn["query_maps"],
        "received": drawn["received"],
    }
    return fig, plotted
