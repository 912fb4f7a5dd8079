"""`hilo spectrum` as one call: `run(SpectrumRequest) -> SpectrumResult`.

    request = SpectrumRequest(inputs=(Path("samples"),), weights=WeightsRequest(...))
    result = run(request)            # validates, loads, measures, judges; prints nothing
    record = result.to_record()      # the RunRecord written as spectrum.json

Order of work: options are validated (usage errors) before any file is read; then the inputs are
listed and de-duplicated, the weights loaded, the layers chosen, and only then images decoded.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hilocli.errors import HiloError, UsageError
from hilocli.output import InputsRecord, RunRecord
from hilocli.spectrum.collect import LayerSpectra
from hilocli.spectrum.measures import SpectrumSettings
from hilocli.spectrum.stats import DEFAULT_ALPHA, DEFAULT_MARGIN, ControlResult, Verdict
from hilocli.weights import WeightsRequest

MODES = ("stats", "paper")
CONTROLS = ("none", "random")
MAX_SHOWN = 16  # images kept for the montage

Progress = Callable[[int, int], None]  # (files done, files in total)


@dataclass(frozen=True)
class SpectrumRequest:
    inputs: tuple[Path, ...]  # image files and/or folders (read recursively)
    weights: WeightsRequest = field(default_factory=lambda: WeightsRequest(default_pretrained=True))
    layers: str | None = None  # --layer spec; None: every layer with both branches
    resolution: int | None = None  # None: the weights' training size
    crop: bool = True
    batch_size: int = 16
    device: str = "auto"
    limit: int | None = None  # at most this many distinct files (after sorting)
    out: Path | None = None  # never read inputs from here
    mode: str = "stats"  # "stats" | "paper" (also the authors' 8-channel figure)
    control: str = "none"  # "none" | "random" (repeat on a random init: the architecture's prior)
    control_seeds: int = 5  # random inits in the control, seeds seed+1 .. seed+N
    cutoff: float = 0.25
    boundary: str = "smooth"  # "smooth" (Moisan) | "hann" | "none"
    alpha: float = DEFAULT_ALPHA
    margin: float = DEFAULT_MARGIN
    depth: bool = False  # Park & Kim's depth curve over every block (main model only)
    matched: bool = False  # matched_ratio_*: each branch over its identity-attention input
    transfer: bool = False  # per-head transfer curves (results.transfer_curves, transfer.png)
    dtype: str = "auto"  # precision of the forward (hilocli.runtime.resolve_precision)
    tf32: bool = False
    workers: int | None = None  # decoding processes; None: hilocli.batches.default_workers
    compile: str = "auto"  # torch.compile of the forward: off | on | auto (hilocli.runtime)

    @property
    def seed(self) -> int:
        return self.weights.seed

    def settings(self) -> SpectrumSettings:
        return SpectrumSettings(
            cutoff=self.cutoff,
            boundary=self.boundary,
            significance=self.alpha,
            margin=self.margin,
            depth=self.depth,
            matched=self.matched,
            transfer=self.transfer,
        )

    def validate(self) -> SpectrumRequest:
        """UsageError for a bad option, before any file is read or model built."""
        from hilocli.models.geometry import check_input_size
        from hilocli.runtime import check_compile, check_dtype

        if not self.inputs:
            raise UsageError("give at least one image file or folder")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.workers is not None and not 0 <= self.workers <= 64:
            raise UsageError(f"--workers must lie in 0..64, got {self.workers}")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit must be >= 1, got {self.limit}")
        if self.resolution is not None:
            check_input_size(self.resolution, self.resolution)
        if self.mode not in MODES:
            raise UsageError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.control not in CONTROLS:
            raise UsageError(
                f"--control must be one of {', '.join(CONTROLS)}, got {self.control!r}"
            )
        if not 0.0 < self.alpha < 0.5:
            raise UsageError(f"--alpha must lie strictly between 0 and 0.5, got {self.alpha}")
        if not 0.0 <= self.margin < 1.0:
            raise UsageError(f"--margin must lie in [0, 1), got {self.margin}")
        if not 1 <= self.control_seeds <= 100:
            raise UsageError(f"--control-seeds must lie in 1..100, got {self.control_seeds}")
        self.settings()  # --cutoff and --boundary: SpectrumSettings' own checks, one wording
        check_dtype(self.dtype, self.device)
        check_compile(self.compile)
        self.weights.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "crop": self.crop,
            "batch_size": self.batch_size,
            "limit": self.limit,
            "mode": self.mode,
            "control": self.control,
            "control_seeds": control_seeds(self.seed, self.control_seeds)
            if self.control == "random"
            else [],
            "seed": self.seed,
            "boundary": self.boundary,
            "alpha": self.alpha,
            "margin": self.margin,
        }


def control_seeds(seed: int, count: int) -> list[int]:
    """Seeds of the random-init control: seed+1 .. seed+count, so never the main model's seed
    (also when the main model is itself a random init)."""
    return [seed + 1 + k for k in range(count)]


@dataclass
class SpectrumResult:
    request: SpectrumRequest
    settings: SpectrumSettings
    model_name: str
    weights: Any  # hilocli.checkpoint.Provenance
    resolution: int
    device: str
    layers: list[LayerSpectra]
    tested: list[int]  # indices of the layers in the verdict (both branches present)
    deltas: np.ndarray  # (n_images, n_tested) Hi-Fi minus Lo-Fi content hf fraction
    verdict: Verdict | None  # None: no tested layer
    verdict_line: str
    inputs: InputsRecord
    environment: dict[str, Any]
    shown: list[Any] = field(default_factory=list)  # PIL images as the model saw them (<= 16)
    control: ControlResult | None = None
    depth: Any = None  # hilocli.spectrum.depth.DepthCurve with --depth
    precision: dict[str, Any] = field(default_factory=dict)  # Precision.to_dict()
    control_layers: list[list[LayerSpectra]] = field(default_factory=list)  # per control seed
    sha256: dict[str, str] = field(default_factory=dict)  # analysed path -> content SHA-256
    processes: dict[str, Any] = field(default_factory=dict)  # workers, world size, launcher
    compile_decision: dict[str, Any] = field(default_factory=dict)  # CompileDecision.to_dict()

    @property
    def n(self) -> int:
        return len(self.inputs.analysed)

    def settings_dict(self) -> dict[str, Any]:
        return {
            **self.precision,
            **self.settings.to_dict(),
            **self.request.to_dict(),
            "layers": [s.layer.index for s in self.layers],
            "tested_layers": self.tested,
            "resolution": self.resolution,
            "device": self.device,
            **self.processes,
            "compile": self.compile_decision,
        }

    def to_record(self, files: dict[str, str] | None = None) -> RunRecord:
        from hilocli.spectrum import export

        results = {
            "model": self.model_name,
            "n": self.n,
            "tested_layers": self.tested,
            "per_image": {  # the values themselves: one CSV row per image, weights, layer, branch
                "file": export.FILE_NAME,
                "columns": list(export.COLUMNS),
            },
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
            "verdict_line": self.verdict_line,
            "layers": [s.to_dict() for s in self.layers],
            "random_control": None if self.control is None else self.control.to_dict(),
            "depth_curve": None if self.depth is None else self.depth.to_dict(),
            "transfer_curves": transfer_curves(self.layers) if self.settings.transfer else None,
        }
        return RunRecord(
            command="spectrum",
            settings=self.settings_dict(),
            weights=self.weights.to_dict(),
            environment=self.environment,
            results=results,
            inputs=self.inputs,
            files=dict(files or {}),
        )


def transfer_curves(layers: list[LayerSpectra]) -> list[dict[str, Any]]:
    """results.transfer_curves: per measured layer its index, name and transfer curves."""
    return [
        {"index": s.layer.index, "name": s.layer.name, **s.transfer}
        for s in layers
        if s.transfer is not None
    ]


def choose_layers(model, spec: str | None) -> list[int]:
    """`--layer` indices; by default every HiLo layer with both a Hi-Fi and a Lo-Fi branch (all of
    stage 3 in released models): the only layers where the claim can be tested."""
    from hilocli.models.discover import hilo_layers
    from hilocli.weights import parse_layers

    infos = hilo_layers(model)
    if spec is not None:
        return parse_layers(spec, len(infos))
    layers = [info.index for info in infos if info.has_both]
    if not layers:
        raise UsageError(
            "this model has no HiLo layer with both a Hi-Fi and a Lo-Fi branch "
            "(alpha 0 or 1, or window size 1 everywhere); pass --layer to measure "
            "the branches it has"
        )
    return layers


def random_twin(loaded, seed: int, device):
    """A seeded random init of `loaded`'s architecture (the control): a LoadedModel."""
    import torch

    from hilocli.checkpoint import LoadedModel, Provenance
    from hilocli.models import create_model
    from hilocli.models.onednn import keep_weights_packed

    source = getattr(loaded.provenance, "model_source", None)
    if source is not None:  # a user model: its own function, seeded
        from hilocli.usermodel import UserProvenance, build

        net = build(source, seed).eval().to(device)
        return LoadedModel(net, UserProvenance(source, seed=seed), loaded.name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = keep_weights_packed(create_model(loaded.model.cfg).to(device))  # as `load` does
    prov = Provenance(source="random init", variant=loaded.provenance.variant, seed=seed)
    return LoadedModel(model=net, provenance=prov, name=loaded.name)


@dataclass
class Measured:
    """What one pass over the images gave: per model, the layers' spectra."""

    spectra: list[list[LayerSpectra]]  # one list per model, in the order given
    analysed: list[str]  # paths, in the order fed to the models
    skipped: list[tuple[Path, str]]  # (path, the loader's reason)
    shown: list[Any]  # up to MAX_SHOWN PIL images as the models saw them
    depth: Any = None  # the first model's DepthCurve when settings.depth


@dataclass
class _Shard:
    """What one process fed its collectors (keys order images as a single process would)."""

    keys: list[tuple[int, int]] = field(default_factory=list)  # one per batch
    analysed: list[tuple[tuple[int, int, int], str]] = field(default_factory=list)
    skipped: list[tuple[tuple[int, int], tuple[Path, str]]] = field(default_factory=list)
    shown: list[tuple[tuple[int, int, int], Any]] = field(default_factory=list)


def measure(
    models: list[Any],
    layers: list[int],
    settings: SpectrumSettings,
    paths: list[Path],
    resolution: int,
    crop: bool,
    batch_size: int,
    device: Any,
    progress: Progress | None = None,
    preprocess=None,  # a user model's --mean/--std (None: the released preprocessing)
    precision: Any = None,
    workers: int = 0,
    where: Any = None,  # hilocli.distributed.Placement; None: one process
) -> Measured | None:
    """Decode `paths` (hilocli.batches: `workers` processes) and feed every batch to each model's
    collector. Several processes: each measures its chunks, rank 0 gathers and merges them and
    returns the result; the other ranks return None."""
    import torch

    from hilocli.batches import image_chunks, shard_files
    from hilocli.distributed import SINGLE, agree, gather, ordered
    from hilocli.runtime import forward_context, resolve_precision, to_device
    from hilocli.spectrum.collect import SpectrumCollector
    from hilocli.spectrum.shards import collector_part, merge_parts

    precision = precision or resolve_precision("float32", device)
    where = where or SINGLE
    cuda = getattr(device, "type", None) == "cuda"
    with ExitStack() as stack:
        cols = [stack.enter_context(SpectrumCollector(m, layers, settings)) for m in models]

        def feed() -> _Shard:
            mine, done = _Shard(), 0
            chunks = image_chunks(
                paths, resolution, crop, batch_size, preprocess, workers=workers,
                pin_memory=cuda, where=where, keep_displays=MAX_SHOWN,
            )  # fmt: skip
            total = shard_files(len(paths), batch_size, where)  # this process's files
            for chunk in chunks:
                mine.skipped += [((chunk.index, j), s) for j, s in enumerate(chunk.skipped)]
                for group in chunk.groups:
                    x = to_device(group.x, device)  # (B, 3, H, W)
                    with forward_context(precision), torch.no_grad():
                        for col in cols:
                            col.add_batch(x)
                    mine.keys.append(group.key)
                    mine.analysed += [((*group.key, i), str(p)) for i, p in enumerate(group.paths)]
                    mine.shown += [
                        ((*group.key, i), d) for i, d in enumerate(group.displays) if d is not None
                    ]
                done += chunk.files
                if progress is not None:
                    progress(done, total)
            return mine

        shards = [agree(where, feed)]
        if where.distributed:
            parts = gather(where, (shards[0], [collector_part(c, shards[0].keys) for c in cols]))
            if parts is None:  # not rank 0: its share is sent
                return None
            for k, col in enumerate(cols):
                merge_parts(col, [p[1][k] for p in parts])
            shards = [p[0] for p in parts]
        analysed = ordered([s.analysed for s in shards])
        skipped = ordered([s.skipped for s in shards])
        shown = ordered([s.shown for s in shards])[:MAX_SHOWN]
        if not analysed:
            raise HiloError(
                f"none of the {len(paths)} files could be read as an image (first: {skipped[0][1]})"
            )
        depth = cols[0].depth_curve() if settings.depth else None
    return Measured([col.finish() for col in cols], analysed, skipped, shown, depth)


def listed_inputs(where: Any, inputs: tuple[Path, ...], out: Path | None, limit: int | None):
    """(InputSet, files to analyse) of a run's inputs: listed and hashed on rank 0 alone and
    handed to every rank (`hilo spectrum`, `hilo compare`); none at all is a HiloError on every
    rank together. `out` (the run's --out) is never read."""
    from hilocli.distributed import from_main
    from hilocli.images import collect_inputs

    found = from_main(where, lambda: collect_inputs(inputs, exclude=(out,) if out else ()))
    paths = found.files[:limit]
    if not paths:
        raise HiloError("no image files found in " + ", ".join(map(str, inputs)))
    return found, paths


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
    from hilocli.batches import default_workers
    from hilocli.distributed import agree, placement, process_group, rank_device
    from hilocli.models.geometry import check_input_size
    from hilocli.runtime import (
        compile_as,
        compile_errors,
        environment,
        maybe_compile,
        resolve_device,
        resolve_precision,
    )
    from hilocli.spectrum.stats import judge, judge_control

    request.validate()
    settings = request.settings()
    where = placement()
    device = rank_device(resolve_device(request.device), where)
    workers = default_workers(where, device) if request.workers is None else request.workers
    # auto = float32 on every device: bfloat16 rounding swamps the Lo-Fi output's small
    # non-DC power (measured in docs/benchmarks.md); bfloat16/float16 only when asked for
    precision = resolve_precision(request.dtype, device, request.tf32, auto="float32")
    with process_group(where, device):
        if found is None:
            found, paths = listed_inputs(where, request.inputs, request.out, request.limit)
        else:
            paths = found.files[: request.limit]
        if loaded is None:
            loaded = agree(where, lambda: request.weights.load(device))
        n_images, same_size = len(paths), request.crop  # --no-crop: each image keeps its size
        _, compile_decision = maybe_compile(
            loaded.model, request.compile, n_images, device, same_size
        )
        cfg = getattr(loaded.model, "cfg", None)  # None: a user model (--model-fn / --hub)
        resolution = request.resolution or (cfg.img_size if cfg else 224)
        check_input_size(resolution, resolution, loaded.model.min_input_size() if cfg else 1)
        layers = choose_layers(loaded.model, request.layers)
        twins = []
        if request.control == "random":
            seeds = control_seeds(request.seed, request.control_seeds)
            twins = [random_twin(loaded, s, device) for s in seeds]
            for twin in twins:
                compile_as(twin.model, compile_decision)
        # torch.compile compiles at the first forward: its failures as one HiloError line
        done = compile_errors(compile_decision)(measure)(
            [loaded.model, *(t.model for t in twins)],
            layers,
            settings,
            paths,
            resolution,
            request.crop,
            request.batch_size,
            device,
            progress,
            precision=precision,
            preprocess=None if cfg else loaded.preprocess,
            workers=workers,
            where=where,
        )
    if done is None:  # a rank other than 0: rank 0 judges, draws and writes
        return None
    judged = judge(done.spectra[0], request, loaded.provenance)
    control = None
    if twins:
        control = judge_control(judged[1], done.spectra[1:], twins, request, loaded.provenance)
    inputs = InputsRecord(
        analysed=done.analysed,
        skipped=[{"path": str(p), "reason": r} for p, r in [*found.skipped, *done.skipped]],
        duplicates=[{"path": str(p), "same_as": str(q)} for p, q in found.duplicates],
    )
    return SpectrumResult(
        request=request,
        settings=settings,
        model_name=loaded.name,
        weights=loaded.provenance,
        resolution=resolution,
        device=str(device),
        layers=done.spectra[0],
        tested=judged[0],
        deltas=judged[1],
        verdict=judged[2],
        verdict_line=judged[3],
        inputs=inputs,
        environment=environment(device),
        shown=done.shown,
        control=control,
        depth=done.depth,
        precision=precision.to_dict(),
        control_layers=done.spectra[1:],
        sha256={str(p): d for p, d in found.sha256.items()},
        processes={"workers": workers, **where.to_dict()},
        compile_decision=compile_decision.to_dict(),
    )
