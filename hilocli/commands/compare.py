"""`hilo compare`: the same images through several sets of weights, the key measures side by side.

Options -> `CompareRequest` -> `hilocli.compare.run` -> files and table (`hilocli.compare.render`).
The feature package is imported inside the command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hilocli.commands._options import (
    AlphaOpt,
    BatchOpt,
    DeviceChoice,
    DeviceOpt,
    DtypeChoice,
    DtypeOpt,
    FigureFormat,
    FormatOpt,
    InputsArg,
    JsonOpt,
    LimitOpt,
    MarginOpt,
    NoCropOpt,
    OutOpt,
    SeedOpt,
    TF32Opt,
    WorkersOpt,
)

LayerOpt = Annotated[
    Optional[str],
    typer.Option(
        "--layer",
        "-l",
        help="HiLo layer index (see `hilo info`), comma list, or 'all', for every set of "
        "weights. Default: every layer with both a Hi-Fi and a Lo-Fi branch (a model with "
        "none, alpha 0 or 1: its windowed layers, one branch each).",
    ),
]
CompareResolutionOpt = Annotated[
    Optional[int],
    typer.Option(
        "--resolution",
        "-r",
        help="Input size in pixels, the same for every set (default: the first set's "
        "training size).",
    ),
]

CheckpointsOpt = Annotated[
    Optional[list[Path]],
    typer.Option(
        "--checkpoint",
        "-c",
        help="A LITv2 .pth or .safetensors file; repeat for each set of weights. Checkpoints "
        "come first, then --model names, each in the order given.",
        show_default=False,
    ),
]
ModelsOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--model",
        "-m",
        help="Released variant (see `hilo info --list`), e.g. litv2_s_alpha0.5; repeatable; "
        "downloaded once.",
        show_default=False,
    ),
]
LabelsOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--label",
        help="Name of each set of weights in the table and figure, one per set, in order "
        "(default: file or variant name @ first 8 hex digits of its SHA-256).",
        show_default=False,
    ),
]
AttnImagesOpt = Annotated[
    int,
    typer.Option(
        "--attn-images",
        help="Attention distance on the first K analysed images (0: skip it).",
    ),
]


def compare(
    inputs: InputsArg,
    checkpoint: CheckpointsOpt = None,
    model: ModelsOpt = None,
    label: LabelsOpt = None,
    layer: LayerOpt = None,
    resolution: CompareResolutionOpt = None,
    no_crop: NoCropOpt = False,
    batch_size: BatchOpt = 16,
    workers: WorkersOpt = None,
    device: DeviceOpt = DeviceChoice.auto,
    dtype: DtypeOpt = DtypeChoice.auto,
    tf32: TF32Opt = False,
    limit: LimitOpt = None,
    out: OutOpt = Path("hilo-out"),
    as_json: JsonOpt = False,
    fmt: FormatOpt = FigureFormat.png,
    alpha: AlphaOpt = 0.05,
    margin: MarginOpt = 0.05,
    attn_images: AttnImagesOpt = 8,
    seed: SeedOpt = 0,
) -> None:
    """The same images through each set of weights: Hi-Fi minus Lo-Fi spectrum estimate with its
    interval and verdict, Hi-Fi and Lo-Fi attention distance and MACs, one row per set."""
    from hilocli.commands._run import run_and_write
    from hilocli.compare import CompareRequest, render, run

    request = CompareRequest(
        inputs=tuple(inputs),
        checkpoints=tuple(checkpoint or ()),
        models=tuple(model or ()),
        labels=tuple(label or ()),
        layers=layer,
        resolution=resolution,
        crop=not no_crop,
        batch_size=batch_size,
        device=device.value,
        limit=limit,
        out=out,
        alpha=alpha,
        margin=margin,
        seed=seed,
        dtype=dtype.value,
        tf32=tf32,
        attn_images=attn_images,
        workers=workers,
    ).validate()
    run_and_write("compare", "images x weights", run, request, render, out, fmt.value, as_json)
