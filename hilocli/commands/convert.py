"""`hilo convert IN OUT`: a LITv2 checkpoint in the authors' layout (.pth) or as .safetensors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hilocli.commands._options import HeadDimOpt, JsonOpt, WindowOpt


def convert(
    source: Annotated[Path, typer.Argument(help="Any checkpoint hilo loads as LITv2.")],
    dest: Annotated[
        Path, typer.Argument(help="Output file: .pth (authors' layout) or .safetensors.")
    ],
    window_sizes: WindowOpt = None,
    head_dim: HeadDimOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace DEST.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a LITv2 checkpoint (the authors', OpenMixup's or birder's names) in the authors'
    layout, {"model": state_dict}, or as safetensors; the source's SHA-256 goes with it."""
    from hilocli.convert import ConvertRequest, run
    from hilocli.option_lists import parse_int_list
    from hilocli.output import emit_json
    from hilocli.terminal import console, say

    request = ConvertRequest(
        source, dest, parse_int_list(window_sizes, "--window-sizes"), head_dim, overwrite
    ).validate()
    result = run(request)
    if as_json:
        emit_json(result.to_record())
        return
    layout = result.weights.get("layout") or "the authors'"
    say(
        console(),
        f"wrote {dest} ({result.num_tensors} tensors, {result.num_params:,} parameters) from "
        f"{source} ({layout} layout, sha256 {result.weights.get('sha256')})",
    )
