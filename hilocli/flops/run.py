"""`hilo flops` as a function: `FlopsRequest` in, `FlopsResult` out (what the command and the
benchmarks call). Torch is imported only for `--count`, `--benchmark` and `--checkpoint`."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from hilocli import __version__
from hilocli.flops.analytic import ModelCost, model_cost
from hilocli.flops.attention import (
    AttentionCost,
    SweepPoint,
    attention_comparison,
    attention_site,
    sweep,
)
from hilocli.flops.bench import BYTES_PER_ELEMENT, UNSTABLE_SPREAD, BenchCase, BenchResult
from hilocli.flops.cases import benchmark_cases
from hilocli.flops.conventions import FVCORE, get_convention
from hilocli.flops.kernels import PeakRuns, matmul_peak_at, mfu
from hilocli.flops.request import Architecture, FlopsRequest
from hilocli.models.config import LITv2Config
from hilocli.output import RunRecord
from hilocli.runtime import Precision, environment, resolve_device

if TYPE_CHECKING:
    from hilocli.flops.counted import CountedCost
    from hilocli.flops.model import ModelFlopsResult


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
        return environment(device)
    return {
        "hilo": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "computation": "analytic: no model ran, torch not imported",
    }


def run(
    request: FlopsRequest, progress: Callable[[str], None] | None = None
) -> FlopsResult | ModelFlopsResult:
    """Analytic counts; with the request's flags also torch's counted FLOPs, benchmarks and the
    sweep. `progress` receives a line per finished benchmark case. A model's code named
    (`--model-fn`, `--hub`: no config states its architecture) is counted as it runs
    (`hilocli.flops.model`)."""
    request.validate()
    if request.counts_a_loaded_model:
        from hilocli.flops.model import run_loaded  # torch: the analytic path never loads it

        return run_loaded(request.weights_request(), request.input_size(None), request.device)
    device = resolve_device(request.device) if request.benchmark else None
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
    counted = _counted(cfg, height, width) if request.count else None
    bench, load, peak = None, None, None
    if request.benchmark:
        cases = benchmark_cases(
            request, cfg, arch.name, (height, width), (dim, heads), str(device), precision.dtype
        )
        bench, load, peak = _benchmark(request, cases, device, precision.dtype, progress)
    points = None
    if request.sweep is not None:
        points = sweep(cfg, request.sweep, request.convention, request.batch_size, nbytes)
    env = _environment(device)
    return FlopsResult(request, precision, arch, mc, attn, counted, bench, points, env, load, peak)


def _counted(cfg: LITv2Config, height: int, width: int) -> CountedCost:
    from hilocli.flops.counted import count_flops  # torch: only --count counts

    return count_flops(cfg, height, width)


def _benchmark(
    request: FlopsRequest,
    cases: list[BenchCase],
    device: Any,
    dtype: str,
    progress: Callable[[str], None] | None,
) -> tuple[list[BenchResult], tuple[float, float], PeakRuns]:
    """The cases run (`progress` told of each), the system load and the matmul peak of `dtype`
    measured before and after them."""
    from hilocli.flops.runner import benchmark  # torch: only --benchmark runs cases

    def tick(r: BenchResult) -> None:
        progress(f"benchmarked {r.case.name} {r.case.height}x{r.case.width}: {r.label}")

    before = _load_average()
    peak_before = matmul_peak_at(device, dtype, request.threads)
    bench = benchmark(cases, None if progress is None else tick, isolate=request.isolate)
    peak_after = matmul_peak_at(device, dtype, request.threads)
    load = (before, _load_average())
    return bench, load, PeakRuns(dtype, (peak_before, peak_after))
