"""Measured speed and peak memory of attention layers and whole models, with honest statistics.

Protocol: eval mode, `torch.inference_mode()`, the forward under the commands' precision policy
(`hilocli.runtime.forward_context`: float32 weights and inputs, autocast to the case's dtype, TF32
off), synchronisation on CUDA. Warm-up runs continue until
the last `SETTLE_WINDOW` agree within `SETTLE_TOLERANCE` of their median (at least `warmup` runs,
at most `MAX_WARMUP_RUNS` or `MAX_WARMUP_S` seconds); then `repeats` (>= 5) timed runs. A case is
reported by its median and relative spread (IQR / median of the run times) and marked `unstable`
when the spread exceeds `UNSTABLE_SPREAD`: such a number is noise, not a finding.

On CPU every case runs in a fresh Python process: its peak-RSS growth is then its own (no memory
cached by earlier cases hides in the baseline), and a case killed for lack of memory is recorded as
"OOM" while the sweep goes on. On CUDA cases run in-process with
`torch.cuda.reset_peak_memory_stats` / `max_memory_allocated`.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
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


# ----------------------------------------------------------------------------------------------
# Running a case
# ----------------------------------------------------------------------------------------------


def _status_bytes(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            text = fh.read()
    except OSError:
        return None
    m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) * 1024 if m else None


def _reset_peak_rss() -> bool:
    """Linux >= 4.0: writing 5 to clear_refs resets VmHWM to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def is_oom(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return (
        isinstance(exc, MemoryError)
        or "out of memory" in text
        or "can't allocate" in text
        or "outofmemory" in text
    )


def _build(case: BenchCase):
    """(module, input) of a case, on CPU in float32."""
    import torch

    torch.manual_seed(0)
    if case.kind == "attention":
        from hilocli.models.baselines import build_attention

        module = build_attention(
            case.name,
            case.dim,
            case.num_heads,
            case.alpha,
            case.window_size,
            case.sr_ratio,
            case.local_window,
        )
        x = torch.randn(case.batch_size, case.height * case.width, case.dim)  # (B, N, C)
        return module, x
    from hilocli.models.litv2 import LITv2, LITv2Config

    cfg = LITv2Config(**case.cfg)
    x = torch.randn(case.batch_size, cfg.in_chans, case.height, case.width)  # (B, 3, H, W)
    return LITv2(cfg).eval(), x


def run_case(case: BenchCase) -> BenchResult:
    """Time one case in this process (the child side on CPU; the CUDA path)."""
    import torch

    from hilocli.flops.kernels import forced, kernels_used, seconds_of, set_explicit
    from hilocli.runtime import Precision, forward_context

    if case.dtype not in BYTES_PER_ELEMENT:
        raise ValueError(f"dtype must be one of {', '.join(BYTES_PER_ELEMENT)}, got {case.dtype!r}")
    if case.threads:
        torch.set_num_threads(case.threads)
    dev = torch.device(case.device)
    cuda = dev.type == "cuda"
    precision = Precision(requested=case.dtype, dtype=case.dtype, device_type=dev.type)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    try:
        module, x = _build(case)
        module, x = module.to(dev), x.to(dev)  # float32: autocast runs the case's dtype
        has_explicit = set_explicit(module, case.sdpa_backend == "explicit")
        if case.sdpa_backend == "explicit" and not has_explicit:
            return BenchResult(case, "error: no explicit attention path")
        if case.kind == "attention":

            def call():
                module(x, case.height, case.width)
                sync()
        else:

            def call():
                module(x)
                sync()

        if cuda:
            sync()
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
        else:
            reset = _reset_peak_rss()
            base = _status_bytes("VmRSS")
        with torch.inference_mode(), forced(case.sdpa_backend), forward_context(precision):
            kernels = kernels_used(call)  # one profiled call (not timed)
            warmup_runs, settled = warm_up(call, case.warmup)
            seconds = [seconds_of(call, cuda) for _ in range(case.repeats)]
        if cuda:
            peak = torch.cuda.max_memory_allocated(dev) - base
            kind = "CUDA max_memory_allocated growth over weights and input"
        else:
            hwm = _status_bytes("VmHWM")
            peak = hwm - base if (hwm is not None and base is not None) else None
            kind = (
                "CPU peak RSS growth (VmHWM - VmRSS), fresh process"
                if reset
                else "CPU peak RSS minus RSS before the forward (VmHWM not resettable: upper bound)"
            )
    except Exception as exc:  # noqa: BLE001 - recorded per case, the sweep goes on
        if is_oom(exc):
            if cuda:
                torch.cuda.empty_cache()
            return BenchResult(case, "OOM", threads=torch.get_num_threads())
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return BenchResult(case, f"error: {first}", threads=torch.get_num_threads())
    stats = timing_stats(seconds, case.batch_size)
    return BenchResult(
        case,
        "ok",
        stats.img_per_s,
        stats.img_per_s_min,
        stats.img_per_s_max,
        stats.spread,
        stats.unstable,
        warmup_runs,
        settled,
        peak,
        kind,
        torch.get_num_threads(),
        seconds,
        kernels,
        "CUDA events" if cuda else "perf_counter",
    )


def classify_failure(returncode: int, stderr: str) -> str:
    """Status of a child process that did not report a result."""
    low = stderr.lower()
    if (
        returncode in (-9, 137)
        or "memoryerror" in low
        or "out of memory" in low
        or "can't allocate" in low
    ):
        return "OOM"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {returncode}"
    return f"error: {last}"


def run_case_isolated(case: BenchCase, timeout: float = 600.0) -> BenchResult:
    """Run a case in a fresh Python process (CPU memory measured per case; OOM kills survive)."""
    cmd = [sys.executable, "-m", "hilocli.flops.bench", json.dumps(case.to_dict())]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ)
        )
    except subprocess.TimeoutExpired:
        return BenchResult(case, f"error: timed out after {timeout:g} s")
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            d = json.loads(line)
            d.pop("case", None)
            d.pop("gflop_per_s", None)  # derived
            return BenchResult(case, **d)
    return BenchResult(case, classify_failure(proc.returncode, proc.stderr))


def benchmark(
    cases: Sequence[BenchCase],
    progress: Callable[[BenchResult], None] | None = None,
    isolate: bool = True,
) -> list[BenchResult]:
    """Run every case, never stopping early. CPU cases each in their own process unless
    `isolate` is False (then in this process: faster, memory figures less clean); CUDA cases
    in this process."""
    results = []
    for case in cases:
        in_process = case.device.startswith("cuda") or not isolate
        res = run_case(case) if in_process else run_case_isolated(case)
        results.append(res)
        if progress is not None:
            progress(res)
    return results


def _child(argv: list[str]) -> int:
    """An isolated case's process: its allocator set as the `hilo` process's (`hilocli.cli`)."""
    from hilocli.runtime import keep_freed_memory

    keep_freed_memory()
    res = run_case(BenchCase(**json.loads(argv[0])))
    sys.stdout.write(json.dumps(res.to_dict()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(sys.argv[1:]))
