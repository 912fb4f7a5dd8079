"""The ten-second figure of `hilo spectrum`: per tested layer, each scene's Hi-Fi minus Lo-Fi
share difference as a dot, its Hodges-Lehmann estimate and exact interval, the per-scene mean
over layers (the primary endpoint) with the range of the random inits' estimates when the random
control ran, and the verdict in the title.

Margins are fixed in inches, so the title clears the panel for any number of layers."""

from __future__ import annotations

import math
import textwrap
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

import hilocli.spectrum.exact as exact
from hilocli.models.geometry import short_block_name
from hilocli.spectrum.stats import CLAIM, interval, plural, primary_endpoint

if TYPE_CHECKING:
    from hilocli.spectrum.result import SpectrumResult


def _jitter(count: int) -> np.ndarray:
    """Deterministic horizontal offsets in [-0.18, 0.18] so dots of equal value stay visible."""
    if count <= 1:
        return np.zeros(count)
    return np.linspace(-0.18, 0.18, count)


def summary_title(result: SpectrumResult, chars: int = 100) -> str:
    """The figure's title; the weights line (a path and sha256 can be long) wrapped at chars."""
    v, n = result.verdict, result.n
    head = textwrap.fill(f"{result.model_name}: {result.weights.describe()}", chars)
    if not result.weights.trained:
        head += "\n(random weights: this concerns the architecture, not a trained model)"
    if v is None:
        return f"{head}\n{plural(n, 'image')}; {result.verdict_line.removeprefix('verdict: ')}"
    enough = "enough" if v.n >= v.min_images else f"fewer than the {v.min_images} needed"
    return (
        f"{head}\n{CLAIM}: {v.word.upper()}\n"
        f"n = {plural(v.n, 'scene')} from {plural(n, 'image')} ({enough}"
        f"{f', {v.n_excluded} excluded' if v.n_excluded else ''}); pseudo-median "
        f"{v.estimate:+.3f}, {interval(v)}\nsigned-rank p = {v.p:.3g} (alpha {v.alpha:g}; "
        f"equivalence margin +-{v.margin:g})"
    )


def summary_figure(result: SpectrumResult) -> tuple[Figure, dict[str, Any]]:
    """(Figure, plotted data): columns = tested layers, then the mean over layers. With no
    layer tested the figure is its title and one line saying so (no empty axes, no legend)."""
    n_cols = len(result.tested) + 1
    width = max(8.0, 1.8 + 0.6 * n_cols)
    title = summary_title(result, chars=int(width * 12))
    title_in = 0.2 + 0.19 * (title.count("\n") + 1)
    columns = scene_columns(result.judged.scene_deltas)
    height = title_in + (4.5 if columns else 0.55)
    fig = Figure(figsize=(width, height))
    data: dict[str, Any] = {"layers": list(result.tested), "n": result.n, "columns": []}
    data["word"] = None if result.verdict is None else result.verdict.word
    data["title"] = title
    fig.suptitle(title, fontsize=8.5, y=1 - 0.1 / height, va="top")
    if not columns:
        fig.text(0.5, 0.25 / height, "no layer tested: nothing to plot (the reason is in the "
                 "title and in spectrum.json)", ha="center", fontsize=8)  # fmt: skip
        return fig, data
    ax = fig.add_axes(
        [1.0 / width, 0.9 / height, 1 - 1.4 / width, 1 - (title_in + 0.9 + 0.15) / height]
    )
    for k, col in enumerate(columns):
        data["columns"].append(_draw_column(ax, k, col, k == len(columns) - 1, result))
    _draw_lines(ax, result, len(columns))
    _label_columns(ax, result, n_cols)
    bounded = any(math.isfinite(c) for entry in data["columns"] for c in entry["ci"])
    _legend(ax, result, bounded)
    return fig, data


def scene_columns(deltas: np.ndarray) -> list[np.ndarray]:
    """The figure's columns from the per-scene deltas (scenes, tested layers): one per tested
    layer, then the mean over layers of the scenes defined at every layer (the primary
    endpoint); none without deltas."""
    if not deltas.size:
        return []
    return [*(deltas[:, k] for k in range(deltas.shape[1])), primary_endpoint(deltas)]


def _draw_column(ax, k: int, col: np.ndarray, primary: bool, result: SpectrumResult) -> dict:
    """Column k: each scene a dot, the Hodges-Lehmann estimate and interval beside them, and on
    the primary column the range of the random inits' estimates (--control random)."""
    v, control = result.verdict, result.control
    vals = col[np.isfinite(col)]
    x = float(k + (0.4 if primary else 0))
    ax.plot(x + _jitter(vals.size), vals, "o", ms=4, color="0.35", alpha=0.8, zorder=3)
    hl = exact.hodges_lehmann(vals, v.alpha if v else 0.05)
    lo = hl.low if math.isfinite(hl.low) else np.nan
    hi = hl.high if math.isfinite(hl.high) else np.nan
    ax.errorbar(
        [x + 0.28], [hl.estimate], yerr=[[hl.estimate - lo], [hi - hl.estimate]],
        fmt="D" if primary else "s", color="k", capsize=4, ms=7 if primary else 6, zorder=4,
    )  # fmt: skip
    entry = {"x": x, "deltas": vals, "estimate": hl.estimate, "ci": [hl.low, hl.high]}
    if control is not None and primary:
        band = np.asarray(control.seed_statistics, dtype=float)
        band = band[np.isfinite(band)]
        if band.size:
            ax.fill_between(
                [x - 0.3, x + 0.38], band.min(), band.max(), color="0.5", alpha=0.25, lw=0
            )
            entry["random_band"] = [float(band.min()), float(band.max())]
    return entry


def _draw_lines(ax, result: SpectrumResult, n_columns: int) -> None:
    """Zero, the equivalence margins, and the rule before the mean-over-layers column."""
    ax.axhline(0, color="k", lw=0.8)
    if result.verdict is not None:
        for m in (-result.verdict.margin, result.verdict.margin):
            ax.axhline(m, color="k", lw=0.6, ls=":")
    if n_columns:
        ax.axvline(n_columns - 1.3, color="0.6", lw=0.8)


def _label_columns(ax, result: SpectrumResult, n_cols: int) -> None:
    """Each tested layer's index, short name and adjusted p under its column; the axes' labels."""
    v = result.verdict
    by_index = {s.layer.index: s for s in result.layers}
    labels = [by_index[i].layer.short_name for i in result.tested]
    ticks = [
        f"{i}\n{lab}\np adj {v.p_layers[k]:.2g}"
        if v and math.isfinite(v.p_layers[k])
        else f"{i}\n{lab}"
        for k, (i, lab) in enumerate(zip(result.tested, labels))
    ]
    ticks.append("mean over\nlayers\n(verdict)")
    ax.set_xticks([k + (0.4 if k == n_cols - 1 else 0) for k in range(n_cols)], ticks, fontsize=7)
    ax.set_xlim(-0.6, n_cols - 0.1)
    ax.set_ylabel("share above cutoff: Hi-Fi minus Lo-Fi (per scene)", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)


def _legend(ax, result: SpectrumResult, bounded: bool) -> None:
    """The legend; `bounded`: whether any column has an interval (finite at either end)."""
    handles = [
        ax.plot([], [], "o", color="0.35", ms=4, label="one scene")[0],
        ax.plot(
            [],
            [],
            "s",
            color="k",
            label="Hodges-Lehmann estimate and interval"
            if bounded
            else "Hodges-Lehmann estimate (no interval at this n)",
        )[0],  # fmt: skip
        ax.plot([], [], ":", color="k", lw=0.6, label="equivalence margin")[0],
    ]
    control = result.control
    if control is not None:
        handles.append(
            ax.fill_between([], [], [], color="0.5", alpha=0.25, label=f"random inits, "
                            f"{len(control.seeds)} seeds (range of estimates)")
        )  # fmt: skip
    ax.legend(handles=handles, fontsize=6, loc="best")


def depth_figure(result: SpectrumResult) -> tuple[Figure, dict[str, Any]]:
    """Park & Kim's depth curve for LITv2: Delta log amplitude at the highest diagonal frequency
    of every block output (residual included), each image a dot, the mean a line; blocks whose
    attention is a HiLo layer with both branches are marked, stages separated."""
    depth = result.depth
    blocks = len(depth.blocks)
    width, height = max(8.0, 1.5 + 0.35 * blocks), 4.8
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes([0.9 / width, 1.1 / height, 1 - 1.2 / width, 1 - 1.9 / height])
    x = np.arange(blocks)
    per_image = np.asarray(depth.per_image_highest, dtype=float)  # (n, blocks)
    for row in per_image:
        ax.plot(x, row, ".", color="0.6", ms=3)
    ax.plot(x, depth.highest, "o-", color="k", ms=4, label="mean over images")
    tested = [k for k, i in enumerate(depth.hilo_index) if i is not None and i in result.tested]
    ax.plot(x[tested], depth.highest[tested], "s", mfc="none", color="tab:red", ms=9,
            label="HiLo layer with Hi-Fi and Lo-Fi (tested)")  # fmt: skip
    for k in range(1, blocks):
        if depth.stages[k] != depth.stages[k - 1]:
            ax.axvline(k - 0.5, color="0.7", lw=0.8)
    ax.set_xticks(x, [short_block_name(b) for b in depth.blocks],
                  fontsize=6, rotation=90)  # fmt: skip
    ax.set_xlabel("block (stage.block); vertical lines: stage boundaries", fontsize=7)
    ax.set_ylabel("Delta log amplitude at the highest frequency", fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=6, loc="best")
    head = textwrap.fill(f"{result.model_name}: {result.weights.describe()}", int(width * 12))
    fig.suptitle(
        f"{head}\nPark & Kim depth curve (block outputs, residual included), n = {result.n} images",
        fontsize=8.5,
        y=1 - 0.1 / height,
        va="top",
    )
    return fig, {"x": x, "highest": depth.highest, "tested_blocks": tested}
