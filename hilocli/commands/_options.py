"""Typer options shared by the subcommands, and turning them into requests. Nothing heavy here:
`hilo --help` imports this module."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from hilocli.option_lists import parse_float_list, parse_int_list
from hilocli.weights import WeightsRequest


class DeviceChoice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class DtypeChoice(str, Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class FigureFormat(str, Enum):
    png = "png"
    pdf = "pdf"
    svg = "svg"


ModelOpt = Annotated[
    Optional[str],
    typer.Option(
        "--model", "-m", help="Released variant name (see `hilo info --list`); default litv2_s."
    ),
]
CheckpointOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--checkpoint",
        "-c",
        help="A LITv2 .pth or .safetensors file (any known layout); architecture inferred.",
    ),
]
ModelFnOpt = Annotated[
    Optional[str],
    typer.Option(
        "--model-fn",
        help="Your own model: path/to/file.py:function or package.module:function returning "
        "an nn.Module with HiLo layers (see docs/any-model.md).",
    ),
]
ModelKwargsOpt = Annotated[
    Optional[str],
    typer.Option("--model-kwargs", help="JSON object of keyword arguments for --model-fn/--hub."),
]
HubOpt = Annotated[
    Optional[str],
    typer.Option("--hub", help="DIR:ENTRY of a local hubconf.py (torch.hub, source='local')."),
]
MeanOpt = Annotated[
    Optional[str],
    typer.Option("--mean", help="R,G,B input mean of your own model (default ImageNet's)."),
]
StdOpt = Annotated[
    Optional[str],
    typer.Option("--std", help="R,G,B input std of your own model (default ImageNet's)."),
]
PretrainedOpt = Annotated[
    Optional[bool],
    typer.Option(
        "--pretrained/--random-init",
        show_default=False,
        help="Released weights of --model (downloaded once) or a seeded random init. "
        "Conflicts with --checkpoint.",
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of any random init.")]
WindowOpt = Annotated[
    Optional[str],
    typer.Option(
        "--window-sizes", help="Per-stage window sizes when a checkpoint cannot tell, e.g. 0,0,2,1."
    ),
]
HeadDimOpt = Annotated[
    Optional[int],
    typer.Option(
        "--head-dim",
        min=1,
        help="Head dimension, when a checkpoint's tensors cannot tell "
        "(default: inferred; 32 in every released model).",
    ),
]
DeviceOpt = Annotated[DeviceChoice, typer.Option("--device", help="Where to run the model.")]
DtypeOpt = Annotated[
    DtypeChoice,
    typer.Option(
        "--dtype",
        help="Precision of the model forward (autocast). auto: float32 on the CPU; on CUDA "
        "bfloat16, except spectrum (float32: bfloat16 rounding swamps the Lo-Fi spectrum). "
        "float16 needs CUDA. Analysis always runs in float32/float64.",
    ),
]
TF32Opt = Annotated[
    bool,
    typer.Option(
        "--tf32",
        help="Allow TF32 for float32 matmuls/convolutions on CUDA (faster, ~1e-3 relative "
        "error); off by default for fidelity.",
    ),
]
ResolutionOpt = Annotated[
    Optional[int],
    typer.Option(
        "--resolution", "-r", help="Input size in pixels (default: the weights' training size)."
    ),
]
NoCropOpt = Annotated[
    bool,
    typer.Option(
        "--no-crop",
        help="Keep the whole image: resize its shorter side to the resolution, no crop.",
    ),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Folder for figures and JSON files.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
FormatOpt = Annotated[FigureFormat, typer.Option("--format", help="Figure file format.")]


# inputs, batching and the exact tests: `hilo spectrum` and `hilo compare`
InputsArg = Annotated[
    list[Path],
    typer.Argument(help="Image files and/or folders (read recursively).", show_default=False),
]
BatchOpt = Annotated[int, typer.Option("--batch-size", "-b", help="Images per forward.")]
WorkersOpt = Annotated[
    Optional[int],
    typer.Option(
        "--workers",
        help="Processes decoding images beside the forward (0: in the main process). "
        "Default, at most 8: on a GPU the cores of this process less one; on the CPU the cores "
        "its forward threads leave free (usually 0). Results do not depend on it.",
        show_default=False,
    ),
]
LimitOpt = Annotated[
    Optional[int],
    typer.Option(
        "--limit",
        help="Use at most this many distinct images (after sorting; files that are not images "
        "take no slot).",
    ),
]
AlphaOpt = Annotated[float, typer.Option("--alpha", help="Level of the exact tests.")]
MarginOpt = Annotated[
    float,
    typer.Option(
        "--margin",
        help="Equivalence margin on the share difference: an interval inside +-margin is "
        "'equivalent'.",
    ),
]


def weights_request(options: Mapping[str, Any], *, default_pretrained: bool) -> WeightsRequest:
    """The weights options of a command as a validated request (usage errors before any work).

    `options` is the command's `locals()`: the weights options it declares (`model`,
    `checkpoint`, `pretrained`, `window_sizes`, `head_dim`, `seed`, `model_fn`, `model_kwargs`,
    `hub`, `mean`, `std`) are read by name; the ones it does not declare stay unset."""
    get = options.get
    return WeightsRequest(
        model_fn=get("model_fn"),
        model_kwargs=get("model_kwargs"),
        hub=get("hub"),
        mean=parse_float_list(get("mean"), "--mean"),
        std=parse_float_list(get("std"), "--std"),
        model=get("model"),
        checkpoint=get("checkpoint"),
        pretrained=get("pretrained"),
        window_sizes=parse_int_list(get("window_sizes"), "--window-sizes"),
        head_dim=get("head_dim"),
        seed=get("seed", 0),
        default_pretrained=default_pretrained,
    ).validate()
