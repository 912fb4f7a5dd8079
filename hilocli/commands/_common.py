"""Options and helpers shared by the subcommands. Imports nothing heavy at module level."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from hilocli.errors import UsageError


class DeviceChoice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class FigureFormat(str, Enum):
    png = "png"
    pdf = "pdf"
    svg = "svg"


ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="Released variant name (see `hilo info --list`); default litv2_s.")]
CheckpointOpt = Annotated[Optional[Path], typer.Option(
    "--checkpoint", "-c", help="A LITv2 .pth file (any known layout); architecture inferred.")]
WindowOpt = Annotated[Optional[str], typer.Option(
    "--window-sizes", help="Per-stage window sizes when a checkpoint cannot tell, e.g. 0,0,2,1.")]
HeadDimOpt = Annotated[int, typer.Option(
    "--head-dim", help="Head dimension assumed when inferring heads from a checkpoint.")]
DeviceOpt = Annotated[DeviceChoice, typer.Option("--device", help="Where to run the model.")]
ResolutionOpt = Annotated[Optional[int], typer.Option(
    "--resolution", "-r", help="Input size in pixels (default: the weights' training size).")]
NoCropOpt = Annotated[bool, typer.Option(
    "--no-crop", help="Keep the whole image: resize its shorter side to the resolution, no crop.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Folder for figures and JSON files.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
FormatOpt = Annotated[FigureFormat, typer.Option("--format", help="Figure file format.")]


def parse_int_list(text: str, what: str) -> list[int]:
    """'0,0,2,1' -> [0, 0, 2, 1]; UsageError naming `what` on a bad entry."""
    try:
        return [int(t) for t in text.replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise UsageError(f"{what} must be comma-separated integers, got {text!r}") from None


def parse_layers(spec: str, num_layers: int) -> list[int]:
    """`--layer` values: 'all', an index, or a comma list; negative indices count from the end."""
    if num_layers == 0:
        raise UsageError("this model has no attention layers")
    if spec.strip().lower() == "all":
        return list(range(num_layers))
    out = []
    for idx in parse_int_list(spec, "--layer"):
        if not -num_layers <= idx < num_layers:
            raise UsageError(f"--layer {idx} is out of range: this model has {num_layers} attention "
                             f"layers, indices 0..{num_layers - 1} (see `hilo info`)")
        out.append(idx % num_layers)
    if not out:
        raise UsageError("--layer needs at least one index")
    return sorted(set(out))


def check_resolution(resolution: int | None) -> None:
    if resolution is not None and resolution <= 0:
        raise UsageError(f"--resolution must be a positive number of pixels, got {resolution}")


def emit_json(payload: Any) -> None:
    """Machine-readable output on stdout (tables and progress go to stderr)."""
    sys.stdout.write(json.dumps(payload, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Enum):
        return obj.value
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def load_for_command(model, checkpoint, pretrained: bool, window_sizes: str | None,
                     head_dim: int, device, seed: int, resolution: int | None):
    """The weights and input size a command runs with: (LoadedModel, torch.device, resolution).

    `--pretrained` is ignored when a checkpoint is given; the resolution defaults to the weights'
    training size and must reach the model's minimum input size.
    """
    from hilocli.checkpoint import load_model
    from hilocli.runtime import resolve_device

    check_resolution(resolution)
    ws = parse_int_list(window_sizes, "--window-sizes") if window_sizes else None
    dev = resolve_device(device)
    loaded = load_model(model, checkpoint, pretrained and checkpoint is None, ws, head_dim, dev,
                        seed=seed)
    net = loaded.model
    res = resolution or net.cfg.img_size
    if res < net.min_input_size():
        raise UsageError(f"--resolution {res} is below this model's minimum of "
                         f"{net.min_input_size()} pixels")
    return loaded, dev, res
