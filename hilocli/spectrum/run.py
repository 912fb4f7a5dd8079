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

from hilocli.errors import HiloError, UsageError
from hilocli.output import InputsRecord, RunRecord
from hilocli.spectrum.collect import LayerSpectra
from hilocli.spectrum.measures import VERDICT_METRIC, SpectrumSettings
from hilocli.spectrum.stats import LayerVerdict
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
    cutoff: float = 0.25
    hann: bool = False
    dtype: str = "auto"  # precision of the forward (hilocli.runtime.resolve_precision)
    tf32: bool = False

    @property
    def seed(self) -> int:
        return self.weights.seed

    def settings(self) -> SpectrumSettings:
        return SpectrumSettings(cutoff=self.cutoff, hann=self.hann)

    def validate(self) -> SpectrumRequest:
        """UsageError for a bad option, before any file is read or model built."""
        from hilocli.models.geometry import check_input_size
        from hilocli.runtime import check_dtype

        if not self.inputs:
            raise UsageError("give at least one image file or folder")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
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
        self.settings()  # --cutoff
        check_dtype(self.dtype, self.device)
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
            "seed": self.seed,
        }


@dataclass
class ControlResult:
    """The same measurement on a random init of the same architecture (`--control random`)."""

    weights: Any  # hilocli.checkpoint.Provenance
    layers: list[LayerSpectra]
    verdicts: list[LayerVerdict]
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": self.weights.to_dict(),
            "note": "random weights: these numbers concern the architecture, not a trained model",
            "layers": layer_results(self.layers, self.verdicts),
            "verdict": self.verdict,
        }


@dataclass
class SpectrumResult:
    request: SpectrumRequest
    settings: SpectrumSettings
    model_name: str
    weights: Any  # hilocli.checkpoint.Provenance
    resolution: int
    device: str
    layers: list[LayerSpectra]
    verdicts: list[LayerVerdict]
    verdict: str  # the summary line
    inputs: InputsRecord
    environment: dict[str, Any]
    shown: list[Any] = field(default_factory=list)  # PIL images as the model saw them (<= 16)
    control: ControlResult | None = None
    precision: dict[str, Any] = field(default_factory=dict)  # Precision.to_dict()

    def settings_dict(self) -> dict[str, Any]:
        return {
            **self.precision,
            **self.settings.to_dict(),
            **self.request.to_dict(),
            "layers": [s.layer.index for s in self.layers],
            "resolution": self.resolution,
            "verdict_metric": VERDICT_METRIC,
            "device": self.device,
        }

    def to_record(self, files: dict[str, str] | None = None) -> RunRecord:
        results = {
            "model": self.model_name,
            "layers": layer_results(self.layers, self.verdicts),
            "verdict": self.verdict,
            "random_control": None if self.control is None else self.control.to_dict(),
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


def layer_results(layers: list[LayerSpectra], verdicts: list[LayerVerdict]) -> list[dict]:
    return [{**s.to_dict(), "verdict": v.to_dict()} for s, v in zip(layers, verdicts)]


def choose_layers(model, spec: str | None) -> list[int]:
    """`--layer` indices; by default every HiLo layer with both a Hi-Fi and a Lo-Fi branch (all of
    stage 3 in released models): the only layers where the claim can be tested."""
    from hilocli.weights import parse_layers

    infos = model.hilo_layers()
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

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = create_model(loaded.model.cfg).to(device)
    prov = Provenance(source="random init", variant=loaded.provenance.variant, seed=seed)
    return LoadedModel(model=net, provenance=prov, name=loaded.name)


@dataclass
class Measured:
    """What one pass over the images gave: per model, the layers' spectra."""

    spectra: list[list[LayerSpectra]]  # one list per model, in the order given
    analysed: list[str]  # paths, in the order fed to the models
    skipped: list[tuple[Path, str]]  # (path, the loader's reason)
    shown: list[Any]  # up to MAX_SHOWN PIL images as the models saw them


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
    precision: Any = None,
) -> Measured:
    """Decode `paths` batch by batch and feed every batch to each model's collector."""
    import torch

    from hilocli.runtime import forward_context, resolve_precision, to_device
    from hilocli.spectrum.collect import SpectrumCollector, decode_chunks

    precision = precision or resolve_precision("float32", device)

    analysed: list[str] = []
    skipped: list[tuple[Path, str]] = []
    shown: list[Any] = []
    done = 0
    with ExitStack() as stack:
        cols = [stack.enter_context(SpectrumCollector(m, layers, settings)) for m in models]
        for chunk in decode_chunks(paths, resolution, crop, batch_size):
            skipped += chunk.skipped
            for group in chunk.groups:
                x = to_device(torch.stack([p.tensor for p in group]), device)  # (B, 3, H, W)
                with forward_context(precision):
                    for col in cols:
                        col.add_batch(x)
                analysed += [str(p.path) for p in group]
                shown += [p.display for p in group][: MAX_SHOWN - len(shown)]
            done += chunk.files
            if progress is not None:
                progress(done, len(paths))
    if not analysed:
        raise HiloError(
            f"none of the {len(paths)} files could be read as an image (first: {skipped[0][1]})"
        )
    return Measured([col.finish() for col in cols], analysed, skipped, shown)


def run(request: SpectrumRequest, progress: Progress | None = None) -> SpectrumResult:
    """Measure the chosen layers over the inputs and judge the claim (see the module docstring)."""
    from hilocli.images import collect_inputs
    from hilocli.models.geometry import check_input_size
    from hilocli.runtime import environment, resolve_device, resolve_precision
    from hilocli.spectrum.stats import judge, summary_line

    request.validate()
    settings = request.settings()
    found = collect_inputs(request.inputs, exclude=(request.out,) if request.out else ())
    paths = found.files[: request.limit]
    if not paths:
        raise HiloError("no image files found in " + ", ".join(map(str, request.inputs)))
    device = resolve_device(request.device)
    # auto = float32 on every device: bfloat16 rounding swamps the Lo-Fi output's small
    # non-DC power (measured in docs/benchmarks.md); bfloat16/float16 only when asked for
    precision = resolve_precision(request.dtype, device, request.tf32, auto="float32")
    loaded = request.weights.load(device)
    resolution = request.resolution or loaded.model.cfg.img_size
    check_input_size(resolution, resolution, loaded.model.min_input_size())
    layers = choose_layers(loaded.model, request.layers)
    twin = random_twin(loaded, request.seed, device) if request.control == "random" else None
    models = [m.model for m in (loaded, twin) if m is not None]
    done = measure(
        models,
        layers,
        settings,
        paths,
        resolution,
        request.crop,
        request.batch_size,
        device,
        progress,
        precision,
    )

    verdicts = judge(done.spectra[0], settings)
    verdict = summary_line(verdicts, loaded.provenance.trained, loaded.provenance.describe())
    control = None
    if twin is not None:
        twin_verdicts = judge(done.spectra[1], settings)
        control = ControlResult(
            twin.provenance,
            done.spectra[1],
            twin_verdicts,
            summary_line(twin_verdicts, False, twin.provenance.describe()),
        )
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
        verdicts=verdicts,
        verdict=verdict,
        inputs=inputs,
        environment=environment(device),
        shown=done.shown,
        control=control,
        precision=precision.to_dict(),
    )
