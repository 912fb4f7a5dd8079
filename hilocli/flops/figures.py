"""The `hilo flops --sweep` figure: cost of each attention type (and the whole model) against
resolution. Takes results (`SweepPoint`, `BenchResult`), returns a matplotlib Figure; no pyplot
global state. Unstable measurements are drawn hollow and left out of the lines."""

from __future__ import annotations

from collections.abc import Sequence

from hilocli.flops.attention import ATTENTION_TYPES, SweepPoint
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


def _throughput_panel(
    ax, points: Sequence[SweepPoint], bench: Sequence[BenchResult], model_name: str
) -> None:
    any_unstable = False
    for name in (*ATTENTION_TYPES, "model"):
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
            any_unstable = True
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


def sweep_figure(
    points: Sequence[SweepPoint],
    model_name: str,
    bench: Sequence[BenchResult] | None = None,
    batch_size: int = 1,
    dtype: str = "float32",
):
    """Panels: attention MACs, attention-matrix memory, and throughput (if `bench`) or whole-model
    MACs, each against the input resolution."""
    from matplotlib.figure import Figure

    res = [p.resolution for p in points]
    fig = Figure(figsize=(12.6, 3.6), dpi=100, layout="constrained")
    axes = fig.subplots(1, 3)
    first = points[0].attention[0]
    labels = {a.name: a.label for a in points[0].attention}

    def by_name(p: SweepPoint, name: str):
        return next(a for a in p.attention if a.name == name)

    panels = (
        (
            lambda a: a.macs / 1e9,
            f"one attention layer (dim {first.dim}, {first.num_heads} heads)",
            "GMACs per image",
        ),
        (
            lambda a: a.attn_matrix_bytes / 2**20,
            f"attention matrices ({dtype}, batch {batch_size})",
            "MiB",
        ),
    )
    for ax, (value, title, ylabel) in zip(axes, panels):
        for name in ATTENTION_TYPES:
            ax.plot(
                res,
                [value(by_name(p, name)) for p in points],
                "o-",
                ms=3,
                color=_COLOURS[name],
                label=labels.get(name, name),
            )
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(ylabel)

    ax = axes[2]
    if bench:
        _throughput_panel(ax, points, bench, model_name)
    else:
        ax.plot(res, [p.model_macs / 1e9 for p in points], "s-", ms=3, color=_COLOURS["model"])
        ax.set_title(f"whole {model_name}", fontsize=9)
        ax.set_ylabel("GMACs per image")
    for ax in axes:
        ax.set_xlabel("input resolution (pixels, square)")
        ax.grid(True, which="both", alpha=0.3, lw=0.5)
    # one legend below the panels, outside the data: attention types (colours shared by all
    # panels), then the whole model and the unstable marker of the throughput panel
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
    fig.suptitle(
        f"{model_name}: cost against resolution (attention at the stage-{points[0].stage} "
        "feature map; MACs = multiply-accumulates)",
        fontsize=10,
    )
    return fig
