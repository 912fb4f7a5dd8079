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
import textwrap
from typing import Any, Sequence

import matplotlib
import matplotlib.ticker
import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from hilocli.attention import HeadColumn, LayerGeometry, LayerSummary, QueryMap

COLORS = {"hifi": "tab:red", "lofi": "tab:blue"}
CMAP = "inferno"
THUMB = 170  # panel images: at most this many pixels a side (about the panel's size at 100 dpi)


def _background(display, max_side: int = THUMB) -> np.ndarray:
    """Greyed-down RGB array (float, 0..1) of what the model saw, at most max_side a side."""
    from PIL import Image

    img = display.convert("RGB").copy()
    img.thumbnail((max_side, max_side), Image.BILINEAR)
    arr = np.asarray(img).astype(np.float32) / 255.0
    grey = arr.mean(axis=-1, keepdims=True)
    return 0.35 * arr + 0.35 * grey + 0.15  # dimmed, so the weights stand out


def compose(bg: np.ndarray, weights: np.ndarray, box: tuple[float, float, float, float],
            input_size: tuple[int, int], norm, alpha: float = 0.75) -> np.ndarray:
    """Paint `weights` (rows, cols), spread over `box` = (x0, y0, x1, y1) input pixels, onto the
    background thumbnail `bg` (which spans the whole input): nearest-neighbour upsampling, each
    weight covering exactly its cell. Parts of the box outside the input are not shown; pixels
    outside the box keep the background. Returns an RGB array the size of `bg`.

    Drawing one composed image per panel (rather than an overlay artist) keeps figures with
    hundreds of panels fast to save."""
    th, tw = bg.shape[:2]
    w, h = input_size
    x0, y0, x1, y1 = box
    rows_n, cols_n = weights.shape
    xs = (np.arange(tw) + 0.5) * w / tw  # input x of each thumbnail pixel centre
    ys = (np.arange(th) + 0.5) * h / th
    ci = np.floor((xs - x0) / (x1 - x0) * cols_n).astype(int)
    ri = np.floor((ys - y0) / (y1 - y0) * rows_n).astype(int)
    cok, rok = (ci >= 0) & (ci < cols_n), (ri >= 0) & (ri < rows_n)
    rgba = matplotlib.colormaps[CMAP](norm(weights))[..., :3]  # (rows, cols, 3)
    out = bg.copy()
    sub = rgba[np.ix_(ri[rok], ci[cok])]  # (n_rows_in, n_cols_in, 3)
    region = np.ix_(np.nonzero(rok)[0], np.nonzero(cok)[0])
    out[region] = (1 - alpha) * out[region] + alpha * sub
    return out


CYAN = np.array([0.0, 1.0, 1.0])


def _outline(img: np.ndarray, top: int, left: int, height: int, width: int,
             colour: np.ndarray = CYAN) -> None:
    """Draw a 1-pixel rectangle outline into img (rows, cols, 3), clipped to the image."""
    H, W = img.shape[:2]
    b, r = min(top + height - 1, H - 1), min(left + width - 1, W - 1)
    t, lf = max(top, 0), max(left, 0)
    if t > b or lf > r:
        return
    img[t, lf:r + 1] = colour
    img[b, lf:r + 1] = colour
    img[t:b + 1, lf] = colour
    img[t:b + 1, r] = colour


class _Mosaic:
    """Panels laid out as one RGB image (fast to draw: one artist for many panels)."""

    BAR = 9  # colour-bar strip height, pixels
    BAR_SPACE = 30  # strip plus room for its numbers

    def __init__(self, rows: int, cols: int, ph: int, pw: int, gap_y: int = 6, gap_x: int = 8):
        self.rows, self.ph, self.pw, self.gy, self.gx = rows, ph, pw, gap_y, gap_x
        self.image = np.ones((rows * ph + (rows - 1) * gap_y + 4 + self.BAR_SPACE,
                              cols * pw + (cols - 1) * gap_x, 3), dtype=np.float32)
        self.bars: list[tuple[int, Normalize]] = []

    def origin(self, ri: int, ci: int) -> tuple[int, int]:
        return ri * (self.ph + self.gy), ci * (self.pw + self.gx)

    def put(self, ri: int, ci: int, panel: np.ndarray) -> None:
        y, x = self.origin(ri, ci)
        self.image[y:y + self.ph, x:x + self.pw] = panel

    def colour_bar(self, ci: int, norm: Normalize) -> None:
        """A horizontal colour bar under column ci (the norm's range, left to right)."""
        y = self.rows * (self.ph + self.gy) - self.gy + 4
        _, x = self.origin(0, ci)
        x0, x1 = x + int(0.06 * self.pw), x + int(0.94 * self.pw)
        ramp = matplotlib.colormaps[CMAP](np.linspace(0, 1, x1 - x0))[:, :3]  # (n, 3)
        self.image[y:y + self.BAR, x0:x1] = ramp[None]
        _outline(self.image, y, x0, self.BAR, x1 - x0, np.zeros(3))
        self.bars.append((ci, norm))

    def _bar_labels(self, ax) -> None:
        y = self.rows * (self.ph + self.gy) - self.gy + 4 + self.BAR + 2
        for ci, norm in self.bars:
            _, x = self.origin(0, ci)
            x0, x1 = x + int(0.06 * self.pw), x + int(0.94 * self.pw)
            for frac, ha in ((0.0, "left"), (0.5, "center"), (1.0, "right")):
                value = norm.vmin + frac * (norm.vmax - norm.vmin)
                ax.text(x0 + frac * (x1 - x0), y, f"{value:.3g}", ha=ha, va="top", fontsize=6)

    def show(self, fig, rect: tuple[float, float, float, float]):
        ax = fig.add_axes(rect)
        h, w = self.image.shape[:2]
        image = (np.clip(self.image, 0, 1) * 255 + 0.5).astype(np.uint8)  # (h, w, 3)
        ax.imshow(image, extent=(0, w, h, 0), interpolation="nearest")
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.axis("off")
        self._bar_labels(ax)
        return ax


def _hifi_panel(bg: np.ndarray, g: LayerGeometry, weights: np.ndarray, norm,
                qmap: QueryMap) -> tuple[np.ndarray, list[tuple[float, float, str, str]]]:
    """The window's weights painted where it sits, outlined, and a zoomed inset of the s x s
    weights (query cell outlined) in the corner away from the window. Returns the panel and the
    inset's numbers as (x, y, text, colour) in panel pixels."""
    s, t = g.window_size, g.stride
    th, tw = bg.shape[:2]
    w_in, h_in = g.input_size
    r0, c0 = qmap.window_origin
    x0, y0 = c0 * t, r0 * t
    panel = compose(bg, weights, (x0, y0, x0 + s * t, y0 + s * t), g.input_size, norm, 1.0)
    ky, kx = th / h_in, tw / w_in  # panel pixels per input pixel
    _outline(panel, int(round(y0 * ky)), int(round(x0 * kx)), max(2, int(round(s * t * ky))),
             max(2, int(round(s * t * kx))))
    side = max(s, int(0.42 * min(th, tw)) // s * s)  # inset size, a multiple of s
    cell = side // s
    left = 2 if x0 + s * t / 2 > w_in / 2 else tw - side - 2
    top = th - side - 2 if y0 + s * t / 2 < h_in / 2 else 2
    rgb = matplotlib.colormaps[CMAP](norm(weights))[..., :3]  # (s, s, 3)
    panel[top:top + side, left:left + side] = np.repeat(np.repeat(rgb, cell, 0), cell, 1)
    _outline(panel, top - 1, left - 1, side + 2, side + 2)
    qr, qc = qmap.token[0] - r0, qmap.token[1] - c0
    _outline(panel, top + qr * cell, left + qc * cell, cell, cell)
    texts = []
    if s <= 4:
        for (i, j), v in np.ndenumerate(weights):
            texts.append((left + (j + 0.5) * cell, top + (i + 0.5) * cell, f"{v:.2f}",
                          "white" if norm(v) < 0.6 else "black"))
    return panel, texts


def _norm(maps: Sequence[np.ndarray]) -> Normalize:
    vmin = min(float(a.min()) for a in maps)
    vmax = max(float(a.max()) for a in maps)
    return Normalize(vmin, vmax if vmax > vmin else vmin + 1e-9)


def layer_figure(display, g: LayerGeometry, columns: Sequence[HeadColumn],
                 maps: Sequence[QueryMap], query_xy: Sequence[tuple[float, float]],
                 row_labels: Sequence[str], summary: LayerSummary | None = None,
                 title: str = "", dpi: int = 100) -> tuple[Figure, dict[str, Any]]:
    """Rows: query points (+ a last row: Lo-Fi attention received, when `summary` has it);
    columns: heads (or branch means). Each column has one colour scale over its query rows
    (the column's smallest .. largest weight, not from 0), shown by the colour bar under those
    rows; the received row has its own scale and bar. Save at `dpi` for 1:1 panel pixels."""
    bg = _background(display)
    th, tw = bg.shape[:2]
    n_rows, n_cols = len(maps), len(columns)
    received = summary is not None and summary.lofi is not None
    w_in, h_in = g.input_size
    ky, kx = th / h_in, tw / w_in
    plotted: dict[str, Any] = {"columns": [c.label for c in columns], "query_maps": [],
                               "received": []}

    top_mosaic = _Mosaic(n_rows, n_cols, th, tw)
    low_mosaic = _Mosaic(1, n_cols, th, tw) if received else None
    texts: list[tuple[float, float, str, str]] = []
    marks: list[tuple[float, float]] = []
    for ci, col in enumerate(columns):
        col_maps = [col.select(g, m.hifi, m.lofi) for m in maps]
        plotted["query_maps"].append(col_maps)
        norm = _norm(col_maps)
        top_mosaic.colour_bar(ci, norm)
        for ri, (m, w) in enumerate(zip(maps, col_maps)):
            oy, ox = top_mosaic.origin(ri, ci)
            if col.branch == "hifi":
                panel, inset_texts = _hifi_panel(bg, g, w, norm, m)
                texts += [(ox + x, oy + y, txt, c) for x, y, txt, c in inset_texts]
            else:
                s, t = g.window_size, g.stride
                Hk, Wk = w.shape
                panel = compose(bg, w, (0, 0, Wk * s * t, Hk * s * t), g.input_size, norm)
            top_mosaic.put(ri, ci, panel)
            marks.append((ox + query_xy[ri][0] * kx, oy + query_xy[ri][1] * ky))
        if received:
            if col.branch == "lofi":
                rec = summary.lofi.received[[h - g.h_heads for h in col.heads]].mean(axis=0)
                rnorm = _norm([rec])
                s, t = g.window_size, g.stride
                low_mosaic.put(0, ci, compose(bg, rec, (0, 0, rec.shape[1] * s * t,
                                                        rec.shape[0] * s * t),
                                              g.input_size, rnorm))
                low_mosaic.colour_bar(ci, rnorm)
                plotted["received"].append(rec)
            else:
                plotted["received"].append(None)

    # layout in inches: panels at 1 mosaic pixel per screen pixel
    left, right, top_in, gap = 1.15, 0.15, 1.0, 0.2
    mw_in = top_mosaic.image.shape[1] / dpi
    mh_in = top_mosaic.image.shape[0] / dpi
    low_in = low_mosaic.image.shape[0] / dpi if received else 0.0
    fig_w = left + mw_in + right
    fig_h = top_in + mh_in + (gap + low_in if received else 0.0) + 0.1
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)

    def rect(x_in: float, y_top_in: float, w: float, h: float) -> tuple[float, float, float,
                                                                        float]:
        return x_in / fig_w, 1 - (y_top_in + h) / fig_h, w / fig_w, h / fig_h

    ax = top_mosaic.show(fig, rect(left, top_in, mw_in, mh_in))
    if marks:
        xs, ys = zip(*marks)
        ax.plot(xs, ys, linestyle="none", marker="+", color="cyan", markersize=8,
                markeredgewidth=1.6)
    for x, y, txt, colour in texts:
        ax.text(x, y, txt, ha="center", va="center", fontsize=5, color=colour)
    for ci, col in enumerate(columns):
        _, ox = top_mosaic.origin(0, ci)
        ax.text(ox + tw / 2, -4, col.label, ha="center", va="bottom", fontsize=8,
                color=COLORS[col.branch], clip_on=False)
    for ri, label in enumerate(row_labels):
        oy, _ = top_mosaic.origin(ri, 0)
        ax.text(-6, oy + th / 2, label, ha="right", va="center", fontsize=7, clip_on=False)
    if received:
        lax = low_mosaic.show(fig, rect(left, top_in + mh_in + gap, mw_in, low_in))
        lax.text(-6, th / 2, "attention received\n(mean over\nall queries)", ha="right",
                 va="center", fontsize=7, clip_on=False)
        for ci, col in enumerate(columns):
            if col.branch == "hifi":
                _, ox = low_mosaic.origin(0, ci)
                lax.text(ox + tw / 2, th / 2, "Hi-Fi: window-local,\nno global map",
                         ha="center", va="center", fontsize=7)
    width_chars = max(40, int(fig_w * 13))
    fig.text(0.1 / fig_w, 1 - 0.06 / fig_h,
             "\n".join(textwrap.fill(line, width_chars) for line in title.splitlines()),
             fontsize=8, ha="left", va="top")
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
