"""`hilo flops` as a function: `FlopsRequest` in, `FlopsResult` out (what the command and the
benchmarks call). Torch is imported only for `--count`, `--benchmark` and `--checkpoint`."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hilocli.errors import UsageError
from hilocli.flops.analytic import ModelCost, model_cost
from hilocli.flops.attention import (
    AttentionCost,
    SweepPoint,
    attention_comparison,
    attention_site,
    sweep,
)
from hilocli.flops.bench import BYTES_PER_ELEMENT, MIN_REPEATS, UNSTABLE_SPREAD, BenchResult
from hilocli.flops.cases import benchmark_cases
from hilocli.flops.conventions import CONVENTIONS, FVCORE, get_convention
from hilocli.flops.kernels import BACKENDS, PeakRuns, matmul_peak_at, mfu
from hilocli.models.config import LITv2Config
from hilocli.models.geometry import (
    MAX_INPUT_SIDE,
    check_input_size,
    min_input_size,
    requested_size,
)
from hilocli.output import RunRecord
from hilocli.runtime import Precision, check_dtype, resolve_precision
from hilocli.weights import WeightsRequest

if TYPE_CHECKING:
    from hilocli.flops.counted import CountedCost

NEVER_USES_WEIGHTS = "architecture only: flops never uses weight values"


def parse_tokens(text: str) -> tuple[int, int]:
    """'14x14' or '14' -> (14, 14); UsageError otherwise."""
    parts = text.lower().replace(" ", "").split("x")
    try:
        if len(parts) > 2:
            raise ValueError
        return int(parts[0]), int(parts[-1])
    except ValueError:
        raise UsageError(f"--tokens must look like HxW (e.g. 14x14), got {text!r}") from None


@dataclass(frozen=True)
class Architecture:
    cfg: LITv2Config  # with --alpha / --window applied
    name: str
    weights: dict[str, Any]  # the run record's `weights` block


@dataclass(frozen=True)
class FlopsRequest:
    model: str | None = None
    checkpoint: Path | None = None  # read for its architecture only
    resolution: int | None = None
    height: int | None = None
    width: int | None = None
    alpha: float | None = None
    window: int | None = None
    dim: int | None = None  # attention comparison (default: the model's attention site)
    heads: int | None = None
    tokens: tuple[int, int] | None = None
    sweep: tuple[int, ...] | None = None
    convention: str = "authors"
    count: bool = False
    benchmark: bool = False
    device: str = "auto"
    batch_size: int = 1
    dtype: str = "auto"  # the forward's precision (--dtype; resolved by `precision()`)
    repeats: int = 10
    warmup: int = 3  # minimum warm-up runs; more until the times settle
    threads: int | None = None
    isolate: bool = True  # CPU benchmark cases each in a fresh process
    sdpa_backends: tuple[str, ...] = ("default",)  # each case once per forced SDPA backend

    @property
    def writes_files(self) -> bool:
        return self.sweep is not None

    def weights_request(self) -> WeightsRequest:
        return WeightsRequest(model=self.model, checkpoint=self.checkpoint)

    def precision(self, device: Any = None) -> Precision:
        """--dtype resolved as in every command (auto: bfloat16 on CUDA, float32 on the CPU)
        against `device`, the device the benchmark runs on. Without one (no model runs) against
        --device as named, `auto` counting as the CPU: resolving it would import torch. float16
        on the CPU is a UsageError."""
        if device is None:
            device = "cuda" if self.device == "cuda" else "cpu"
        return resolve_precision(self.dtype, device)

    def validate(self) -> FlopsRequest:
        """UsageError for any bad or conflicting option, before anything is loaded or built."""
        self.weights_request().validate()
        _check(
            self.convention in CONVENTIONS,
            f"--convention must be one of {', '.join(CONVENTIONS)}, got {self.convention!r}",
        )
        _check(self.device in ("auto", "cpu", "cuda"), "--device must be auto, cpu or cuda")
        check_dtype(self.dtype, self.device)
        if not self.benchmark:  # with --benchmark, `run` resolves against the device it finds
            self.precision()
        _check(self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}")
        _check(
            self.repeats >= MIN_REPEATS,
            f"--repeats must be >= {MIN_REPEATS} (a median and spread need them)",
        )
        _check(self.warmup >= 0, f"--warmup must be >= 0, got {self.warmup}")
        _check(
            bool(self.sdpa_backends) and set(self.sdpa_backends) <= set(BACKENDS),
            f"--sdpa-backends takes a comma list of {', '.join(BACKENDS)}",
        )
        _check(self.threads is None or self.threads >= 1, "--threads must be >= 1")
        _check(self.alpha is None or 0.0 <= self.alpha <= 1.0, "--alpha must lie in [0, 1]")
        _check(self.window is None or self.window >= 1, "--window must be >= 1")
        _check((self.dim is None) == (self.heads is None), "--dim and --heads go together")
        if self.dim is not None:
            _check(
                self.dim > 0 and self.heads > 0 and self.dim % self.heads == 0,
                f"--dim {self.dim} must be a positive multiple of --heads {self.heads}",
            )
        if self.tokens is not None:
            h, w = self.tokens
            _check(
                2 <= h <= MAX_INPUT_SIDE and 2 <= w <= MAX_INPUT_SIDE,
                f"--tokens {h}x{w} is out of range: each side must be 2..{MAX_INPUT_SIDE} "
                "tokens (SRA reduces the grid by 2)",
            )
        requested_size(self.resolution, self.height, self.width)  # the shared rule
        _check(self.sweep is None or len(self.sweep) > 0, "--sweep needs at least one resolution")
        # the architecture is known without loading anything unless a checkpoint gives it
        cfg = None if self.checkpoint is not None else self._variant_cfg()
        self.check_sizes(cfg)
        return self

    def _variant_cfg(self) -> LITv2Config:
        from hilocli.models import get_variant

        return self._adjusted(get_variant(self.model or "litv2_s").cfg)

    def _adjusted(self, cfg: LITv2Config) -> LITv2Config:
        changes: dict[str, Any] = {}
        if self.alpha is not None:
            changes["alpha"] = self.alpha
        if self.window is not None:
            changes["local_ws"] = tuple(self.window if ws > 1 else ws for ws in cfg.local_ws)
        return cfg.replace(**changes) if changes else cfg

    def input_size(self, cfg: LITv2Config | None) -> tuple[int, int] | None:
        """(height, width) in pixels; None while the architecture (default size) is unknown."""
        if self.height is not None:
            return self.height, self.width
        if self.resolution is not None:
            return self.resolution, self.resolution
        return None if cfg is None else (cfg.img_size, cfg.img_size)

    def check_sizes(self, cfg: LITv2Config | None) -> None:
        """Input size and sweep entries within the model's limits (1 px while `cfg` is unknown)."""
        smallest = 1 if cfg is None else min_input_size(cfg)
        size = self.input_size(cfg)
        if size is not None:
            check_input_size(*size, smallest)
        for r in self.sweep or ():
            try:
                check_input_size(r, r, smallest)
            except UsageError as exc:
                raise UsageError(f"--sweep entry {r}: {exc}") from None

    def architecture(self) -> Architecture:
        """The config (a checkpoint is loaded for it, its weights unused) and the weights block."""
        if self.checkpoint is None:
            cfg = self._variant_cfg()
            name = self.model or "litv2_s"
            weights = {
                "source": "architecture only",
                "variant": name,
                "trained": False,
                "description": f"{name} architecture, no weights loaded",
                "note": NEVER_USES_WEIGHTS,
            }
            return Architecture(cfg, name, weights)
        loaded = self.weights_request().load("cpu", progress=False)
        weights = {**loaded.provenance.to_dict(), "note": NEVER_USES_WEIGHTS}
        return Architecture(self._adjusted(loaded.model.cfg), loaded.name, weights)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


@dataclass(frozen=True)
class FlopsResult:
    request: FlopsRequest
    precision: Precision  # --dtype resolved: the benchmark's autocast and the bytes per element
    arch: Architecture
    model: ModelCost
    attention: list[AttentionCost]
    counted: CountedCost | None = None  # with --count
    bench: list[BenchResult] | None = None
    points: list[SweepPoint] | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    load_average: tuple[float, float] | None = None  # 1-min system load before/after benchmarks
    matmul_peak: PeakRuns | None = None  # measured before and after the cases (MFU denominator)

    @property
    def busy(self) -> bool:
        """Did other processes compete for the CPUs during the benchmarks?"""
        return self.load_average is not None and max(self.load_average) > (os.cpu_count() or 1)

    def results(self) -> dict[str, Any]:
        a0 = self.attention[0]
        out: dict[str, Any] = {
            "model": self.arch.name,
            "config": self.arch.cfg.to_dict(),
            **self.model.to_dict(),
            "attention": {
                "dim": a0.dim,
                "heads": a0.num_heads,
                "tokens": list(a0.grid),
                "batch_size": a0.batch_size,
                "dtype": self.precision.dtype,
                "bytes_per_element": BYTES_PER_ELEMENT[self.precision.dtype],
                "convention": FVCORE.to_dict(),
                "memory": "softmax weights of all heads for batch_size images at dtype bytes",
                "rows": [a.to_dict() for a in self.attention],
            },
        }
        if self.counted is not None:
            out["counted"] = self.counted.to_dict()
        if self.bench is not None:
            out["benchmark"] = {
                "protocol": "warm-up until the last 3 runs agree within 10%, then timed runs; "
                "median and spread = IQR / median of the run times",
                "unstable_above_spread": UNSTABLE_SPREAD,
                "load_average": self.load_average,
                "busy": self.busy,
                **self._peak_record(),
                "mfu": "2 x analytic MACs x images/s / the matmul peak of the dtype, the higher "
                "of the two measured before and after the cases",
                "results": [self._bench_row(b) for b in self.bench],
            }
        if self.points is not None:
            out["sweep"] = [p.to_dict() for p in self.points]
        return out

    def _peak_record(self) -> dict[str, Any]:
        p = self.matmul_peak
        if p is None:
            return {"matmul_peak_gflop_per_s": None}
        return {
            "matmul_peak_gflop_per_s": {p.dtype: p.gflop_per_s},
            "matmul_peak_runs_gflop_per_s": {p.dtype: list(p.runs)},
            "matmul_peak_moved": p.moved,
        }

    def _bench_row(self, b: BenchResult) -> dict[str, Any]:
        return {**b.to_dict(), "mfu": mfu(self.matmul_peak, b.gflop_per_s, b.case.dtype)}

    def to_record(self, files: dict[str, str] | None = None) -> RunRecord:
        return RunRecord(
            command="flops",
            settings={**asdict(self.request), **self.precision.to_dict()},
            weights=self.arch.weights,
            environment=self.environment,
            results=self.results(),
            files=dict(files or {}),
        )


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # not available on this platform
        return float("nan")


def _environment(device: Any = None) -> dict[str, Any]:
    """Versions and device; torch-free (and says so) when no model ran."""
    if "torch" in sys.modules:
        from hilocli.runtime import environment

        return environment(device)
    from hilocli import __version__

    return {
        "hilo": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "computation": "analytic: no model ran, torch not imported",
    }


def run(request: FlopsRequest, progress: Callable[[str], None] | None = None) -> FlopsResult:
    """Analytic counts; with the request's flags also torch's counted FLOPs, benchmarks and the
    sweep. `progress` receives a line per finished benchmark case."""
    request.validate()
    device = None
    if request.benchmark:
        from hilocli.runtime import resolve_device

        device = resolve_device(request.device)
    precision = request.precision(device)  # UsageError (float16 on a CPU) before any work
    arch = request.architecture()
    cfg = arch.cfg
    request.check_sizes(cfg)
    height, width = request.input_size(cfg)
    nbytes = BYTES_PER_ELEMENT[precision.dtype]
    mc = model_cost(cfg, height, width, get_convention(request.convention))
    site = attention_site(cfg, height, width)
    dim, heads = (request.dim, request.heads) if request.dim else (site.dim, site.num_heads)
    grid = request.tokens or site.grid
    attn = attention_comparison(
        dim,
        heads,
        *grid,
        cfg.alpha,
        site.window_size,
        batch_size=request.batch_size,
        bytes_per_element=nbytes,
        qkv_bias=cfg.qkv_bias,
    )
    counted = None
    if request.count:
        from hilocli.flops.counted import count_flops

        counted = count_flops(cfg, height, width)
    bench, load, peak = None, None, None
    if request.benchmark:
        from hilocli.flops.bench import benchmark

        cases = benchmark_cases(
            request, cfg, arch.name, (height, width), (dim, heads), str(device), precision.dtype
        )
        tick = (
            None
            if progress is None
            else (
                lambda r: progress(
                    f"benchmarked {r.case.name} {r.case.height}x{r.case.width}: {r.label}"
                )
            )
        )
        before = _load_average()
        peak_before = matmul_peak_at(device, precision.dtype, request.threads)
        bench = benchmark(cases, tick, isolate=request.isolate)
        peak_after = matmul_peak_at(device, precision.dtype, request.threads)
        load = (before, _load_average())
        peak = PeakRuns(precision.dtype, (peak_before, peak_after))
    points = None
    if request.sweep is not None:
        points = sweep(cfg, request.sweep, request.convention, request.batch_size, nbytes)
    env = _environment(device)
    return FlopsResult(request, precision, arch, mc, attn, counted, bench, points, env, load, peak)
