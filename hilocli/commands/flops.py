"""`hilo flops`: parameters, MACs, FLOPs, memory and speed of LITv2 and HiLo at any resolution."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from hilocli.commands._common import (
    CheckpointOpt,
    DeviceChoice,
    DeviceOpt,
    FigureFormat,
    FormatOpt,
    JsonOpt,
    ModelOpt,
    OutOpt,
    ResolutionOpt,
    emit_json,
    parse_int_list,
    stderr_console,
)
from hilocli.errors import UsageError


class ConventionChoice(str, Enum):
    authors = "authors"
    as_run = "as-run"


class DtypeChoice(str, Enum):
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"


_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def _parse_tokens(text: str) -> tuple[int, int]:
    parts = text.lower().replace(" ", "").split("x")
    try:
        h, w = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
        if len(parts) > 2:
            raise ValueError
    except ValueError:
        raise UsageError(f"--tokens must look like HxW (e.g. 14x14), got {text!r}") from None
    if h <= 0 or w <= 0:
        raise UsageError(f"--tokens needs a positive grid, got {text!r}")
    return h, w


def _input_size(resolution, height, width, cfg, smallest: int) -> tuple[int, int]:
    if resolution is not None and (height is not None or width is not None):
        raise UsageError("give either --resolution or --height/--width, not both")
    if (height is None) != (width is None):
        raise UsageError("--height and --width go together")
    if height is None:
        resolution = cfg.img_size if resolution is None else resolution
        height = width = resolution
    for what, v in (("--resolution" if resolution is not None else "--height", height),
                    ("--width", width)):
        if v <= 0:
            raise UsageError(f"{what} must be a positive number of pixels, got {v}")
        if v < smallest:
            raise UsageError(f"{what} {v} is below the smallest input this model takes "
                             f"({smallest} pixels: every stage needs at least one token)")
    return height, width


def _load_cfg(model: str | None, checkpoint: Path | None) -> tuple[Any, str, dict | None]:
    """(config, name, provenance dict or None). A checkpoint is read only for its architecture."""
    if checkpoint is not None:
        from hilocli.checkpoint import load_model

        loaded = load_model(model=model, checkpoint=checkpoint, device="cpu")
        return loaded.model.cfg, loaded.name, loaded.provenance.to_dict()
    from hilocli.models import get_variant

    try:
        variant = get_variant(model or "litv2_s")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return variant.cfg, variant.name, None


def _g(n: int) -> str:
    """3 significant digits with an SI prefix: 12.3G, 918M, 4.90K."""
    for div, p in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            v = n / div
            return f"{v:.3g}{p}" if v < 100 else f"{v:.0f}{p}"
    return str(n)


def _stage_table(mc, name: str):
    from rich import box
    from rich.table import Table

    from hilocli.cost import human

    comps = {"norms": "norms", "Hi-Fi": "Hi-Fi", "Lo-Fi": "Lo-Fi", "MSA": "MSA",
             "ConvFFN": "ConvFFN", "token merging": "merge"}
    table = Table(title=f"{name} at {mc.height}x{mc.width} px: MACs per image, "
                        f"{mc.convention.name} convention (FLOPs = 2 x MACs)",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  caption=f"total {mc.macs:,} MACs = {human(mc.flops)}FLOPs; {mc.params:,} params. "
                          "grid: tokens (HiLo's padded grid in brackets when it differs)",
                  caption_justify="left")
    for col in ["stage", "grid", "C", "depth"] + list(comps.values()) + ["MACs", "params"]:
        table.add_column(col, justify="left" if col == "stage" else "right", no_wrap=True)
    blank = ["", "", ""]
    table.add_row("embed", *blank, *[""] * len(comps), _g(mc.patch_embed_macs),
                  _g(sum(r.params for r in mc.rows if r.component == "patch embedding")))
    for s in mc.stages:
        grid = f"{s.grid[0]}x{s.grid[1]}"
        if s.attn_grid is not None and s.attn_grid != s.grid:
            grid += f" ({s.attn_grid[0]}x{s.attn_grid[1]})"
        table.add_row(str(s.stage), grid, str(s.dim), str(s.depth),
                      *[_g(s.macs_by_component[c]) if c in s.macs_by_component else "-"
                        for c in comps], _g(s.macs), _g(s.params))
    table.add_row("head", *blank, *[""] * len(comps), _g(mc.head_macs),
                  _g(sum(r.params for r in mc.rows if r.component == "head")))
    table.add_row("total", *blank, *[""] * len(comps), _g(mc.macs), _g(mc.params), style="bold")
    return table


def _attention_table(rows, convention: str):
    from rich import box
    from rich.table import Table

    from hilocli.cost import human_bytes

    a0 = rows[0]
    notes = "; ".join(f"{a.name}: {a.notes}" for a in rows)
    table = Table(title=f"one attention layer: dim {a0.dim}, {a0.num_heads} heads, "
                        f"{a0.grid[0]}x{a0.grid[1]} tokens; MACs per image, {convention} "
                        "convention", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  caption=f"attn mem: softmax weights an explicit implementation holds "
                          f"({a0.bytes_per_element}-byte elements, batch {a0.batch_size}). {notes}",
                  caption_justify="left")
    for col in ("attention", "grid", "params", "MACs", "vs MSA", "attn mem"):
        table.add_column(col, justify="left" if col == "attention" else "right", no_wrap=True)
    msa = rows[0].macs
    for a in rows:
        table.add_row(a.label, f"{a.padded_grid[0]}x{a.padded_grid[1]}", f"{a.params:,}",
                      f"{a.macs:,}", f"{a.macs / msa:.2f}x", human_bytes(a.attn_matrix_bytes))
    return table


def _count_table(cc):
    from rich import box
    from rich.table import Table

    table = Table(title=f"torch FlopCounterMode (meta device, torch {cc.torch_version}) vs 2 x "
                        "analytic product MACs (as-run)", title_justify="left", box=box.SIMPLE_HEAD,
                  caption="not counted by torch: " + "; ".join(cc.not_counted) +
                          ("" if cc.sdpa_counted_cpu else
                           ". On CPU tensors the fused scaled_dot_product_attention is NOT fully "
                           "counted by this torch: counted here on meta with explicit matmuls"),
                  caption_justify="left")
    for col in ("where", "analytic FLOPs", "counted FLOPs", "match"):
        table.add_column(col, justify="left" if col == "where" else "right")
    for c in cc.checks:
        table.add_row(c.label, f"{c.analytic_flops:,}", f"{c.counted_flops:,}",
                      "yes" if c.match else "NO")
    table.add_row("total", f"{cc.total_analytic_product_flops:,}", f"{cc.total_counted_flops:,}",
                  "yes" if cc.total_analytic_product_flops == cc.total_counted_flops else "NO",
                  style="bold")
    return table


def _bench_table(results):
    from rich import box
    from rich.table import Table

    from hilocli.cost import human_bytes

    r0 = results[0]
    table = Table(title=f"measured ({r0.case.device}, {r0.case.dtype}, batch {r0.case.batch_size}, "
                        f"{r0.threads} threads, {r0.case.warmup} warm-up + {r0.case.repeats} timed "
                        "runs)", title_justify="left", box=box.SIMPLE_HEAD,
                  caption=f"memory: {next((r.memory_kind for r in results if r.memory_kind), '')}",
                  caption_justify="left")
    for col in ("what", "size", "img/s (median)", "min", "max", "peak memory", "status"):
        table.add_column(col, justify="left" if col in ("what", "status") else "right")
    for r in results:
        c = r.case
        size = f"{c.height}x{c.width} {'px' if c.kind == 'model' else 'tokens'}"
        num = (lambda v: "-" if v is None else f"{v:,.1f}")
        table.add_row(c.name, size, num(r.img_per_s), num(r.img_per_s_min), num(r.img_per_s_max),
                      "-" if r.peak_memory_bytes is None else human_bytes(r.peak_memory_bytes),
                      r.status)
    return table


def flops(
    resolution: ResolutionOpt = None,
    height: Annotated[Optional[int], typer.Option(
        "--height", help="Input height in pixels (with --width, instead of --resolution).")] = None,
    width: Annotated[Optional[int], typer.Option("--width", help="Input width in pixels.")] = None,
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    alpha: Annotated[Optional[float], typer.Option(
        "--alpha", help="Share of Lo-Fi heads in HiLo layers (default: the model's).")] = None,
    window: Annotated[Optional[int], typer.Option(
        "--window", help="HiLo window size s for the layers that have a window (default: the "
        "model's, 2).")] = None,
    dim: Annotated[Optional[int], typer.Option(
        "--dim", help="Attention comparison: channels (default: stage 3 of the model).")] = None,
    heads: Annotated[Optional[int], typer.Option(
        "--heads", help="Attention comparison: heads (default: stage 3 of the model).")] = None,
    tokens: Annotated[Optional[str], typer.Option(
        "--tokens", help="Attention comparison: token grid HxW (default: the stage-3 grid at the "
        "input size).")] = None,
    sweep: Annotated[Optional[str], typer.Option(
        "--sweep", help="Comma list of square resolutions, e.g. 224,384,512,768,1024: table and "
        "figure of cost against resolution.")] = None,
    convention: Annotated[ConventionChoice, typer.Option(
        "--convention", help="authors: the published counts; as-run: what the model runs (see "
        "docs/flops.md).")] = ConventionChoice.authors,
    count: Annotated[bool, typer.Option(
        "--count", help="Also count FLOPs with torch's FlopCounterMode (meta device) and check "
        "them against the analytic count.")] = False,
    benchmark: Annotated[bool, typer.Option(
        "--benchmark", help="Measure throughput and peak memory of each attention type and the "
        "whole model.")] = False,
    device: DeviceOpt = DeviceChoice.auto,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", "-b", help="Images per forward (benchmark; attention memory).")] = 1,
    dtype: Annotated[DtypeChoice, typer.Option(
        "--dtype", help="Benchmark dtype (and bytes per attention-matrix element).")] = DtypeChoice.float32,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed runs per benchmark case.")] = 10,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs before timing.")] = 3,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", help="CPU threads for the benchmark (default: torch's default).")] = None,
    out: OutOpt = Path("hilo-out"),
    as_json: JsonOpt = False,
    fmt: FormatOpt = FigureFormat.png,
) -> None:
    """Parameters, MACs (FLOPs = 2 x MACs), attention memory and speed of LITv2 and HiLo.

    Counts are analytic (no model runs), in the authors' convention: reproduces their published
    numbers to the digit. See docs/flops.md for what is and is not counted.
    """
    from hilocli import cost

    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    if repeats < 1 or warmup < 0:
        raise UsageError("--repeats must be >= 1 and --warmup >= 0")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise UsageError(f"--alpha must lie in [0, 1], got {alpha}")
    if window is not None and window < 1:
        raise UsageError(f"--window must be >= 1, got {window}")
    if (dim is None) != (heads is None):
        raise UsageError("--dim and --heads go together")
    if dim is not None and (dim <= 0 or heads <= 0 or dim % heads):
        raise UsageError(f"--dim {dim} must be a positive multiple of --heads {heads}")

    cfg, name, provenance = _load_cfg(model, checkpoint)
    changes: dict[str, Any] = {}
    if alpha is not None:
        changes["alpha"] = alpha
    if window is not None:
        changes["local_ws"] = tuple(window if ws > 1 else ws for ws in cfg.local_ws)
    if changes:
        cfg = cfg.replace(**changes)
    smallest = cost.min_input_size(cfg)
    H, W = _input_size(resolution, height, width, cfg, smallest)
    resolutions = None
    if sweep is not None:
        resolutions = parse_int_list(sweep, "--sweep")
        if not resolutions:
            raise UsageError("--sweep needs at least one resolution")
        for r in resolutions:
            if r < smallest:
                raise UsageError(f"--sweep entry {r} is below the smallest input this model takes "
                                 f"({smallest} pixels)")

    conv = cost.get_convention(convention.value)
    nbytes = _BYTES[dtype.value]
    mc = cost.model_cost(cfg, H, W, conv)
    s_dim, s_heads, s_h, s_w, s_ws = cost.stage3_layer(cfg, H, W)
    a_dim, a_heads = (dim, heads) if dim is not None else (s_dim, s_heads)
    a_h, a_w = _parse_tokens(tokens) if tokens is not None else (s_h, s_w)
    attn = cost.attention_comparison(a_dim, a_heads, a_h, a_w, cfg.alpha, s_ws,
                                     batch_size=batch_size, bytes_per_element=nbytes,
                                     qkv_bias=cfg.qkv_bias)
    payload: dict[str, Any] = {
        "model": name,
        "provenance": provenance or {"source": "architecture only", "variant": name,
                                     "note": "counts depend on the architecture, not the weights"},
        "config": cfg.to_dict(),
        **mc.to_dict(),
        "attention": {
            "dim": a_dim, "heads": a_heads, "tokens": [a_h, a_w], "batch_size": batch_size,
            "dtype": dtype.value, "convention": cost.FVCORE.to_dict(),
            "memory": "softmax weights of all heads for batch_size images at dtype bytes",
            "rows": [a.to_dict() for a in attn],
        },
    }
    console = stderr_console()
    if not console.is_terminal:  # piped / captured: do not squeeze the tables into 80 columns
        console.width = max(console.width, 110)
    console.print(_stage_table(mc, name))
    console.print(_attention_table(attn, cost.FVCORE.name))

    if count:
        from hilocli.cost_measure import count_flops

        cc = count_flops(cfg, H, W)
        payload["counted"] = cc.to_dict()
        console.print(_count_table(cc))

    bench_results = []
    if benchmark:
        from hilocli.cost_measure import BenchCase, benchmark as run_bench
        from hilocli.runtime import environment, resolve_device

        dev = resolve_device(device)
        sizes = resolutions or [None]
        cases = []
        for r in sizes:
            rh, rw = (H, W) if r is None else (r, r)
            _, _, th, tw, _ = cost.stage3_layer(cfg, rh, rw)
            gh, gw = (a_h, a_w) if (r is None and tokens is not None) else (th, tw)
            common = dict(batch_size=batch_size, device=str(dev), dtype=dtype.value,
                          threads=threads, warmup=warmup, repeats=repeats)
            for kind in cost.ATTENTION_TYPES:
                cases.append(BenchCase("attention", kind, gh, gw, dim=a_dim, num_heads=a_heads,
                                       alpha=cfg.alpha, window_size=s_ws, **common))
            cases.append(BenchCase("model", name, rh, rw, cfg=cfg.to_dict(), **common))
        with console.status("benchmarking") as status:
            def _tick(res):
                status.update(f"benchmarked {res.case.name} {res.case.height}x{res.case.width}: "
                              f"{res.status}")
            bench_results = run_bench(cases, progress=_tick)
        payload["benchmark"] = {"environment": environment(dev),
                                "results": [b.to_dict() for b in bench_results]}
        console.print(_bench_table(bench_results))

    if resolutions is not None:
        points = cost.sweep(cfg, resolutions, conv, batch_size=batch_size, bytes_per_element=nbytes)
        payload["sweep"] = [{"resolution": p.resolution, "model_macs": p.model_macs,
                             "grid": list(p.grid), "attention": [a.to_dict() for a in p.attention]}
                            for p in points]
        _print_sweep(console, points)
        from hilocli.io import save_figure
        from hilocli.plotting_cost import sweep_figure

        fig = sweep_figure(points, name, bench_results or None, batch_size, dtype.value,
                           bench_results[0].case.device if bench_results else "cpu")
        path = save_figure(fig, Path(out) / f"flops_sweep_{name.replace(' ', '_')}.{fmt.value}")
        payload["figure"] = str(path)
        console.print(f"figure: {path}")
    if as_json:
        emit_json(payload)


def _print_sweep(console, points) -> None:
    from rich import box
    from rich.table import Table

    from hilocli.cost import ATTENTION_TYPES, human_bytes

    table = Table(title="MACs per image against resolution (attention: one layer at the stage-3 "
                        "map)", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ["resolution", "grid", "model"] + [f"{t}" for t in ATTENTION_TYPES] + \
               [f"{t} mem" for t in ATTENTION_TYPES]:
        table.add_column(col, justify="right")
    for p in points:
        by = {a.name: a for a in p.attention}
        table.add_row(str(p.resolution), f"{p.grid[0]}x{p.grid[1]}", _g(p.model_macs),
                      *[_g(by[t].macs) for t in ATTENTION_TYPES],
                      *[human_bytes(by[t].attn_matrix_bytes) for t in ATTENTION_TYPES])
    console.print(table)
