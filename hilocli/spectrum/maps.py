"""`spectrum_maps.png` of `hilo spectrum`: the centred log-amplitude spectra of every measured layer
and branch, on one colour bar. Takes a `SpectrumResult`, returns (Figure, plotted data)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib import transforms
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from hilocli.spectrum.branch import BranchSpectrum
from hilocli.spectrum.figures import COLORS, figure_title, title_figure, title_height
from hilocli.spectrum.measures import BRANCH_LABELS, BRANCHES

if TYPE_CHECKING:
    from hilocli.spectrum.result import SpectrumResult

SIDE, GAP, LEFT = 1.6, 0.2, 1.0  # inches: a panel's side, the gap between panels, left margin


def maps_figure(result: SpectrumResult) -> tuple[Figure, dict[str, Any]]:
    """spectrum_maps.png: rows = layers, columns = Hi-Fi, Lo-Fi, control: the centred log
    amplitude spectrum, mean over images, each map less its own largest non-DC value (so all
    maps share one colour bar: where in frequency a map's energy lies, 0 = its peak).

    The panels are drawn on one axes (one image per map, a frame around each): the same figure
    as an axes per panel, with a small fraction of the artists to build and draw."""
    layers = result.layers
    title = figure_title(result)
    title_in = title_height(title) + 0.25
    width = LEFT + 3 * SIDE + 2 * GAP + 0.9
    height = title_in + len(layers) * (SIDE + GAP) + 0.45
    fig = Figure(figsize=(width, height))
    shown, vmin = _on_one_scale(layers)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.6")  # grey: DC, removed
    panels_h = len(layers) * (SIDE + GAP) - GAP
    ax = fig.add_axes([LEFT / width, 1 - (title_in + panels_h) / height,
                       (3 * SIDE + 2 * GAP) / width, panels_h / height])  # fmt: skip
    ax.set_xlim(0, 3 * SIDE + 2 * GAP)  # inches from the panels' top left corner, y down
    ax.set_ylim(panels_h, 0)
    ax.set_axis_off()
    data: dict[str, Any] = {"layers": {}}
    im = None
    for r, spectra in enumerate(layers):
        info = spectra.layer
        entry: dict[str, Any] = {"name": info.name, "grid": list(spectra.grid)}
        _label_row(ax, r, f"[{info.index}] {info.short_name}\n"
                   f"{spectra.grid[0]}x{spectra.grid[1]} grid")  # fmt: skip
        for c, b in enumerate(BRANCHES):
            x0, y0 = c * (SIDE + GAP), r * (SIDE + GAP)
            if r == 0:
                _title_column(ax, c, BRANCH_LABELS[b], COLORS[b])
            if spectra.branch(b) is None:
                ax.text(x0 + SIDE / 2, y0 + SIDE / 2, f"no {BRANCH_LABELS[b]}\nbranch",
                        ha="center", va="center", fontsize=7)  # fmt: skip
                continue
            # origin "lower": the lowest frequency at the panel's bottom edge (y0 + SIDE)
            im = ax.imshow(shown[info.index, b], extent=[x0, x0 + SIDE, y0 + SIDE, y0],
                           origin="lower", cmap=cmap, vmin=vmin, vmax=0.0,
                           interpolation="nearest", aspect="auto")  # fmt: skip
            entry[f"{b}_log_amplitude"] = shown[info.index, b]
        data["layers"][info.index] = entry
    ax.add_collection(_frames(len(layers)))
    if im is not None:
        cax = fig.add_axes([(width - 0.7) / width, 0.45 / height, 0.12 / width,
                            (height - title_in - 0.45) / height])  # fmt: skip
        bar = fig.colorbar(im, cax=cax)
        bar.set_label("log|F| - the map's largest non-DC value", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    fig.text(LEFT / width, 0.15 / height, "centre: zero frequency (grey, removed with the mean); "
             "edges: +-0.5 cycles/token", fontsize=6.5)  # fmt: skip
    title_figure(fig, title, height)
    return fig, data


def _on_one_scale(layers) -> tuple[dict[tuple[int, str], np.ndarray], float]:
    """Per (layer index, branch) the map relative to its peak, and the colour bar's low end (the
    1st percentile over every map)."""
    shown = {
        (spectra.layer.index, b): _relative(spec)
        for spectra in layers
        for b in BRANCHES
        if (spec := spectra.branch(b)) is not None
    }
    finite = [a[np.isfinite(a)] for a in shown.values()]
    finite = np.concatenate(finite) if finite else np.zeros(1)
    return shown, float(np.percentile(finite, 1)) if finite.size else -1.0


def _frames(rows: int) -> PatchCollection:
    """A black frame around each panel (as an axes' spines), above the images."""
    boxes = [
        Rectangle((c * (SIDE + GAP), r * (SIDE + GAP)), SIDE, SIDE)
        for r in range(rows)
        for c in range(3)
    ]
    frames = PatchCollection(boxes, facecolor="none", edgecolor="black", linewidth=0.8, zorder=3)
    frames.set_clip_on(False)  # the outer frames lie on the axes' edges: drawn whole
    return frames


def _title_column(ax, c: int, text: str, color: str) -> None:
    """A column's title above its top panel, placed as an axes title (6 pt above the frame)."""
    at = transforms.offset_copy(ax.transData, fig=ax.figure, y=6, units="points")
    ax.text(c * (SIDE + GAP) + SIDE / 2, 0, text, transform=at, ha="center", va="baseline",
            fontsize=8, color=color)  # fmt: skip


def _label_row(ax, r: int, text: str) -> None:
    """A row's label left of its first panel, placed as an axes' y label (4 pt from the frame)."""
    at = transforms.offset_copy(ax.transData, fig=ax.figure, x=-4, units="points")
    ax.text(0, r * (SIDE + GAP) + SIDE / 2, text, transform=at, rotation=90,
            rotation_mode="anchor", ha="center", va="bottom", fontsize=7)  # fmt: skip


def _relative(spec: BranchSpectrum) -> np.ndarray:
    """The map less its largest non-DC value; DC (removed with the mean) NaN, drawn grey."""
    shown = np.array(spec.log_amplitude, dtype=float)
    cy, cx = len(spec.freq_y) // 2, len(spec.freq_x) // 2  # zero frequency after fftshift
    shown[cy, cx] = np.nan  # mean removed: DC carries nothing (grey)
    finite = shown[np.isfinite(shown)]
    return shown - (finite.max() if finite.size else 0.0)
