"""`hilo info`: what a model is, where its weights came from, what was inferred, and the indices
`--layer` takes. Options -> `InfoRequest` -> `hilocli.info.run` -> tables or the JSON record."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from hilocli.commands._options import (
    CheckpointOpt,
    DeviceChoice,
    DeviceOpt,
    HeadDimOpt,
    HubOpt,
    JsonOpt,
    ModelFnOpt,
    ModelKwargsOpt,
    ModelOpt,
    PretrainedOpt,
    ResolutionOpt,
    SeedOpt,
    WindowOpt,
    weights_request,
)

HeightOpt = Annotated[
    Optional[int],
    typer.Option("--height", help="Input height in pixels for the per-stage table (with --width)."),
]
WidthOpt = Annotated[Optional[int], typer.Option("--width", help="Input width (with --height).")]
ListOpt = Annotated[bool, typer.Option("--list", help="List the released variants.")]


def info(
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    model_fn: ModelFnOpt = None,
    model_kwargs: ModelKwargsOpt = None,
    hub: HubOpt = None,
    pretrained: PretrainedOpt = None,
    resolution: ResolutionOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    window_sizes: WindowOpt = None,
    head_dim: HeadDimOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = DeviceChoice.cpu,
    list_variants: ListOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Show a model's configuration, parameters, weights (and what was inferred about them),
    and its HiLo layer indices. Default: a random init of litv2_s (no download)."""
    from hilocli.info import InfoRequest, render, render_variants, run, variants_record
    from hilocli.output import emit_json
    from hilocli.terminal import console

    if list_variants:
        record = variants_record()
        if as_json:
            emit_json(record)
        else:
            render_variants(console(), record)
        return
    request = InfoRequest(
        weights=weights_request(locals(), default_pretrained=False),
        resolution=resolution,
        height=height,
        width=width,
        device=device.value,
    ).validate()
    result = run(request)
    if as_json:
        emit_json(result.to_record())
    else:
        render(console(), result)
