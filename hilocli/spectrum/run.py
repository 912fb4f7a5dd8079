"""`hilo spectrum` as one call: `run(SpectrumRequest) -> SpectrumResult`.

    request = SpectrumRequest(inputs=(Path("samples"),), weights=WeightsRequest(...))
    result = run(request)            # validates, loads, measures, judges; prints nothing
    record = result.to_record()      # the RunRecord written as spectrum.json

Order of work: options are validated (usage errors) before any file is read; then the inputs are
listed and de-duplicated, the weights loaded, the layers chosen, and only then images decoded.
The request lives in `request.py`, the result and its record in `result.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hilocli.batches import default_workers
from hilocli.compilation import compile_as, compile_errors, maybe_compile
from hilocli.distributed import agree, from_main, placement, process_group, rank_device
from hilocli.errors import UsageError
from hilocli.inputs import fit_inputs
from hilocli.models.geometry import check_input_size
from hilocli.option_lists import parse_layers
from hilocli.output import InputsRecord
from hilocli.runtime import environment, resolve_device, resolve_precision
from hilocli.scenes import SceneGroups, read_groups, scenes_from_file, scenes_from_hashes
from hilocli.spectrum.control import ControlResult, judge_control
from hilocli.spectrum.request import SpectrumRequest
from hilocli.spectrum.result import SpectrumResult
from hilocli.spectrum.stats import Judged, judge
from hilocli.spectrum.sweep import Measured, Progress, listed_inputs, measure
from hilocli.weights import random_init_like


def choose_layers(loaded, spec: str | None) -> list[int]:
    """`--layer` indices; by default every HiLo layer with both a Hi-Fi and a Lo-Fi branch (all of
    stage 3 in released models): the only layers where the claim can be tested. A model with
    no HiLo layer at all is one HiloError saying why (`LoadedModel.require_layers`)."""
    found = loaded.require_layers()
    if spec is not None:
        return parse_layers(spec, len(found))
    layers = [layer.index for layer in found if layer.info.has_both]
    if not layers:
        raise UsageError(
            "this model has no HiLo layer with both a Hi-Fi and a Lo-Fi branch "
            "(alpha 0 or 1, or window size 1 everywhere); pass --layer to measure "
            "the branches it has"
        )
    return layers


@dataclass(frozen=True)
class Prepared:
    """What a run has settled before it decodes an image: the files, the models, the size."""

    found: Any  # hilocli.inputs.InputSet: the inputs listed and hashed
    paths: list[Path]  # the files to analyse (the model can take each)
    too_big: list[tuple[Path, str]]  # (path, reason): files the model cannot take
    loaded: Any  # hilocli.loaded.LoadedModel: the weights under test
    twins: list[Any]  # LoadedModel: the random-init control's models (--control random)
    resolution: int
    layers: list[int]  # indices into each model's layers
    compile_decision: Any  # hilocli.runtime.CompileDecision


def prepare(request: SpectrumRequest, where, device, loaded: Any, found: Any) -> Prepared:
    """Inputs listed (rank 0 alone) unless `found` is given, weights loaded unless `loaded` is,
    the compile decided, the inputs the model cannot take set aside (from their headers), the
    layers chosen and the control's models built."""
    if found is None:
        found, paths = listed_inputs(where, request.inputs, request.limit)
    else:
        paths = found.files[: request.limit]
    if request.groups is not None:  # a malformed or incomplete --groups file: before decoding
        read_groups(request.groups, [str(p) for p in paths])
    if loaded is None:
        loaded = agree(where, lambda: request.weights.load(device))
    n_images, same_size = len(paths), request.crop  # --no-crop: each image keeps its size
    _, compile_decision = maybe_compile(loaded.model, request.compile, n_images, device, same_size)
    resolution = request.resolution or loaded.default_resolution
    check_input_size(resolution, resolution, loaded.min_input_size)
    paths, too_big = from_main(  # rank 0's headers and memory decide for every rank
        where, lambda: fit_inputs(found, paths, resolution, request.crop, loaded, device)
    )
    layers = choose_layers(loaded, request.layers)
    twins = []
    if request.control == "random":
        twins = [random_init_like(loaded, s, device) for s in request.seeds_of_control()]
        for twin in twins:
            compile_as(twin.model, compile_decision)
    return Prepared(found, paths, too_big, loaded, twins, resolution, layers, compile_decision)


def run(
    request: SpectrumRequest,
    progress: Progress | None = None,
    loaded: Any = None,
    found: Any = None,
) -> SpectrumResult | None:
    """Measure the chosen layers over the inputs and judge the claim (see the module docstring).
    Under torchrun/srun every process measures its share; rank 0 gets the result, the others
    None (hilocli.distributed). What a caller such as `hilo compare` already has, it passes:
    `loaded`, the request's weights loaded on the device (a `LoadedModel`), and `found`, the
    request's inputs listed and hashed (an `InputSet`); None does that here (the listing and
    hashing on rank 0 alone)."""
    request.validate()
    settings = request.settings()
    where = placement()
    device = rank_device(resolve_device(request.device), where)
    workers = default_workers(where, device) if request.workers is None else request.workers
    # auto = float32 on every device: bfloat16 rounding swamps the Lo-Fi output's small
    # non-DC power (measured in docs/benchmarks.md); bfloat16/float16 only when asked for
    precision = resolve_precision(request.dtype, device, request.tf32, auto="float32")
    with process_group(where, device):
        ready = prepare(request, where, device, loaded, found)
        done = sweep(request, ready, device, progress, precision, workers, where)
    if done is None:  # a rank other than 0: rank 0 judges, draws and writes
        return None
    scenes, verdict, control = judge_all(request, ready, done)
    return SpectrumResult(
        request=request,
        settings=settings,
        model_name=ready.loaded.name,
        weights=ready.loaded.provenance,
        resolution=ready.resolution,
        device=str(device),
        layers=done.spectra[0],
        judged=verdict,
        scenes=scenes,
        blank=done.blank,
        inputs=inputs_record(ready, done),
        environment=environment(device),
        control=control,
        depth=done.depth,
        precision=precision.to_dict(),
        control_layers=done.spectra[1:],
        sha256={str(p): d for p, d in ready.found.sha256.items()},
        processes={"workers": workers, **where.to_dict()},
        compile_decision=ready.compile_decision.to_dict(),
    )


def sweep(
    request: SpectrumRequest, ready: Prepared, device, progress, precision, workers: int, where
) -> Measured | None:
    """The one pass over the files: each chosen layer of the model and of its random inits
    (`hilocli.spectrum.sweep.measure`; None on a rank other than 0)."""
    # torch.compile compiles at the first forward: its failures as one HiloError line
    return compile_errors(ready.compile_decision)(measure)(
        [ready.loaded, *ready.twins],
        ready.layers,
        request.settings(),
        ready.paths,
        ready.resolution,
        request.crop,
        request.batch_size,
        device,
        progress,
        precision=precision,
        preprocess=ready.loaded.preprocess,
        workers=workers,
        where=where,
        stop_early=not ready.compile_decision.used,
    )


def judge_all(
    request: SpectrumRequest, ready: Prepared, done: Measured
) -> tuple[SceneGroups, Judged, ControlResult | None]:
    """The source scenes, the verdict over them, and the random control's judgement (None
    without --control random)."""
    for layer in (s for spectra in done.spectra for s in spectra):
        layer.blank = done.blank  # the branches' power shares leave flat images out
    scenes = (
        scenes_from_hashes(done.hashes, done.analysed)
        if request.groups is None
        else scenes_from_file(request.groups, done.analysed)
    )
    verdict = judge(done.spectra[0], request, ready.loaded.provenance, scenes, done.blank)
    control = None
    if ready.twins:
        control = judge_control(
            verdict, done.spectra[1:], ready.twins, request, scenes.labels, done.blank
        )
    return scenes, verdict, control


def inputs_record(ready: Prepared, done: Measured) -> InputsRecord:
    """What the run analysed, and every file left out with its reason."""
    found = ready.found
    return InputsRecord(
        analysed=done.analysed,
        skipped=[
            {"path": str(p), "reason": r}
            for p, r in [*found.skipped, *ready.too_big, *done.skipped]
        ],
        duplicates=[{"path": str(p), "same_as": str(q)} for p, q in found.duplicates],
        transparent=[str(p) for p in found.transparent if str(p) in done.analysed],
    )
