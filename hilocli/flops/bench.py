"""Benchmark cases, their results and the statistics that judge them (torch-free; the cases run
in `hilocli.flops.runner`).

Protocol: eval mode, `torch.inference_mode()`, the forward under the commands' precision policy
(`hilocli.runtime.forward_context`: float32 weights and inputs, autocast to the case's dtype, TF32
off), synchronisation on CUDA. Warm-up runs continue until
the last `SETTLE_WINDOW` agree within `SETTLE_TOLERANCE` of their median (at least `warmup` runs,
at most `MAX_WARMUP_RUNS` or `MAX_WARMUP_S` seconds); then `repeats` (>= 5) timed runs. A case is
reported by its median and relative spread (IQR / median of the run times) and marked `unstable`
when the spread exceeds `UNSTABLE_SPREAD`: such a number is noise, not a finding.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

MIN_REPEATS = 5
SETTLE_WINDOW = 3  # warm-up settles when this many consecutive runs ...
SETTLE_TOLERANCE = 0.10  # ... agree within 10% of their median
MAX_WARMUP_RUNS = 30
MAX_WARMUP_S = 30.0
UNSTABLE_SPREAD = 0.20  # IQR / median of the timed runs above this: unstable
BYTES_PER_ELEMENT = {"float32": 4, "float16": 2, "bfloat16": 2}  # a resolved --dtype -> bytes


# ----------------------------------------------------------------------------------------------
# Statistics (pure)
# ----------------------------------------------------------------------------------------------


def relative_spread(seconds: Sequence[float]) -> float:
    """Interquartile range / median of run times (quartiles inclusive of the extremes)."""
    if len(seconds) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(seconds, n=4, method="inclusive")
    return (q3 - q1) / statistics.median(seconds)


def is_settled(
    seconds: Sequence[float], window: int = SETTLE_WINDOW, tolerance: float = SETTLE_TOLERANCE
) -> bool:
    """Do the last `window` times agree within `tolerance` of their median ((max-min)/median)?"""
    if len(seconds) < window:
        return False
    last = seconds[-window:]
    return (max(last) - min(last)) <= tolerance * statistics.median(last)


@dataclass(frozen=True)
class TimingStats:
    img_per_s: float  # batch / median time
    img_per_s_min: float  # from the slowest run
    img_per_s_max: float  # from the fastest run
    spread: float  # IQR / median of the run times
    unstable: bool  # spread > threshold


def timing_stats(
    seconds: Sequence[float], batch_size: int = 1, threshold: float = UNSTABLE_SPREAD
) -> TimingStats:
    """Median throughput, its range and the stability verdict of a list of run times."""
    if not seconds:
        raise ValueError("no timed runs")
    spread = relative_spread(seconds)
    return TimingStats(
        batch_size / statistics.median(seconds),
        batch_size / max(seconds),
        batch_size / min(seconds),
        spread,
        spread > threshold,
    )


def warm_up(
    call: Callable[[], Any],
    min_runs: int,
    max_runs: int = MAX_WARMUP_RUNS,
    max_seconds: float = MAX_WARMUP_S,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[int, bool]:
    """Run `call` (which synchronises) at least `min_runs` times and until its times settle,
    at most max(max_runs, min_runs) times or until `max_seconds` passed; (runs, settled?)."""
    times: list[float] = []
    start = clock()
    while len(times) < max(min_runs, 1) or not is_settled(times):
        if len(times) >= max(max_runs, min_runs) or (
            len(times) >= min_runs and clock() - start > max_seconds
        ):
            break
        t0 = clock()
        call()
        times.append(clock() - t0)
    return len(times), is_settled(times)


# ----------------------------------------------------------------------------------------------
# Cases and results
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchCase:
    """One thing to time: an attention layer on an H x W grid, or a whole model on an image."""

    kind: str  # "attention" | "model"
    name: str  # "MSA" | "SRA" | "Window" | "HiLo" | a model name
    height: int  # tokens (attention) or pixels (model)
    width: int
    batch_size: int = 1
    device: str = "cpu"
    dtype: str = "float32"  # what the forward runs at (autocast), resolved: never "auto"
    threads: int | None = None
    warmup: int = 3  # minimum warm-up runs (more until the times settle)
    repeats: int = 10
    dim: int = 0
    num_heads: int = 0
    alpha: float = 0.9
    window_size: int = 2
    sr_ratio: int = 2
    local_window: int = 7
    cfg: dict = field(default_factory=dict)  # LITv2Config.to_dict() for models
    sdpa_backend: str = "default"  # hilocli.flops.kernels.BACKENDS: forced SDPA kernel
    macs: int = 0  # analytic MACs per image (authors' convention): for GFLOP/s and MFU

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BenchResult:
    case: BenchCase
    status: str  # "ok" | "OOM" | "error: ..."
    img_per_s: float | None = None  # median over the timed runs
    img_per_s_min: float | None = None
    img_per_s_max: float | None = None
    spread: float | None = None  # IQR / median of the run times
    unstable: bool = False  # spread > UNSTABLE_SPREAD: noise, not a finding
    warmup_runs: int = 0
    warmup_settled: bool = False
    peak_memory_bytes: int | None = None  # growth during the forward passes
    memory_kind: str = ""
    threads: int | None = None
    seconds: list[float] = field(default_factory=list)
    kernels: list[str] = field(default_factory=list)  # attention kernels that really ran
    timer: str = ""  # "CUDA events" | "perf_counter"

    @property
    def gflop_per_s(self) -> float | None:
        """2 x analytic MACs x images/s (None without a count or a time)."""
        if not self.case.macs or self.img_per_s is None:
            return None
        return 2 * self.case.macs * self.img_per_s / 1e9

    @property
    def label(self) -> str:
        """'ok', 'unstable', 'OOM' or the error: what the tables show."""
        return "unstable" if self.status == "ok" and self.unstable else self.status

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["case"] = self.case.to_dict()
        d["gflop_per_s"] = self.gflop_per_s
        return d
