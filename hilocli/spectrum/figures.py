"""Figures for `hilo spectrum`. Each function takes a `SpectrumResult` and returns
(Figure, plotted data).

The returned dict holds exactly the arrays handed to matplotlib, so tests (and users) can check
that the figure shows what the JSON says. No pyplot state: figures are `matplotlib.figure.Figure`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator

from hilocli.spectrum.collect import LayerSpectra
from hilocli.spectrum.measures import BRANCH_LABELS, BRANCHES, VERDICT_METRIC
from hilocli.spectrum.stats import plural
from hilocli.spectrum.transfer import box_gain, transfer_frequencies

if TYPE_CHECKING:
    from hilocli.spectrum.result import SpectrumResult

COLORS = {"hifi": "tab:red", "lofi": "tab:blue", "control": "tab:gray"}
DECADES = FuncFormatter(lambda v, _: f"1e{round(math.log10(v))}" if v > 0 else "0")


def figure_title(result: SpectrumResult) -> str:
    r = result.request
    return (
        f"{result.model_name}: {result.weights.describe()}\n"
        f"{plural(result.scenes.n_groups, 'scene')} from {plural(result.n, 'image')} at "
        f"{result.resolution} px{'' if r.crop else ' (no crop)'}; cutoff {r.cutoff:g} "
        f"cycles/token; boundary {r.boundary}"
    )


def title_height(title: str) -> float:
    """Inches the suptitle `title_figure` draws takes at the top."""
    return 0.2 + 0.16 * (title.count("\n") + 1)


def title_figure(fig: Figure, text: str, height: float) -> None:
    fig.suptitle(text, fontsize=8, y=1 - 0.08 / height, va="top")


def hf_figure(result: SpectrumResult) -> tuple[Figure, dict[str, Any]]:
    """spectrum.png: per layer the high-band share (window blocks out) of Hi-Fi, Lo-Fi and the
    control, median and IQR over images (one dot per branch with one image), the adjusted p above
    each tested layer. One panel: it goes into a paper as it is."""
    layers, n = result.layers, len(result.layers)
    title = figure_title(result)
    rotate = n > 8  # p values above the panel would run together
    title_in = title_height(title) + (0.55 if rotate else 0.25)
    width, height = max(5.0, 1.2 + 0.9 * min(n, 8) + 0.45 * max(0, n - 8)), 2.6 + title_in + 0.6
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes([0.8 / width, 0.6 / height, 1 - 1.0 / width, 2.6 / height])
    data = {"hf_fraction": _hf_panel(ax, layers, result, rotate)}
    title_figure(fig, title, height)
    return fig, data


def radial_figure(result: SpectrumResult) -> tuple[Figure, dict[str, Any]]:
    """spectrum_radial.png: one panel per layer with the radial profiles of Hi-Fi, Lo-Fi and the
    control (power per radius / non-DC total, log scale), the cutoff, Nyquist and the window
    grid frequency; one legend for all panels, below them."""
    layers = result.layers
    cols = min(3, len(layers))
    rows = math.ceil(len(layers) / cols)
    title = figure_title(result)
    title_in = title_height(title)
    panel_w, panel_h, legend_in = (2.6, 2.1, 0.75) if cols > 1 else (4.6, 2.6, 0.75)
    width = 0.75 + cols * panel_w + (cols - 1) * 0.45 + 0.15
    height = title_in + rows * panel_h + (rows - 1) * 0.65 + 0.5 + legend_in
    fig = Figure(figsize=(width, height))
    data: dict[str, Any] = {"layers": {}}
    handles: dict[str, Any] = {}
    axes = []
    for k, spectra in enumerate(layers):
        r, c = divmod(k, cols)
        left = 0.75 + c * (panel_w + 0.45)
        top = title_in + r * (panel_h + 0.65) + 0.25
        ax = fig.add_axes(
            [left / width, 1 - (top + panel_h) / height, panel_w / width, panel_h / height]
        )
        data["layers"][spectra.layer.index] = {
            "radial": _radial_panel(ax, spectra, result.request.cutoff, handles)
        }
        if c:  # one y scale: the first column's ticks and label read for its row
            ax.set_ylabel("")
            ax.tick_params(labelleft=False)
        if k + cols < len(layers):  # one x range: the lowest panel of a column reads for it
            ax.set_xlabel("")
            ax.tick_params(labelbottom=False)
        axes.append(ax)
    lows, highs = zip(*(ax.get_ylim() for ax in axes))
    lefts, rights = zip(*(ax.get_xlim() for ax in axes))
    for ax in axes:  # one y scale and one x range: panels compare at a glance
        ax.set_ylim(min(lows), max(highs))
        ax.set_xlim(min(lefts), max(rights))
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncols=3, fontsize=6,
               frameon=False, bbox_to_anchor=(0.5, 0.02))  # fmt: skip
    title_figure(fig, title, height)
    return fig, data


def _radial_panel(ax, spectra: LayerSpectra, cutoff: float, handles: dict) -> dict[str, Any]:
    """One layer's radial profiles; the legend entries go into `handles` (one legend for all)."""
    plotted: dict[str, Any] = {}
    ws = spectra.layer.window_size
    for b in BRANCHES:
        spec = spectra.branch(b)
        if spec is None:
            continue
        x = spec.radial_freq[1:]  # bin 0 is zero frequency: removed with the mean
        y = spec.radial_power_rel[1:]
        keep = y > 0  # empty bins (non-square maps) and exact zeros cannot go on a log axis
        (handles[BRANCH_LABELS[b]],) = ax.semilogy(
            x[keep], y[keep], "o-", ms=2.5, lw=1, color=COLORS[b], label=BRANCH_LABELS[b]
        )
        plotted[b] = {"freq": x[keep], "power_rel": y[keep]}
    handles[f"cutoff {cutoff:g}"] = ax.axvline(cutoff, color="k", ls=":", lw=1)
    handles["Nyquist 0.5 (beyond: corners only)"] = ax.axvline(0.5, color="k", ls="--", lw=0.8)
    if ws > 1:
        handles["window frequency 1/s"] = ax.axvline(1.0 / ws, color="0.45", ls="-.", lw=0.8)
    info = spectra.layer
    ax.yaxis.set_major_formatter(DECADES)  # plain text: no mathtext parser (a tenth of a second)
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("radius (cycles/token)", fontsize=7)
    ax.set_ylabel("power / non-DC total", fontsize=7)
    ax.set_title(f"[{info.index}] {info.short_name}: {spectra.grid[0]}x{spectra.grid[1]} grid"
                 f"{f', s = {ws}' if ws > 1 else ''}", fontsize=8)  # fmt: skip
    ax.tick_params(labelsize=6)
    return plotted


def _hf_panel(
    ax,
    layers: Sequence[LayerSpectra],
    result: SpectrumResult,
    rotate: bool,
) -> dict[str, Any]:
    plotted: dict[str, Any] = {"layer": [s.layer.index for s in layers]}
    xs = np.arange(len(layers), dtype=float)
    offsets = {"hifi": -0.2, "lofi": 0.0, "control": 0.2}
    for b, off in offsets.items():
        med, lo, hi, pos = [], [], [], []
        for x, spectra in zip(xs, layers):
            spec = spectra.branch(b)
            if spec is None:
                continue
            v = spec.per_image[VERDICT_METRIC]
            v = v[np.isfinite(v)]
            if v.size == 0:
                continue
            q1, q2, q3 = np.percentile(v, [25, 50, 75])
            med.append(q2), lo.append(q2 - q1), hi.append(q3 - q2), pos.append(x + off)
        if med:
            spread = result.n > 1  # one image: a dot, no interval to promise
            ax.errorbar(
                pos,
                med,
                yerr=[lo, hi] if spread else None,
                fmt="o",
                color=COLORS[b],
                capsize=3,
                label=f"{BRANCH_LABELS[b]}{' (median, IQR over images)' if spread else ''}",
            )
        plotted[b] = {"x": pos, "median": med}
    v = result.verdict
    for x, spectra in zip(xs, layers):
        if v is None or spectra.layer.index not in result.tested:
            continue
        k = result.tested.index(spectra.layer.index)
        if not math.isfinite(v.p_layers[k]):  # too few scenes for a per-layer test
            continue
        ax.annotate(
            f"p adj {v.p_layers[k]:.2g}",
            (x, 1.0),
            xycoords=("data", "axes fraction"),
            ha="left" if rotate else "center",
            va="bottom",
            fontsize=7,
            rotation=30 if rotate else 0,
            rotation_mode="anchor",
        )
    ax.set_xticks(xs, [f"{s.layer.index}\n{s.layer.short_name}" for s in layers], fontsize=7)
    ax.set_xlabel("layer (index, stage.block)", fontsize=7)
    ax.set_ylabel("share above cutoff (window blocks out)", fontsize=8)
    ax.set_xlim(-0.6, len(layers) - 0.4)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="best")
    return plotted


def paper_figure(result: SpectrumResult) -> tuple[Figure, dict[str, Any]]:
    """The authors' figure: centred log|F| (no mean removal) of 8 channels per branch, averaged
    over images; two rows (Hi-Fi, Lo-Fi) per layer. Lighter = larger; centre = low frequency."""
    rows = [(s, b) for s in result.layers for b in ("hifi", "lofi") if s.branch(b)]
    cols = max(len(s.branch(b).paper_channels) for s, b in rows)
    width, height = 1.6 * cols + 1.0, 1.7 * len(rows) + 0.8  # inches; fixed margins below
    fig = Figure(figsize=(width, height))
    grid = fig.add_gridspec(
        len(rows),
        cols,
        left=0.8 / width,
        right=1 - 0.1 / width,
        bottom=0.1 / height,
        top=1 - 0.8 / height,
        wspace=0.1,
        hspace=0.25,
    )
    data: dict[str, Any] = {}
    for r, (spectra, b) in enumerate(rows):
        spec, index = spectra.branch(b), spectra.layer.index
        maps = spec.paper_maps
        for c in range(cols):
            ax = fig.add_subplot(grid[r, c])
            ax.set_xticks([]), ax.set_yticks([])
            if c >= len(spec.paper_channels):
                ax.axis("off")
                continue
            ax.imshow(maps[c], cmap="viridis", origin="lower", interpolation="nearest")
            ax.set_title(f"ch {spec.paper_channels[c]}", fontsize=6, pad=2)
            if c == 0:
                ax.set_ylabel(f"[{index}] {BRANCH_LABELS[b]}", fontsize=7)
        data[f"{index}/{b}"] = {"channels": spec.paper_channels, "maps": maps}
    fig.suptitle(
        f"{result.model_name}: {result.weights.describe()}\ncentred log|F| of "
        f"{result.settings.paper_channels} channels per branch, mean over images (the "
        "authors' figure)\nlighter = larger, centre = low frequency",
        fontsize=9,
        y=1 - 0.1 / height,
        va="top",
    )
    return fig, data


def transfer_figure(result: SpectrumResult) -> tuple[Figure, dict[str, Any]]:
    """Per measured layer (rows) the transfer curves of its Hi-Fi and Lo-Fi heads (columns):
    gain against radial frequency 0 .. 0.5 cycles/token (Nyquist), averaged over the angles (a
    line per head; the band spans the angles), mean over images; dashed grey: an s x s box
    average (uniform attention inside the window, or each query on its own pooled window).

    Margins are fixed in inches, so the title clears the top panels for any number of layers."""
    layers = [s for s in result.layers if s.transfer is not None]
    n = max(len(layers), 1)
    title = (
        f"{result.model_name}: {result.weights.describe()}\nattention as a spatial filter: gain "
        f"of each head against frequency, mean over n = {result.n} "
        f"image{'' if result.n == 1 else 's'} (1 = passed unchanged)"
    )
    row_in, width = 2.5, 10.0
    top_in = 0.3 + 0.2 * (title.count("\n") + 1) + 0.35  # title, then the panel titles
    height = row_in * n + top_in + 0.3
    fig = Figure(figsize=(width, height))
    grid = fig.add_gridspec(
        n,
        2,
        left=0.8 / width,
        right=1 - 0.2 / width,
        bottom=0.6 / height,
        top=1 - top_in / height,
        hspace=0.55,
        wspace=0.22,
    )
    data: dict[str, Any] = {"layers": {}}
    for row, spectra in enumerate(layers):
        entry: dict[str, Any] = {"radii": np.asarray(spectra.transfer["radii"])}
        for col, b in enumerate(("hifi", "lofi")):
            entry.update(_transfer_panel(fig.add_subplot(grid[row, col]), spectra, b))
        data["layers"][spectra.layer.index] = entry
    fig.suptitle(title, fontsize=9, y=1 - 0.15 / height, va="top")
    data["title"] = title
    return fig, data


def _transfer_panel(ax, spectra: LayerSpectra, b: str) -> dict[str, Any]:
    """One layer's branch `b`: each head's gain (mean over the angles, the band their range) and
    the s x s box average; its plotted data ({} for a branch the layer lacks)."""
    curves, info = spectra.transfer, spectra.layer
    gains = curves.get(b)
    if gains is None:
        ax.axis("off")
        ax.text(0.5, 0.5, f"no {BRANCH_LABELS[b]} branch", ha="center", va="center",
                fontsize=9, transform=ax.transAxes)  # fmt: skip
        return {}
    radii = np.asarray(curves["radii"])
    s = int(curves["window_size"])
    cmap = matplotlib.colormaps["tab10"]
    gains = np.asarray(gains)  # (heads, A, R)
    mean = gains.mean(axis=1)  # (heads, R) over the angles
    entry: dict[str, Any] = {}
    for h in range(gains.shape[0]):
        color = cmap(h % 10)
        ax.fill_between(radii, gains[h].min(0), gains[h].max(0), color=color, alpha=0.15,
                        lw=0)  # fmt: skip
        ax.plot(radii, mean[h], "-", color=color, lw=1.2, label=f"head {h}")
    if s > 1:
        _, freqs = transfer_frequencies(len(radii), tuple(curves["angles"]))
        box = box_gain(freqs, s).numpy().mean(0)  # (R,) angle mean
        ax.plot(radii, box, "--", color="0.45", lw=1, label=f"{s}x{s} box")
        entry[f"{b}_box"] = box
    ax.set_xlim(0, 0.5)
    ax.set_ylim(0, max(1.05, float(gains.max()) * 1.05))
    ax.set_title(f"[{info.index}] {info.short_name}: {BRANCH_LABELS[b]}", fontsize=9)
    ax.set_xlabel("radial frequency (cycles/token; 0.5 = Nyquist)", fontsize=7)
    ax.set_ylabel("gain", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=5.5, ncol=2 if gains.shape[0] > 4 else 1, loc="upper right")
    entry[b] = mean
    return entry
