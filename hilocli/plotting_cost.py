"""Figures for `hilo flops`: cost of each attention type (and the whole model) against resolution.

Takes results (hilocli.cost.SweepPoint, hilocli.cost_measure.BenchResult), returns a matplotlib
Figure; no pyplot global state.
"""

from __future__ import annotations

from typing import Sequence

from hilocli.cost import ATTENTION_TYPES, SweepPoint

_COLOURS = {"MSA": "#d62728", "SRA": "#ff7f0e", "Window": "#2ca02c", "HiLo": "#1f77b4",
            "model": "#444444"}


def sweep_figure(points: Sequence[SweepPoint], model_name: str, bench: Sequence | None = None,
                 batch_size: int = 1, dtype: str = "float32", device: str = "cpu"):
    """Panels: attention MACs, attention-matrix memory, and throughput (if `bench`) or whole-model
    MACs, each against the input resolution. `bench`: BenchResults of kind "attention"/"model"."""
    from matplotlib.figure import Figure

    res = [p.resolution for p in points]
    n_panels = 3
    fig = Figure(figsize=(4.2 * n_panels, 3.6), dpi=100, layout="constrained")
    axes = fig.subplots(1, n_panels)
    first = points[0].attention[0]
    feat = f"dim {first.dim}, {first.num_heads} heads"
    labels = {a.name: a.label for a in points[0].attention}

    ax = axes[0]
    for name in ATTENTION_TYPES:
        ax.plot(res, [next(a.macs for a in p.attention if a.name == name) / 1e9 for p in points],
                "o-", ms=3, color=_COLOURS[name], label=labels.get(name, name))
    ax.set_yscale("log")
    ax.set_title(f"one attention layer ({feat})", fontsize=9)
    ax.set_ylabel("GMACs per image")
    ax.legend(fontsize=7)

    ax = axes[1]
    for name in ATTENTION_TYPES:
        ax.plot(res, [next(a.attn_matrix_bytes for a in p.attention if a.name == name) / 2**20
                      for p in points], "o-", ms=3, color=_COLOURS[name], label=labels.get(name, name))
    ax.set_yscale("log")
    ax.set_title(f"attention matrices ({dtype}, batch {batch_size})", fontsize=9)
    ax.set_ylabel("MiB")

    ax = axes[2]
    ok = [b for b in (bench or []) if b.status == "ok"]
    if bench:
        for name in list(ATTENTION_TYPES) + ["model"]:
            pts = sorted((b.case.height, b.img_per_s, b.img_per_s_min, b.img_per_s_max, b.case)
                         for b in ok if (b.case.kind == "model") == (name == "model")
                         and (name == "model" or b.case.name == name))
            if not pts:
                continue
            xs = [_resolution_of(t[4], points) for t in pts]
            ax.errorbar(xs, [t[1] for t in pts], yerr=[[t[1] - t[2] for t in pts],
                                                       [t[3] - t[1] for t in pts]],
                        fmt="o-" if name != "model" else "s--", ms=3, capsize=2,
                        color=_COLOURS[name], label=model_name if name == "model" else name)
        for b in bench:
            if b.status == "OOM":
                ax.axvline(_resolution_of(b.case, points), color=_COLOURS.get(
                    "model" if b.case.kind == "model" else b.case.name, "k"), ls=":", lw=0.8)
        ax.set_yscale("log")
        ax.set_title(f"measured throughput ({device}, {dtype}, batch {batch_size})", fontsize=9)
        ax.set_ylabel("images / s (median, min-max)")
        ax.legend(fontsize=7)
    else:
        ax.plot(res, [p.model_macs / 1e9 for p in points], "s-", ms=3, color=_COLOURS["model"])
        ax.set_title(f"whole {model_name}", fontsize=9)
        ax.set_ylabel("GMACs per image")
    for ax in axes:
        ax.set_xlabel("input resolution (pixels, square)")
        ax.grid(True, which="both", alpha=0.3, lw=0.5)
    fig.suptitle(f"{model_name}: cost against resolution (attention at the stage-3 feature map; "
                 "MACs = multiply-accumulates)", fontsize=10)
    return fig


def _resolution_of(case, points: Sequence[SweepPoint]) -> int:
    """The sweep resolution a benchmark case belongs to (attention cases store token grids)."""
    if case.kind == "model":
        return case.height
    for p in points:
        if p.grid == (case.height, case.width):
            return p.resolution
    return case.height
