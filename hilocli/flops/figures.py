"""The `hilo flops --sweep` figure: cost of each attention type (and the whole model) against
resolution. Takes results (`SweepPoint`, `BenchResult`), returns a matplotlib Figure; no pyplot
global state. Unstable measurements are drawn hollow and left out of the lines."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hilocli.flops.attention import ATTENTION_TYPES, AttentionCost, SweepPoint
from hilocli.flops.bench import UNSTABLE_SPREAD, BenchCase, BenchResult

_COLOURS = {
    "MSA": "#d62728",
    "SRA": "#ff7f0e",
    "Window": "#2ca02c",
    "HiLo": "#1f77b4",
    "model": "#444444",
}


def resolution_of(case: BenchCase, points: Sequence[SweepPoint]) -> int:
    """The sweep resolution a benchmark case belongs to (attention cases store token grids)."""
    if case.kind == "model":
        return case.height
    for p in points:
        if p.grid == (case.height, case.width):
            return p.resolution
    return case.height


def sweep_figure(
    points: Sequence[SweepPoint],
    model_name: str,
    bench: Sequence[BenchResult] | None = None,
    batch_size: int = 1,
    dtype: str = "float32",
) -> Figure:
    """Panels: attention MACs, attention-matrix memory, and throughput (if `bench`) or whole-model
    MACs, each against the input resolution."""
    fig = Figure(figsize=(12.6, 3.6), dpi=100, layout="constrained")
    axes = fig.subplots(1, 3)
    _attention_macs_panel(axes[0], points)
    _attention_memory_panel(axes[1], points, batch_size, dtype)
    if bench:
        _throughput_panel(axes[2], points, bench, model_name)
    else:
        _model_macs_panel(axes[2], points, model_name)
    for ax in axes:
        ax.set_xlabel("input resolution (pixels, square)")
        ax.grid(True, which="both", alpha=0.3, lw=0.5)
    _legend(fig, axes)
    fig.suptitle(
        f"{model_name}: cost against resolution (attention at the stage-{points[0].stage} "
        "feature map; MACs = multiply-accumulates)",
        fontsize=10,
    )
    return fig


def _attention_macs_panel(ax: Axes, points: Sequence[SweepPoint]) -> None:
    first = points[0].attention[0]
    _attention_lines(ax, points, lambda a: a.macs / 1e9)
    ax.set_title(f"one attention layer (dim {first.dim}, {first.num_heads} heads)", fontsize=9)
    ax.set_ylabel("GMACs per image")


def _attention_memory_panel(
    ax: Axes, points: Sequence[SweepPoint], batch_size: int, dtype: str
) -> None:
    _attention_lines(ax, points, lambda a: a.attn_matrix_bytes / 2**20)
    ax.set_title(f"attention matrices ({dtype}, batch {batch_size})", fontsize=9)
    ax.set_ylabel("MiB")


def _attention_lines(
    ax: Axes, points: Sequence[SweepPoint], value: Callable[[AttentionCost], float]
) -> None:
    """One line per attention type of `value` against resolution, on a log scale."""
    res = [p.resolution for p in points]
    labels = {a.name: a.label for a in points[0].attention}
    for name in ATTENTION_TYPES:
        ax.plot(
            res,
            [value(next(a for a in p.attention if a.name == name)) for p in points],
            "o-",
            ms=3,
            color=_COLOURS[name],
            label=labels.get(name, name),
        )
    ax.set_yscale("log")


def _model_macs_panel(ax: Axes, points: Sequence[SweepPoint], model_name: str) -> None:
    res = [p.resolution for p in points]
    ax.plot(res, [p.model_macs / 1e9 for p in points], "s-", ms=3, color=_COLOURS["model"])
    ax.set_title(f"whole {model_name}", fontsize=9)
    ax.set_ylabel("GMACs per image")


def _throughput_panel(
    ax: Axes, points: Sequence[SweepPoint], bench: Sequence[BenchResult], model_name: str
) -> None:
    """Measured images/s per attention type and of the whole model; out-of-memory cases as
    dotted verticals, unstable ones hollow."""
    any_unstable = False
    for name in (*ATTENTION_TYPES, "model"):
        any_unstable |= _throughput_series(ax, points, bench, name, model_name)
    oom = [b for b in bench if b.status == "OOM"]
    for b in oom:
        ax.axvline(
            resolution_of(b.case, points),
            ls=":",
            lw=0.8,
            color=_COLOURS.get("model" if b.case.kind == "model" else b.case.name, "k"),
        )
    if oom:
        ax.plot([], [], ls=":", lw=0.8, color="#888888", label="dotted: out of memory")
    if any_unstable:
        ax.plot(
            [],
            [],
            "o",
            mfc="none",
            color="#888888",
            label=f"hollow: unstable (spread > {UNSTABLE_SPREAD:.0%})",
        )
    r0 = bench[0]
    ax.set_yscale("log")
    ax.set_title(
        f"measured throughput ({r0.case.device}, {r0.case.dtype}, batch {r0.case.batch_size})",
        fontsize=9,
    )
    ax.set_ylabel("images / s (median, min-max)")


def _throughput_series(
    ax: Axes,
    points: Sequence[SweepPoint],
    bench: Sequence[BenchResult],
    name: str,
    model_name: str,
) -> bool:
    """The successful cases of one attention type (or the whole model): stable ones as a line
    with min-max bars, unstable ones as hollow markers. True when any was unstable."""
    mine = sorted(
        (
            b
            for b in bench
            if b.status == "ok"
            and (b.case.kind == "model" if name == "model" else b.case.name == name)
        ),
        key=lambda b: resolution_of(b.case, points),
    )
    colour = _COLOURS[name]
    label = f"{model_name} (whole model)" if name == "model" else name
    stable = [b for b in mine if not b.unstable]
    if stable:
        xs = [resolution_of(b.case, points) for b in stable]
        ys = [b.img_per_s for b in stable]
        ax.errorbar(
            xs,
            ys,
            yerr=[
                [y - b.img_per_s_min for y, b in zip(ys, stable)],
                [b.img_per_s_max - y for y, b in zip(ys, stable)],
            ],
            fmt="o-" if name != "model" else "s--",
            ms=3,
            capsize=2,
            color=colour,
            label=label,
        )
    unstable = [b for b in mine if b.unstable]
    if unstable:
        ax.plot(
            [resolution_of(b.case, points) for b in unstable],
            [b.img_per_s for b in unstable],
            "o" if name != "model" else "s",
            ms=5,
            mfc="none",
            color=colour,
            alpha=0.6,
            label=None if stable or name != "model" else f"{label} (unstable only)",
        )
    return bool(unstable)


def _legend(fig: Figure, axes: Sequence[Axes]) -> None:
    """One legend below the panels, outside the data: attention types (colours shared by all
    panels), then the whole model and the markers of the third panel."""
    handles, names = axes[0].get_legend_handles_labels()
    for h, n in zip(*axes[2].get_legend_handles_labels()):
        if n not in ATTENTION_TYPES:
            handles.append(h)
            names.append(n)
    fig.legend(
        handles,
        names,
        loc="outside lower center",
        ncol=min(len(names), 6),
        fontsize=8,
        frameon=False,
    )
