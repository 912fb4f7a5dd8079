"""`hilo attn-map`: per-branch, per-head attention maps over an image, and how local each head is.

Options -> `AttnMapRequest` -> `run` -> render (`hilocli.attn_map`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hilocli.commands._options import (
    CheckpointOpt,
    DeviceChoice,
    DeviceOpt,
    DtypeChoice,
    DtypeOpt,
    FigureFormat,
    FormatOpt,
    HeadDimOpt,
    HubOpt,
    JsonOpt,
    MeanOpt,
    ModelFnOpt,
    ModelKwargsOpt,
    ModelOpt,
    NoCropOpt,
    OutOpt,
    PretrainedOpt,
    ResolutionOpt,
    SeedOpt,
    StdOpt,
    TF32Opt,
    WindowOpt,
    weights_request,
)

ImageArg = Annotated[Path, typer.Argument(help="An image file.", show_default=False)]
LayerOpt = Annotated[
    Optional[str],
    typer.Option(
        "--layer",
        "-l",
        help="HiLo layer index (see `hilo info`), comma list, or 'all'. Default: the last "
        "attention layer of each stage.",
        show_default=False,
    ),
]
DetailOpt = Annotated[
    bool,
    typer.Option(
        "--detail",
        help="Also one figure per layer with every --heads column "
        "(attn_map_layer<i>.<format>); default: the overview attn_map.<format> only.",
    ),
]
QueryOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--query",
        "-q",
        help="Query point X,Y in original-image pixels (repeatable). Default: "
        "centre and quadrant centres of what the model sees.",
    ),
]
HeadsOpt = Annotated[
    str,
    typer.Option(
        "--heads",
        help="Columns of the --detail figures and the JSON: 'all' (every head, then branch "
        "means), 'mean' (branch means only) or head indices like 0,3 (Hi-Fi heads first).",
    ),
]
SaveRawOpt = Annotated[
    bool,
    typer.Option(
        "--save-raw",
        help="Also write the full attention matrices of the chosen layers (attn_raw.npz).",
    ),
]
MaxRawOpt = Annotated[
    int, typer.Option("--max-raw-mb", help="Memory allowed for --save-raw matrices (MiB).")
]
ChunkOpt = Annotated[
    int,
    typer.Option(
        "--chunk-size",
        help="Query tokens per chunk in the whole-image summaries (bounds peak memory).",
    ),
]


def attn_map(
    image: ImageArg,
    layer: LayerOpt = None,
    detail: DetailOpt = False,
    query: QueryOpt = None,
    heads: HeadsOpt = "all",
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    model_fn: ModelFnOpt = None,
    model_kwargs: ModelKwargsOpt = None,
    hub: HubOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    pretrained: PretrainedOpt = None,
    resolution: ResolutionOpt = None,
    no_crop: NoCropOpt = False,
    device: DeviceOpt = DeviceChoice.auto,
    dtype: DtypeOpt = DtypeChoice.auto,
    tf32: TF32Opt = False,
    out: OutOpt = Path("hilo-out"),
    as_json: JsonOpt = False,
    fmt: FormatOpt = FigureFormat.png,
    save_raw: SaveRawOpt = False,
    max_raw_mb: MaxRawOpt = 2048,
    chunk_size: ChunkOpt = 256,
    seed: SeedOpt = 0,
    window_sizes: WindowOpt = None,
    head_dim: HeadDimOpt = None,
) -> None:
    """Attention maps of chosen query points per head (Hi-Fi inside its window, Lo-Fi over the
    pooled image) and per-head locality: mean attention distance, entropy, attention received."""
    from hilocli.attn_map import AttnMapRequest, render, run
    from hilocli.commands._run import run_and_write

    request = AttnMapRequest(
        image=image,
        weights=weights_request(locals(), default_pretrained=True),
        layers=layer,
        queries=tuple(query or ()),
        heads=heads,
        resolution=resolution,
        crop=not no_crop,
        device=device.value,
        chunk_size=chunk_size,
        save_raw=save_raw,
        max_raw_mb=max_raw_mb,
        dtype=dtype.value,
        tf32=tf32,
    ).validate()
    run_and_write("attn-map", "layers", run, request, render, out, fmt.value, as_json,
                  detail=detail)  # fmt: skip
