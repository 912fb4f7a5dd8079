"""The `hilo compare` figure: the key measures against the weights, x = weights in the order given.

Three panels sharing the x axis: (1) Hi-Fi minus Lo-Fi content hf fraction, Hodges-Lehmann
estimate with its exact interval and the verdict word; (2) Hi-Fi and Lo-Fi mean attention distance
(model-input pixels; uniform-weight references as ticks); (3) analytic MACs per image. Undefined
values are left out (and said), never drawn as 0. Readable for 1..10 sets of weights."""

from __future__ import annotations

import math
import textwrap
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hilocli.compare.result import CompareEntry, CompareResult, layers_notes
from hilocli.spectrum.figures import COLORS
from hilocli.spectrum.measures import BRANCH_LABELS
from hilocli.spectrum.stats import plural

WORD_COLOURS = {  # never red or blue: those mean Hi-Fi and Lo-Fi in every hilo figure
    "supported": "tab:green",
    "contradicted": "tab:purple",
    "equivalent": "tab:olive",
    "inconclusive": "0.4",
    "insufficient": "tab:orange",
    "not comparable": "0.6",
}


def tick_label(label: str, chars: int = 18) -> str:
    """A label on two lines at its '@' (name, short sha256), long names wrapped."""
    name, sep, sha = label.rpartition("@")
    if not sep:
        name, sha = label, ""
    lines = textwrap.wrap(name, chars, break_long_words=False, break_on_hyphens=False) or [name]
    return "\n".join(lines + ([f"@{sha}"] if sha else []))


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


PANEL_IN = (2.4, 1.9, 1.4)  # heights of the verdict, distance and cost panels, inches
GAP_IN = 0.3  # between panels


def compare_figure(result: CompareResult) -> tuple[Figure, dict[str, Any]]:
    """(Figure, the plotted numbers) for a CompareResult."""
    entries = result.entries
    count = len(entries)
    x = np.arange(count, dtype=float)
    width = max(6.5, 1.8 + 1.0 * count)
    rotate = count > 6
    title = figure_title(result, width)
    fig, axes = _panels(width, title, rotate)
    ax_d, ax_a, ax_m = axes
    data: dict[str, Any] = {
        "labels": [e.label for e in entries],
        "x": x.tolist(),
        **_verdict_panel(ax_d, entries, result.request.margin),
        **_distance_panel(ax_a, x, entries),
        **_cost_panel(ax_m, x, entries, result.resolution),
    }
    for ax in axes:
        ax.set_xlim(-0.6, count - 0.4)
        ax.set_xticks(x)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", color="0.92", lw=0.6)
        ax.set_axisbelow(True)
    for ax in (ax_d, ax_a):
        ax.tick_params(axis="x", labelbottom=False)
    ax_m.set_xticklabels(
        [tick_label(e.label) for e in entries],
        fontsize=7,
        rotation=30 if rotate else 0,
        ha="right" if rotate else "center",
    )
    fig.suptitle(title, fontsize=8.5, y=1 - 0.1 / fig.get_figheight(), va="top")
    data["title"] = title
    return fig, data


def figure_title(result: CompareResult, width: float) -> str:
    """What was compared on what (scenes, images, resolution) and which layers, wrapped to a
    figure `width` inches wide."""
    count, attn_n = len(result.entries), result.attn_n
    title = textwrap.fill(
        f"Hi-Fi vs Lo-Fi across {count} sets of weights: n = {plural(result.scenes, 'scene')} "
        f"from {plural(result.n, 'image')} at {result.resolution}x{result.resolution}; "
        f"attention distance on the first {attn_n} image{'s' if attn_n != 1 else ''}",
        int(width * 13),
    )
    notes = layers_notes(result.entries)  # the full notes (head splits) are in compare.json
    note = notes[0]
    if len(notes) > 1:
        note += "; head splits or architectures differ (see the table and compare.json)"
    return title + "\n" + textwrap.fill(note, int(width * 14))


def _panels(width: float, title: str, rotate: bool) -> tuple[Figure, list[Axes]]:
    """The figure and its three panels stacked on fixed margins, room for `title` on top and for
    the tick labels below (more when they are rotated)."""
    title_in = 0.25 + 0.2 * (title.count("\n") + 1)
    ticks_in = 1.3 if rotate else 0.75
    height = title_in + sum(PANEL_IN) + 2 * GAP_IN + ticks_in + 0.2
    fig = Figure(figsize=(width, height))
    left, right = 1.0 / width, 1 - 0.3 / width
    axes = []
    top = height - title_in
    for h in PANEL_IN:
        axes.append(fig.add_axes([left, (top - h) / height, right - left, h / height]))
        top -= h + GAP_IN
    return fig, axes


def _verdict_panel(ax: Axes, entries: list[CompareEntry], margin: float) -> dict[str, list]:
    """(1) Each set's estimate with its interval (dashed over the panel when unbounded), the
    equivalence margin shaded, the verdict words in a row along the top."""
    ax.axhspan(-margin, margin, color="0.9", lw=0, zorder=0)
    ax.axhline(0, color="k", lw=0.8)
    finite_y = [-margin, margin]
    for e in entries:
        finite_y += [v for v in (e.estimate, *e.ci) if _finite(v)]
    lo_y, hi_y = min(finite_y), max(finite_y)
    pad = 0.15 * (hi_y - lo_y or 1.0)
    lo_y, hi_y = lo_y - pad, hi_y + 3.5 * pad  # room for the words
    for k, e in enumerate(entries):
        colour = WORD_COLOURS.get(e.word, "k")
        est, (low, high) = e.estimate, e.ci
        if not _finite(est):  # not comparable: the word on top says so
            continue
        if _finite(low) and _finite(high):
            ax.errorbar([k], [est], yerr=[[est - low], [high - est]], fmt="none",
                        ecolor=colour, capsize=4, lw=1.4, zorder=3)  # fmt: skip
        else:  # unbounded at this n: a dashed line over the whole panel
            ax.plot([k, k], [lo_y, hi_y], ls="--", lw=0.9, color=colour, zorder=2)
        ax.plot([k], [est], "s", ms=6, color=colour, zorder=4)
    for k, e in enumerate(entries):  # the words in a row along the top, clear of the data
        n_note = (
            "\n(no layer with both)"
            if e.verdict is None
            else f"\nn = {plural(e.verdict.n, 'scene')}"
        )
        ax.annotate(f"{e.word}{n_note}", (k, 1), xycoords=("data", "axes fraction"),
                    xytext=(0, -3), textcoords="offset points", ha="center", va="top",
                    fontsize=7, color=WORD_COLOURS.get(e.word, "k"), zorder=5,
                    bbox={"fc": "white", "ec": "none", "pad": 0.5})  # fmt: skip
    ax.set_ylim(lo_y, hi_y)
    ax.set_ylabel("Hi-Fi minus Lo-Fi\nhf fraction (HL, exact CI)", fontsize=8)
    if any(_finite(e.estimate) and not all(map(_finite, e.ci)) for e in entries):
        ax.plot([], [], "--", color="0.4", lw=0.9, label="interval unbounded at this n")
    ax.fill_between([], [], [], color="0.9", label=f"equivalence margin +-{margin:g}")
    ax.legend(fontsize=6, loc="best")
    return {
        "estimate": [e.estimate for e in entries],
        "ci": [list(e.ci) for e in entries],
        "word": [e.word for e in entries],
    }


def _distance_panel(ax: Axes, x: np.ndarray, entries: list[CompareEntry]) -> dict[str, list]:
    """(2) Hi-Fi and Lo-Fi mean attention distance, crosses at uniform weights over the same
    keys; a missing branch is said, never drawn as 0."""
    data = {}
    for branch in ("hifi", "lofi"):
        ys = np.array([e.distance.mean(branch) for e in entries])
        refs = np.array([e.distance.mean(branch, "uniform") for e in entries])
        data[f"{branch}_px"] = ys.tolist()
        colour = COLORS[branch]
        ax.plot(x, ys, "o-", color=colour, ms=5, lw=1, label=f"{BRANCH_LABELS[branch]} heads")
        ax.plot(x, refs, "x", color=colour, ms=6, mew=1.2, alpha=0.7, ls="none")
        for k in np.flatnonzero(~np.isfinite(ys)):
            ax.annotate(f"no {BRANCH_LABELS[branch]}", (k, 0), xycoords=("data", "axes fraction"),
                        xytext=(0, 4 if branch == "hifi" else 14), textcoords="offset points",
                        ha="center", fontsize=6, color=colour)  # fmt: skip
    ax.plot([], [], "x", color="0.4", ms=6, mew=1.2, ls="none", label="uniform weights, same keys")
    ax.set_ylabel("mean attention\ndistance (input px)", fontsize=8)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=6, loc="best")
    return data


def _cost_panel(
    ax: Axes, x: np.ndarray, entries: list[CompareEntry], resolution: int
) -> dict[str, list]:
    """(3) Analytic MACs per image as bars, "n/a" where a set has no analytic cost."""
    macs = np.array([e.macs if e.macs is not None else np.nan for e in entries], dtype=float)
    finite_macs = macs[np.isfinite(macs)]
    scale, unit = (
        (1e9, "GMACs") if finite_macs.size and finite_macs.max() >= 1e8 else (1e6, "MMACs")
    )
    gmacs = macs / scale
    ok = np.isfinite(gmacs)
    ax.bar(x[ok], gmacs[ok], width=0.55, color="0.55")
    for k in x[ok].astype(int):
        ax.annotate(f"{gmacs[k]:.3g}", (k, gmacs[k]), xytext=(0, 2), textcoords="offset points",
                    ha="center", va="bottom", fontsize=7)  # fmt: skip
    for k in x[~ok].astype(int):
        ax.text(k, 0, "n/a", ha="center", va="bottom", fontsize=7, color="0.4")
    if ok.any():
        ax.set_ylim(0, 1.25 * float(gmacs[ok].max()))
    ax.set_ylabel(f"{unit} per image\n({resolution}x{resolution})", fontsize=8)
    return {"macs": macs.tolist()}
