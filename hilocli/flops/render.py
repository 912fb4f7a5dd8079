"""Presenting a `FlopsResult`: the stderr tables, and the files (sweep figure + flops.json)."""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path

from hilocli.flops.attention import ATTENTION_TYPES
from hilocli.flops.bench import UNSTABLE_SPREAD
from hilocli.flops.conventions import FVCORE
from hilocli.flops.kernels import mfu
from hilocli.flops.request import FlopsRequest
from hilocli.flops.run import FlopsResult, run
from hilocli.output import OutputSet, RunRecord
from hilocli.terminal import human, human_bytes, num, say, table

_COMPONENTS = {
    "norms": "norms",
    "Hi-Fi": "Hi-Fi",
    "Lo-Fi": "Lo-Fi",
    "MSA": "MSA",
    "ConvFFN": "ConvFFN",
    "token merging": "merge",
}


def stage_table(result: FlopsResult):
    mc, name = result.model, result.arch.name
    blank = [""] * (3 + len(_COMPONENTS))
    rows = [["embed", *blank, human(mc.patch_embed_macs), human(mc.params_of("patch embedding"))]]
    for s in mc.stages:
        grid = f"{s.grid[0]}x{s.grid[1]}"
        if s.attn_grid is not None and s.attn_grid != s.grid:
            grid += f" ({s.attn_grid[0]}x{s.attn_grid[1]})"
        rows.append(
            [
                str(s.stage),
                grid,
                s.dim,
                s.depth,
                *[
                    human(s.macs_by_component[c]) if c in s.macs_by_component else "-"
                    for c in _COMPONENTS
                ],
                human(s.macs),
                human(s.params),
            ]
        )
    rows.append(["head", *blank, human(mc.head_macs), human(mc.params_of("head"))])
    rows.append(["total", *blank, human(mc.macs), human(mc.params)])
    return table(
        f"{name} at {mc.height}x{mc.width} px: MACs per image, {mc.convention.name} "
        "convention (FLOPs = 2 x MACs)",
        ["stage", "grid", "C", "depth", *_COMPONENTS.values(), "MACs", "params"],
        rows,
        caption=f"total {mc.macs:,} MACs = {human(mc.flops, 'FLOPs')}; {mc.params:,} "
        "params. grid: tokens (HiLo's padded grid in brackets when it differs)",
        left=("stage",),
    )


def attention_table(result: FlopsResult):
    rows, a0 = result.attention, result.attention[0]
    notes = "; ".join(f"{a.name}: {a.notes}" for a in rows)
    return table(
        f"one attention layer: dim {a0.dim}, {a0.num_heads} heads, {a0.grid[0]}x"
        f"{a0.grid[1]} tokens; MACs per image, {FVCORE.name} convention",
        ["attention", "grid", "params", "MACs", "vs MSA", "attn mem"],
        [
            [
                a.label,
                f"{a.padded_grid[0]}x{a.padded_grid[1]}",
                f"{a.params:,}",
                f"{a.macs:,}",
                f"{a.macs / a0.macs:.2f}x",
                human_bytes(a.attn_matrix_bytes),
            ]
            for a in rows
        ],
        caption=f"attn mem: softmax weights an explicit implementation holds "
        f"({a0.bytes_per_element}-byte elements, batch {a0.batch_size}). {notes}",
        left=("attention",),
    )


def count_table(cc):
    def yes(ok: bool) -> str:
        return "yes" if ok else "NO"

    rows = [
        [c.label, f"{c.analytic_flops:,}", f"{c.counted_flops:,}", yes(c.match)] for c in cc.checks
    ]
    rows.append(
        [
            "total",
            f"{cc.total_analytic_product_flops:,}",
            f"{cc.total_counted_flops:,}",
            yes(cc.total_analytic_product_flops == cc.total_counted_flops),
        ]
    )
    sdpa = (
        ""
        if cc.sdpa_counted_cpu
        else (
            ". On CPU tensors the fused scaled_dot_product_attention is NOT fully counted by this "
            "torch: counted here on meta with explicit matmuls"
        )
    )
    return table(
        f"torch FlopCounterMode (meta device, torch {cc.torch_version}) vs 2 x analytic "
        "product MACs (as-run)",
        ["where", "analytic FLOPs", "counted FLOPs", "match"],
        rows,
        caption="not counted by torch: " + "; ".join(cc.not_counted) + sdpa,
        left=("where",),
    )


def bench_table(results, model_name: str, busy_note: str = "", peak=None):
    """`peak`: the run's `PeakRuns` (or None)."""
    r0 = results[0]
    rows = []
    for r in results:
        c = r.case
        what = "model" if c.kind == "model" else c.name
        rate = r.gflop_per_s
        rng = "-" if r.img_per_s is None else f"{human(r.img_per_s_min)} - {human(r.img_per_s_max)}"
        rows.append(
            [
                what,
                f"{c.height}x{c.width} {'px' if c.kind == 'model' else 'tokens'}",
                human(r.img_per_s),
                rng,
                num(r.spread, ".0%"),
                r.warmup_runs or "-",
                human_bytes(r.peak_memory_bytes),
                c.sdpa_backend,
                ", ".join(r.kernels) or "-",
                num(rate, ".1f"),
                num(mfu(peak, rate, c.dtype), ".0%"),
                r.label,
            ]
        )
    memory = next((r.memory_kind for r in results if r.memory_kind), "")
    return table(
        f"measured: {model_name} and one attention layer ({r0.case.device}, "
        f"{r0.case.dtype}, batch {r0.case.batch_size}, {r0.threads} threads, "
        f"{r0.case.repeats} timed runs after warm-up)",
        [
            "what",
            "size",
            "img/s",
            "min-max",
            "spread",
            "warm-up",
            "peak memory",
            "SDPA forced",
            "kernel that ran",
            "GFLOP/s",
            "MFU",
            "status",
        ],
        rows,
        caption=f"img/s: median. spread: IQR / median of the run times; above "
        f"{UNSTABLE_SPREAD:.0%} a case is 'unstable' (noise, not a finding). "
        "warm-up: runs until the last 3 agreed within 10%. GFLOP/s: 2 x analytic MACs x img/s; "
        f"MFU: of the measured matmul peak ({_peak_note(peak)}). memory: " + memory + busy_note,
        left=("what", "status"),
    )


def _peak_note(peak) -> str:
    if peak is None:
        return "not measured"
    runs = " and ".join(num(r, ".0f") for r in peak.runs)
    note = f"{num(peak.gflop_per_s, '.0f')} GFLOP/s, the higher of {runs} before and after"
    if peak.moved > UNSTABLE_SPREAD:
        note += f"; it moved {peak.moved:.0%} during the run: the machine's speed changed"
    return note


def sweep_table(points):
    rows = []
    for p in points:
        by = {a.name: a for a in p.attention}
        rows.append(
            [
                p.resolution,
                f"{p.grid[0]}x{p.grid[1]}",
                human(p.model_macs),
                *[human(by[t].macs) for t in ATTENTION_TYPES],
                *[human_bytes(by[t].attn_matrix_bytes) for t in ATTENTION_TYPES],
            ]
        )
    return table(
        f"MACs per image against resolution (attention: one layer at the "
        f"stage-{points[0].stage} map)",
        ["resolution", "grid", "model", *ATTENTION_TYPES, *[f"{t} mem" for t in ATTENTION_TYPES]],
        rows,
    )


def run_with_status(con, request: FlopsRequest) -> FlopsResult:
    """`run`, with a status line on stderr while benchmarks run."""
    with con.status("benchmarking") if request.benchmark else nullcontext() as status:
        return run(request, progress=None if status is None else status.update)


def print_tables(con, result) -> None:
    """The tables of a result: a config's analytic count, or a loaded model's counted FLOPs."""
    if not isinstance(result, FlopsResult):  # hilocli.flops.model.ModelFlopsResult
        return result.render(con)
    con.print(stage_table(result))
    con.print(attention_table(result))
    if result.counted is not None:
        con.print(count_table(result.counted))
    if result.bench:
        busy = (
            ""
            if not result.busy
            else (
                f". BUSY MACHINE: load average up to {max(result.load_average):.1f} on "
                f"{os.cpu_count()} CPUs; other processes slowed these timings"
            )
        )
        con.print(bench_table(result.bench, result.arch.name, busy, result.matmul_peak))
    if result.points is not None:
        con.print(sweep_table(result.points))


def save(con, result, out: Path, fmt: str) -> RunRecord:
    """The run record; with a sweep, the figure and flops.json written together into `out`; a
    loaded model's counted FLOPs always as flops.json."""
    if not isinstance(result, FlopsResult):  # hilocli.flops.model.ModelFlopsResult
        with OutputSet(out, "flops") as files:
            record = result.to_record({"record": str(files.path("flops.json"))})
            files.json("flops.json", record)
        say(con, f"wrote {out / 'flops.json'}")
        return record
    if result.points is None:
        return result.to_record()
    from hilocli.flops.figures import sweep_figure  # matplotlib: only a sweep draws

    req = result.request
    fig_name = f"flops_sweep_{result.arch.name.replace(' ', '_')}.{fmt}"
    with OutputSet(out, "flops") as files:
        record = result.to_record(
            {"figure": str(files.path(fig_name)), "json": str(files.path("flops.json"))}
        )
        files.figure(
            fig_name,
            sweep_figure(
                result.points,
                result.arch.name,
                result.bench,
                req.batch_size,
                result.precision.dtype,
            ),
        )
        files.json("flops.json", record)
    say(con, f"figure: {record.files['figure']}")
    return record
