"""`hilo flops`: parameters, MACs, FLOPs, memory and speed of LITv2 and HiLo at any resolution.

Options -> `FlopsRequest` -> `hilocli.flops.run` -> tables, figure and flops.json (see
`hilocli.flops.render`). Nothing heavy is imported until the command runs.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from hilocli.commands._options import (
    CheckpointOpt,
    DeviceChoice,
    DeviceOpt,
    DtypeChoice,
    FigureFormat,
    FormatOpt,
    HubOpt,
    JsonOpt,
    ModelFnOpt,
    ModelKwargsOpt,
    ModelOpt,
    OutOpt,
    ResolutionOpt,
)


class ConventionChoice(str, Enum):
    authors = "authors"
    as_run = "as-run"


HeightOpt = Annotated[
    Optional[int],
    typer.Option(
        "--height", help="Input height in pixels (with --width, instead of --resolution)."
    ),
]
WidthOpt = Annotated[Optional[int], typer.Option("--width", help="Input width in pixels.")]
LofiShareOpt = Annotated[
    Optional[float],
    typer.Option(
        "--alpha",
        min=0.0,
        max=1.0,
        help="Share of Lo-Fi heads in HiLo layers (default: the model's).",
    ),
]
WindowSizeOpt = Annotated[
    Optional[int],
    typer.Option(
        "--window",
        min=1,
        help="HiLo window size s for the layers that have a window (default: the model's, 2).",
    ),
]
DimOpt = Annotated[
    Optional[int],
    typer.Option(
        "--dim", min=1, help="Attention comparison: channels (default: stage 3 of the model)."
    ),
]
HeadsOpt = Annotated[
    Optional[int],
    typer.Option(
        "--heads", min=1, help="Attention comparison: heads (default: stage 3 of the model)."
    ),
]
TokensOpt = Annotated[
    Optional[str],
    typer.Option(
        "--tokens",
        help="Attention comparison: token grid HxW (default: the stage-3 grid at the input size).",
    ),
]
SweepOpt = Annotated[
    Optional[str],
    typer.Option(
        "--sweep",
        help="Comma list of square resolutions, e.g. 224,384,512,768,1024: table and "
        "figure (in --out, with flops.json) of cost against resolution.",
    ),
]
ConventionOpt = Annotated[
    ConventionChoice,
    typer.Option(
        "--convention",
        help="authors: the published counts; as-run: what the model runs (see docs/flops.md).",
    ),
]
CountOpt = Annotated[
    bool,
    typer.Option(
        "--count",
        help="Also count FLOPs with torch's FlopCounterMode (meta device) and check them "
        "against the analytic count.",
    ),
]
BenchmarkOpt = Annotated[
    bool,
    typer.Option(
        "--benchmark",
        help="Measure throughput and peak memory of each attention type and the "
        "whole model (median of the timed runs; spread > 20% is marked unstable).",
    ),
]
FlopsBatchOpt = Annotated[
    int,
    typer.Option(
        "--batch-size", "-b", min=1, help="Images per forward (benchmark; attention memory)."
    ),
]
FlopsDtypeOpt = Annotated[
    DtypeChoice,
    typer.Option(
        "--dtype",
        help="Precision of the benchmarked forward (autocast, as in every command; auto: "
        "bfloat16 on CUDA, float32 on the CPU) and the bytes per attention-matrix element. "
        "float16 needs CUDA. Without --benchmark auto resolves against --device as named "
        "(auto: the CPU).",
    ),
]
RepeatsOpt = Annotated[int, typer.Option("--repeats", min=5, help="Timed runs per benchmark case.")]
WarmupOpt = Annotated[
    int,
    typer.Option(
        "--warmup",
        min=0,
        help="Least untimed runs per case; more until the last 3 agree within "
        "10% (at most 30 runs or 30 s).",
    ),
]
ThreadsOpt = Annotated[
    Optional[int],
    typer.Option(
        "--threads", min=1, help="CPU threads for the benchmark (default: torch's default)."
    ),
]

SdpaOpt = Annotated[
    str,
    typer.Option(
        "--sdpa-backends",
        help="Benchmark every case once per SDPA backend, forced in turn: a comma list of "
        "default, flash, efficient, cudnn, math, explicit (HiLo's matmul + softmax path).",
    ),
]


def flops(
    resolution: ResolutionOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    model_fn: ModelFnOpt = None,
    model_kwargs: ModelKwargsOpt = None,
    hub: HubOpt = None,
    alpha: LofiShareOpt = None,
    window: WindowSizeOpt = None,
    dim: DimOpt = None,
    heads: HeadsOpt = None,
    tokens: TokensOpt = None,
    sweep: SweepOpt = None,
    convention: ConventionOpt = ConventionChoice.authors,
    count: CountOpt = False,
    benchmark: BenchmarkOpt = False,
    device: DeviceOpt = DeviceChoice.auto,
    batch_size: FlopsBatchOpt = 1,
    dtype: FlopsDtypeOpt = DtypeChoice.auto,
    repeats: RepeatsOpt = 10,
    warmup: WarmupOpt = 3,
    threads: ThreadsOpt = None,
    sdpa_backends: SdpaOpt = "default",
    out: OutOpt = Path("hilo-out"),
    as_json: JsonOpt = False,
    fmt: FormatOpt = FigureFormat.png,
) -> None:
    """Parameters, MACs (FLOPs = 2 x MACs), attention memory and speed of LITv2 and HiLo.

    Counts are analytic (no model runs, weights never used), in the authors' convention: they
    reproduce the published numbers to the digit. A model's own code (--model-fn, --hub) is
    counted as it runs, with the analytic MACs of each HiLo layer. See docs/flops.md.
    """
    from hilocli.flops.render import print_tables, run_with_status, save
    from hilocli.flops.request import FlopsRequest, parse_tokens
    from hilocli.option_lists import parse_int_list
    from hilocli.output import check_out_dir, emit_json
    from hilocli.terminal import console

    request = FlopsRequest(
        model=model,
        checkpoint=checkpoint,
        resolution=resolution,
        height=height,
        width=width,
        alpha=alpha,
        window=window,
        dim=dim,
        heads=heads,
        tokens=None if tokens is None else parse_tokens(tokens),
        sweep=parse_int_list(sweep, "--sweep"),
        convention=convention.value,
        count=count,
        benchmark=benchmark,
        device=device.value,
        batch_size=batch_size,
        dtype=dtype.value,
        repeats=repeats,
        warmup=warmup,
        threads=threads,
        sdpa_backends=tuple(b.strip() for b in sdpa_backends.split(",") if b.strip()),
        model_fn=model_fn,
        hub=hub,
        model_kwargs=model_kwargs,
    ).validate()
    if request.writes_files:
        check_out_dir(out)
    con = console()
    result = run_with_status(con, request)
    print_tables(con, result)
    record = save(con, result, out, fmt.value)
    if as_json:
        emit_json(record)
