"""Panels painted as RGB arrays, laid out as one image (fast to draw: one artist for many panels).

Every panel shows the model input (what the model saw, `display`) at one size: the longer side
PANEL pixels, but the shorter side at least MIN_SIDE (small inputs are upscaled, so labels and
colour-bar numbers keep their room at any resolution). A map over pooled keys is painted with
nearest-neighbour upsampling: each key's weight covers exactly the input pixels its window covers.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.colors import Normalize
from PIL import Image

CMAP = "inferno"
PANEL = 170  # panel pixels along the input's longer side (about its size at 100 dpi)
MIN_SIDE = 128  # ... and at least this many along the shorter side
CYAN = np.array([0.0, 1.0, 1.0])


def panel_size(input_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) in panel pixels of a w x h input (aspect ratio kept)."""
    w, h = input_size
    k = PANEL / max(w, h)
    if min(w, h) * k < MIN_SIDE:
        k = MIN_SIDE / min(w, h)
    return max(1, round(w * k)), max(1, round(h * k))


def background(display, size: tuple[int, int]) -> np.ndarray:
    """Dimmed RGB array (float, 0..1) of what the model saw, resized to size = (w, h)."""
    img = display.convert("RGB").resize(size, Image.BILINEAR)
    arr = np.asarray(img).astype(np.float32) / 255.0  # (h, w, 3)
    grey = arr.mean(axis=-1, keepdims=True)
    return (0.35 * arr + 0.35 * grey + 0.15).astype(np.float32)  # dimmed: weights stand out


def weight_norm(maps: Sequence[np.ndarray]) -> Normalize:
    """One colour scale from 0 to the largest weight of `maps`: a near-uniform map stays one
    colour (a scale from its own smallest to largest value would make any ripple look like
    structure)."""
    vmax = max(float(a.max()) for a in maps)
    return Normalize(0.0, vmax if vmax > 0 else 1e-9)


def colours(values: np.ndarray, norm: Normalize) -> np.ndarray:
    return matplotlib.colormaps[CMAP](norm(values))[..., :3]


def compose(
    bg: np.ndarray,
    weights: np.ndarray,
    box: tuple[float, float, float, float],
    input_size: tuple[int, int],
    norm: Normalize,
    alpha: float = 0.75,
) -> np.ndarray:
    """Paint `weights` (rows, cols), spread over `box` = (x0, y0, x1, y1) input pixels, onto the
    background `bg` (which spans the whole input): nearest-neighbour upsampling, each weight
    covering exactly its cell. Parts of the box outside the input are not shown; pixels outside
    the box keep the background. Returns an RGB array the size of `bg`."""
    th, tw = bg.shape[:2]
    w, h = input_size
    x0, y0, x1, y1 = box
    rows_n, cols_n = weights.shape
    xs = (np.arange(tw) + 0.5) * w / tw  # input x of each panel pixel centre
    ys = (np.arange(th) + 0.5) * h / th
    ci = np.floor((xs - x0) / (x1 - x0) * cols_n).astype(int)  # increasing: the cells inside
    ri = np.floor((ys - y0) / (y1 - y0) * rows_n).astype(int)  # the box are one slice
    cols = np.nonzero((ci >= 0) & (ci < cols_n))[0]
    rows = np.nonzero((ri >= 0) & (ri < rows_n))[0]
    out = bg.copy()
    if not (len(rows) and len(cols)):
        return out
    rgb = colours(weights, norm).astype(np.float32)  # (rows_n, cols_n, 3)
    sub = rgb[ri[rows][:, None], ci[cols][None, :]]  # (n_rows_in, n_cols_in, 3)
    region = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    out[region] = np.float32(1 - alpha) * out[region] + np.float32(alpha) * sub
    return out


def outline(
    img: np.ndarray, top: int, left: int, height: int, width: int, colour: np.ndarray = CYAN
) -> None:
    """Draw a 1-pixel rectangle outline into img (rows, cols, 3), clipped to the image."""
    H, W = img.shape[:2]
    b, r = min(top + height - 1, H - 1), min(left + width - 1, W - 1)
    t, lf = max(top, 0), max(left, 0)
    if t > b or lf > r:
        return
    img[t, lf : r + 1] = colour
    img[b, lf : r + 1] = colour
    img[t : b + 1, lf] = colour
    img[t : b + 1, r] = colour


class Mosaic:
    """rows x cols panels of ph x pw pixels, and a colour bar strip under the last row.
    `groups`: column counts of groups set apart by a wider gap (a layer's columns)."""

    BAR = 9  # colour-bar strip height, pixels
    BAR_SPACE = 30  # strip plus room for its numbers
    GROUP_GAP = 24  # extra pixels between groups of columns

    def __init__(
        self,
        rows: int,
        cols: int,
        ph: int,
        pw: int,
        gap_y: int = 6,
        gap_x: int = 10,
        groups: Sequence[int] = (),
    ):
        self.rows, self.ph, self.pw, self.gy, self.gx = rows, ph, pw, gap_y, gap_x
        self.group_of = [g for g, n in enumerate(groups) for _ in range(n)] or [0] * cols
        self.image = np.ones(
            (
                rows * ph + (rows - 1) * gap_y + 4 + self.BAR_SPACE,
                cols * pw + (cols - 1) * gap_x + self.group_of[-1] * self.GROUP_GAP,
                3,
            ),
            dtype=np.float32,
        )
        self.bars: list[tuple[int, Normalize]] = []

    def origin(self, ri: int, ci: int) -> tuple[int, int]:
        """(y, x) pixel of the panel's top-left corner."""
        x = ci * (self.pw + self.gx) + self.group_of[ci] * self.GROUP_GAP
        return ri * (self.ph + self.gy), x

    def put(self, ri: int, ci: int, panel: np.ndarray) -> None:
        y, x = self.origin(ri, ci)
        self.image[y : y + self.ph, x : x + self.pw] = panel

    def _bar_span(self, ci: int) -> tuple[int, int]:
        _, x = self.origin(0, ci)
        return x + int(0.06 * self.pw), x + int(0.94 * self.pw)

    def colour_bar(self, ci: int, norm: Normalize, uniform: float | None = None) -> None:
        """A horizontal colour bar under column ci (the norm's range, left to right), with a
        white tick where `uniform` (1 / number of keys: every key weighted alike) falls."""
        y = self.rows * (self.ph + self.gy) - self.gy + 4
        x0, x1 = self._bar_span(ci)
        ramp = matplotlib.colormaps[CMAP](np.linspace(0, 1, x1 - x0))[:, :3]  # (n, 3)
        self.image[y : y + self.BAR, x0:x1] = ramp[None]
        if uniform is not None and norm.vmin <= uniform <= norm.vmax:
            xu = x0 + min(x1 - x0 - 1, int(norm(uniform) * (x1 - x0)))
            self.image[y - 2 : y + self.BAR + 2, max(x0, xu - 1) : xu + 1] = 1.0  # white tick
            self.image[y - 3, max(x0, xu - 1) : xu + 1] = 0.0  # dark cap: visible on white
        outline(self.image, y, x0, self.BAR, x1 - x0, np.zeros(3))
        self.bars.append((ci, norm))

    def show(self, fig, rect: tuple[float, float, float, float]):
        """The mosaic on new axes at `rect` (figure fraction), axes in mosaic pixels."""
        ax = fig.add_axes(rect)
        h, w = self.image.shape[:2]
        image = (np.clip(self.image, 0, 1) * 255 + 0.5).astype(np.uint8)  # (h, w, 3)
        ax.imshow(image, extent=(0, w, h, 0), interpolation="nearest")
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.axis("off")
        y = self.rows * (self.ph + self.gy) - self.gy + 4 + self.BAR + 2
        for ci, norm in self.bars:
            x0, x1 = self._bar_span(ci)
            for frac, ha in ((0.0, "left"), (1.0, "right")):  # 0 and the largest weight
                text = f"{norm.vmin + frac * (norm.vmax - norm.vmin):.3g}"
                ax.text(x0 + frac * (x1 - x0), y, text, ha=ha, va="top", fontsize=6)
        return ax
