"""`spectrum_maps.png` of `hilo spectrum`: the centred log-amplitude spectra of every measured layer
and branch, on one colour bar. Takes a `SpectrumResult`, returns (Figure, plotted data)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from hilocli.spectrum.branch import BranchSpectrum
from hilocli.spectrum.figures import COLORS, figure_title, title_figure, title_height
from hilocli.spectrum.measures import BRANCH_LABELS, BRANCHES, short_name

if TYPE_CHECKING:
    from hilocli.spectrum.result import SpectrumResult


def _extent(spec: BranchSpectrum) -> list[float]:
    """Pixel-edge extent of a centred spectrum so each pixel sits on its true frequency."""
    fy, fx = spec.freq_y, spec.freq_x
    dy = 1.0 / len(fy)
    dx = 1.0 / len(fx)
    return [fx[0] - dx / 2, fx[-1] + dx / 2, fy[0] - dy / 2, fy[-1] + dy / 2]


def maps_figure(result: SpectrumResult) -> tuple[Figure, dict[str, Any]]:
    """spectrum_maps.png: rows = layers, columns = Hi-Fi, Lo-Fi, control: the centred log
    amplitude spectrum, mean over images, each map less its own largest non-DC value (so all
    maps share one colour bar: where in frequency a map's energy lies, 0 = its peak)."""
    layers = result.layers
    title = figure_title(result)
    title_in = title_height(title) + 0.25
    side, gap, left = 1.6, 0.2, 1.0
    width = left + 3 * side + 2 * gap + 0.9
    height = title_in + len(layers) * (side + gap) + 0.45
    fig = Figure(figsize=(width, height))
    shown = {}
    for spectra in layers:
        for b in BRANCHES:
            spec = spectra.branch(b)
            if spec is not None:
                shown[spectra.layer.index, b] = _relative(spec)
    finite = [a[np.isfinite(a)] for a in shown.values()]
    finite = np.concatenate(finite) if finite else np.zeros(1)
    vmin = float(np.percentile(finite, 1)) if finite.size else -1.0
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.6")  # grey: DC, removed
    data: dict[str, Any] = {"layers": {}}
    im = None
    for r, spectra in enumerate(layers):
        info = spectra.layer
        entry: dict[str, Any] = {"name": info.name, "grid": list(spectra.grid)}
        for c, b in enumerate(BRANCHES):
            y0 = title_in + r * (side + gap)
            rect = [(left + c * (side + gap)) / width, 1 - (y0 + side) / height,
                    side / width, side / height]  # fmt: skip
            ax = fig.add_axes(rect)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(BRANCH_LABELS[b], fontsize=8, color=COLORS[b])
            if c == 0:
                ax.set_ylabel(f"[{info.index}] {short_name(info)}\n"
                              f"{spectra.grid[0]}x{spectra.grid[1]} grid", fontsize=7)  # fmt: skip
            spec = spectra.branch(b)
            if spec is None:
                ax.text(0.5, 0.5, f"no {BRANCH_LABELS[b]}\nbranch", ha="center", va="center",
                        fontsize=7, transform=ax.transAxes)  # fmt: skip
                continue
            im = ax.imshow(shown[info.index, b], extent=_extent(spec), origin="lower", cmap=cmap,
                           vmin=vmin, vmax=0.0, interpolation="nearest")  # fmt: skip
            entry[f"{b}_log_amplitude"] = shown[info.index, b]
        data["layers"][info.index] = entry
    if im is not None:
        cax = fig.add_axes([(width - 0.7) / width, 0.45 / height, 0.12 / width,
                            (height - title_in - 0.45) / height])  # fmt: skip
        bar = fig.colorbar(im, cax=cax)
        bar.set_label("log|F| - the map's largest non-DC value", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    fig.text(left / width, 0.15 / height, "centre: zero frequency (grey, removed with the mean); "
             "edges: +-0.5 cycles/token", fontsize=6.5)  # fmt: skip
    title_figure(fig, title, height)
    return fig, data


def _relative(spec: BranchSpectrum) -> np.ndarray:
    shown = np.array(spec.log_amplitude, dtype=float)
    cy, cx = len(spec.freq_y) // 2, len(spec.freq_x) // 2  # zero frequency after fftshift
    shown[cy, cx] = np.nan  # mean removed: DC carries nothing (grey)
    finite = shown[np.isfinite(shown)]
    return shown - (finite.max() if finite.size else 0.0)
