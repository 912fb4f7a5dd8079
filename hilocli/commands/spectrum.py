"""`hilo spectrum`: which spatial frequencies the Hi-Fi and Lo-Fi branches carry, with numbers.

Options -> `SpectrumRequest` -> `hilocli.spectrum.run` -> files and tables
(`hilocli.spectrum.render`). The feature package is imported inside the command."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from hilocli.commands._options import (
    AlphaOpt,
    BatchOpt,
    CheckpointOpt,
    DeviceChoice,
    DeviceOpt,
    DtypeChoice,
    DtypeOpt,
    FigureFormat,
    FormatOpt,
    HeadDimOpt,
    HubOpt,
    InputsArg,
    JsonOpt,
    LimitOpt,
    MarginOpt,
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
    WorkersOpt,
    weights_request,
)
from hilocli.compilation import CPU_COMPILE_MIN_IMAGES, CUDA_COMPILE_MIN_IMAGES


class SpectrumMode(str, Enum):
    stats = "stats"
    paper = "paper"


class ControlChoice(str, Enum):
    none = "none"
    random = "random"


class CompileChoice(str, Enum):
    auto = "auto"
    on = "on"
    off = "off"


LayerOpt = Annotated[
    Optional[str],
    typer.Option(
        "--layer",
        "-l",
        help="HiLo layer index (see `hilo info`), comma list, or 'all'; negative indices count "
        "from the end as in Python (-1: the last HiLo layer). Default: every layer with both "
        "a Hi-Fi and a Lo-Fi branch.",
    ),
]
ModeOpt = Annotated[
    SpectrumMode,
    typer.Option(
        "--mode",
        help="stats: numbers, verdict and summary figure; paper: also the authors' "
        "8-channel log-magnitude figure.",
    ),
]
ControlOpt = Annotated[
    ControlChoice,
    typer.Option(
        "--control",
        help="random: repeat everything on a randomly initialised model of the same "
        "architecture (what the architecture alone does).",
    ),
]
CutoffOpt = Annotated[
    float,
    typer.Option("--cutoff", help="High-frequency cutoff radius, cycles per token (Nyquist 0.5)."),
]


class Boundary(str, Enum):
    hann = "hann"
    none = "none"


BoundaryOpt = Annotated[
    Boundary,
    typer.Option(
        "--boundary",
        help="The spectral estimator: hann (Hann-windowed periodogram: map edges are not "
        "detail) or none (plain periodic periodogram, the authors' picture).",
    ),
]
GroupsOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--groups",
        help="CSV with columns path,group naming each image's source scene (video frames, "
        "crops of one photo); default: near-duplicates grouped by a perceptual hash.",
    ),
]
DepthOpt = Annotated[
    bool,
    typer.Option(
        "--depth", help="Also Park & Kim's depth curve over every block (figure and JSON)."
    ),
]
MatchedOpt = Annotated[
    bool,
    typer.Option(
        "--matched",
        help="Also each branch's band power over its matched input (the same branch with "
        "identity attention): what the attention itself changes per band (matched_ratio_* in "
        "per_image.csv and a table; up to about +20% on top of the default analysis).",
    ),
]
TransferOpt = Annotated[
    bool,
    typer.Option(
        "--transfer",
        help="Also each head's transfer curve: the gain of its attention, as a spatial filter, "
        "against frequency (transfer.png, results.transfer_curves; up to about +10% on top of "
        "the default analysis).",
    ),
]
CompileOpt = Annotated[
    CompileChoice,
    typer.Option(
        "--compile",
        help="torch.compile the model forward. auto: only when the run has enough images to "
        f"repay the compile time (CUDA: {CUDA_COMPILE_MIN_IMAGES}, estimated; CPU: never on "
        "Linux/glibc, where hilo keeps freed memory and compiling was measured no faster, "
        f"else {CPU_COMPILE_MIN_IMAGES}) and one image size; on: always (an error when "
        "torch.compile cannot work here); off: never.",
    ),
]
ControlSeedsOpt = Annotated[
    int,
    typer.Option(
        "--control-seeds",
        help="Random inits in --control random (seeds --seed+1 .. --seed+N, never --seed); "
        "each costs one more forward per image. The rank test needs 19 for alpha 0.05.",
    ),
]


def spectrum(
    inputs: InputsArg,
    layer: LayerOpt = None,
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
    batch_size: BatchOpt = 16,
    workers: WorkersOpt = None,
    device: DeviceOpt = DeviceChoice.auto,
    dtype: DtypeOpt = DtypeChoice.auto,
    tf32: TF32Opt = False,
    compile: CompileOpt = CompileChoice.auto,
    limit: LimitOpt = None,
    out: OutOpt = Path("hilo-out"),
    as_json: JsonOpt = False,
    fmt: FormatOpt = FigureFormat.png,
    mode: ModeOpt = SpectrumMode.stats,
    control: ControlOpt = ControlChoice.none,
    control_seeds: ControlSeedsOpt = 19,
    groups: GroupsOpt = None,
    cutoff: CutoffOpt = 0.25,
    boundary: BoundaryOpt = Boundary.hann,
    alpha: AlphaOpt = 0.05,
    margin: MarginOpt = 0.05,
    depth: DepthOpt = False,
    matched: MatchedOpt = False,
    transfer: TransferOpt = False,
    seed: SeedOpt = 0,
    window_sizes: WindowOpt = None,
    head_dim: HeadDimOpt = None,
) -> None:
    """Measure which spatial frequencies Hi-Fi and Lo-Fi outputs carry, and test the claim that
    Hi-Fi has a larger share of its power at high frequencies than Lo-Fi (paired over source
    scenes)."""

    from hilocli.commands._run import run_and_write
    from hilocli.spectrum import SpectrumRequest, render, run

    request = SpectrumRequest(
        inputs=tuple(inputs),
        weights=weights_request(locals(), default_pretrained=True),
        layers=layer,
        resolution=resolution,
        crop=not no_crop,
        batch_size=batch_size,
        workers=workers,
        device=device.value,
        limit=limit,
        out=out,
        mode=mode.value,
        control=control.value,
        control_seeds=control_seeds,
        groups=groups,
        cutoff=cutoff,
        boundary=boundary.value,
        alpha=alpha,
        margin=margin,
        depth=depth,
        matched=matched,
        transfer=transfer,
        dtype=dtype.value,
        tf32=tf32,
        compile=compile.value,
    ).validate()
    run_and_write("spectrum", "images", run, request, render, out, fmt.value, as_json)
