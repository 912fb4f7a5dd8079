"""`hilo spectrum` as one call: `run(SpectrumRequest) -> SpectrumResult`.

    request = SpectrumRequest(inputs=(Path("samples"),), weights=WeightsRequest(...))
    result = run(request)            # validates, loads, measures, judges; prints nothing
    record = result.to_record()      # the RunRecord written as spectrum.json

Order of work: options are validated (usage errors) before any file is read; then the inputs are
listed and de-duplicated, the weights loaded, the layers chosen, and only then images decoded.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hilocli.errors import UsageError
from hilocli.output import InputsRecord, RunRecord
from hilocli.scenes import SceneGroups
from hilocli.spectrum.collect import LayerSpectra
from hilocli.spectrum.control import DEFAULT_CONTROL_SEEDS, ControlResult
from hilocli.spectrum.measures import SpectrumSettings
from hilocli.spectrum.stats import DEFAULT_ALPHA, DEFAULT_MARGIN, Judged, Verdict
from hilocli.spectrum.sweep import Progress, listed_inputs, measure
from hilocli.weights import WeightsRequest

MODES = ("stats", "paper")
CONTROLS = ("none", "random")


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
    out: Path | None = None  # where the files go (hilo's own files are never read as inputs)
    mode: str = "stats"  # "stats" | "paper" (also the authors' 8-channel figure)
    control: str = "none"  # "none" | "random" (repeat on a random init: the architecture's prior)
    control_seeds: int = DEFAULT_CONTROL_SEEDS  # random inits in the control: seed+1 .. seed+N
    groups: Path | None = None  # CSV (path, group) of source scenes; None: perceptual hash
    cutoff: float = 0.25
    boundary: str = "hann"  # "hann" (Hann-windowed periodogram) | "none" (plain periodogram)
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
        from hilocli.compilation import check_compile
        from hilocli.models.geometry import check_input_size
        from hilocli.runtime import check_dtype

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
        if not 1 <= self.control_seeds <= 1000:
            raise UsageError(f"--control-seeds must lie in 1..1000, got {self.control_seeds}")
        if self.groups is not None and not self.groups.is_file():
            raise UsageError(f"--groups: no such file: {self.groups}")
        self.settings()  # --cutoff and --boundary: SpectrumSettings' own checks, one wording
        check_dtype(self.dtype, self.device)
        check_compile(self.compile)
        self.weights.validate()
        if self.control == "random":  # seeds --seed+1 .. --seed+N must be seeds too
            from hilocli.weights import check_seed

            check_seed(self.seed + self.control_seeds, "--seed plus --control-seeds")
        return self

    def seeds_of_control(self) -> list[int]:
        """The random inits' seeds (none without --control random)."""
        return control_seeds(self.seed, self.control_seeds) if self.control == "random" else []

    def to_dict(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "crop": self.crop,
            "batch_size": self.batch_size,
            "limit": self.limit,
            "mode": self.mode,
            "control": self.control,
            "control_seeds": self.seeds_of_control(),
            "seed": self.seed,
            "boundary": self.boundary,
            "groups": None if self.groups is None else str(self.groups),
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
    judged: Judged  # tested layers, deltas per image and scene, verdict, sensitivity, line
    scenes: SceneGroups  # which analysed image belongs to which source scene
    blank: np.ndarray  # (n_images,) bool: no spatial content (excluded from the verdict)
    inputs: InputsRecord
    environment: dict[str, Any]
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

    @property
    def tested(self) -> list[int]:
        return self.judged.tested

    @property
    def deltas(self) -> np.ndarray:
        return self.judged.deltas

    @property
    def verdict(self) -> Verdict | None:
        return self.judged.verdict

    @property
    def verdict_line(self) -> str:
        return self.judged.line

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
            "n_images": self.n,
            "n_scenes": self.scenes.n_groups,
            "n_blank": int(self.blank.sum()),
            "scenes": self.scenes.to_dict(),
            "tested_layers": self.tested,
            "per_image": {  # the values themselves: one CSV row per image, weights, layer, branch
                "file": export.FILE_NAME,
                "columns": list(export.COLUMNS),
            },
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
            "verdict_sensitivity": None
            if self.judged.sensitivity is None
            else self.judged.sensitivity.to_dict(),
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


def choose_layers(loaded, spec: str | None) -> list[int]:
    """`--layer` indices; by default every HiLo layer with both a Hi-Fi and a Lo-Fi branch (all of
    stage 3 in released models): the only layers where the claim can be tested."""
    from hilocli.weights import parse_layers

    if spec is not None:
        return parse_layers(spec, len(loaded.layers))
    layers = [layer.index for layer in loaded.layers if layer.info.has_both]
    if not layers:
        raise UsageError(
            "this model has no HiLo layer with both a Hi-Fi and a Lo-Fi branch "
            "(alpha 0 or 1, or window size 1 everywhere); pass --layer to measure "
            "the branches it has"
        )
    return layers


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
    from hilocli.compilation import compile_as, compile_errors, maybe_compile
    from hilocli.distributed import agree, from_main, placement, process_group, rank_device
    from hilocli.inputs import fit_inputs
    from hilocli.models.geometry import check_input_size
    from hilocli.runtime import environment, resolve_device, resolve_precision
    from hilocli.scenes import read_groups, scenes_from_file, scenes_from_hashes
    from hilocli.spectrum.control import judge_control
    from hilocli.spectrum.stats import judge
    from hilocli.weights import random_init_like

    request.validate()
    # what is alive now (torch's and hilo's modules, hundreds of thousands of objects) stays:
    # frozen, Python's full collections (during matplotlib's import, the figures and at exit)
    # no longer walk it; reference counting still frees anything of it that is dropped
    gc.freeze()
    settings = request.settings()
    where = placement()
    device = rank_device(resolve_device(request.device), where)
    workers = default_workers(where, device) if request.workers is None else request.workers
    # auto = float32 on every device: bfloat16 rounding swamps the Lo-Fi output's small
    # non-DC power (measured in docs/benchmarks.md); bfloat16/float16 only when asked for
    precision = resolve_precision(request.dtype, device, request.tf32, auto="float32")
    with process_group(where, device):
        if found is None:
            found, paths = listed_inputs(where, request.inputs, request.limit)
        else:
            paths = found.files[: request.limit]
        if request.groups is not None:  # a malformed or incomplete --groups file: before decoding
            read_groups(request.groups, [str(p) for p in paths])
        if loaded is None:
            loaded = agree(where, lambda: request.weights.load(device))
        n_images, same_size = len(paths), request.crop  # --no-crop: each image keeps its size
        _, compile_decision = maybe_compile(
            loaded.model, request.compile, n_images, device, same_size
        )
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
        # torch.compile compiles at the first forward: its failures as one HiloError line
        done = compile_errors(compile_decision)(measure)(
            [loaded, *twins],
            layers,
            settings,
            paths,
            resolution,
            request.crop,
            request.batch_size,
            device,
            progress,
            precision=precision,
            preprocess=loaded.preprocess,
            workers=workers,
            where=where,
        )
    if done is None:  # a rank other than 0: rank 0 judges, draws and writes
        return None
    for layer in (s for spectra in done.spectra for s in spectra):
        layer.blank = done.blank  # the branches' power shares leave flat images out
    scenes = (
        scenes_from_hashes(done.hashes, done.analysed)
        if request.groups is None
        else scenes_from_file(request.groups, done.analysed)
    )
    judged = judge(done.spectra[0], request, loaded.provenance, scenes, done.blank)
    control = None
    if twins:
        control = judge_control(judged, done.spectra[1:], twins, request, scenes.labels, done.blank)
    inputs = InputsRecord(
        analysed=done.analysed,
        skipped=[
            {"path": str(p), "reason": r} for p, r in [*found.skipped, *too_big, *done.skipped]
        ],
        duplicates=[{"path": str(p), "same_as": str(q)} for p, q in found.duplicates],
        transparent=[str(p) for p in found.transparent if str(p) in done.analysed],
    )
    return SpectrumResult(
        request=request,
        settings=settings,
        model_name=loaded.name,
        weights=loaded.provenance,
        resolution=resolution,
        device=str(device),
        layers=done.spectra[0],
        judged=judged,
        scenes=scenes,
        blank=done.blank,
        inputs=inputs,
        environment=environment(device),
        control=control,
        depth=done.depth,
        precision=precision.to_dict(),
        control_layers=done.spectra[1:],
        sha256={str(p): d for p, d in found.sha256.items()},
        processes={"workers": workers, **where.to_dict()},
        compile_decision=compile_decision.to_dict(),
    )
