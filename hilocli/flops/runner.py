"""Running benchmark cases (`hilocli.flops.bench.BenchCase`): in this process, or each in a fresh
Python process. Imports torch: only `hilo flops --benchmark` loads this module.

On CPU every case runs in a fresh Python process: its peak-RSS growth is then its own (no memory
cached by earlier cases hides in the baseline), and a case killed for lack of memory is recorded as
"OOM" while the sweep goes on. On CUDA cases run in-process with
`torch.cuda.reset_peak_memory_stats` / `max_memory_allocated`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence

import torch

from hilocli.flops.bench import BYTES_PER_ELEMENT, BenchCase, BenchResult, timing_stats, warm_up
from hilocli.flops.kernels import forced, kernels_used, seconds_of, set_explicit
from hilocli.models.baselines import build_attention
from hilocli.models.litv2 import LITv2, LITv2Config
from hilocli.runtime import Precision, forward_context, keep_freed_memory

# run times, warm-up runs, settled?, peak memory growth, how memory was measured, kernels
Measured = tuple[list[float], int, bool, int | None, str, list[str]]


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


def _build(case: BenchCase) -> tuple[torch.nn.Module, torch.Tensor]:
    """(module, input) of a case, on CPU in float32."""
    torch.manual_seed(0)
    if case.kind == "attention":
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
    cfg = LITv2Config(**case.cfg)
    x = torch.randn(case.batch_size, cfg.in_chans, case.height, case.width)  # (B, 3, H, W)
    return LITv2(cfg).eval(), x


def run_case(case: BenchCase) -> BenchResult:
    """Time one case in this process (the child side on CPU; the CUDA path)."""
    if case.dtype not in BYTES_PER_ELEMENT:
        raise ValueError(f"dtype must be one of {', '.join(BYTES_PER_ELEMENT)}, got {case.dtype!r}")
    if case.threads:
        torch.set_num_threads(case.threads)
    dev = torch.device(case.device)
    cuda = dev.type == "cuda"
    try:
        measured = _measure(case, dev)
    except Exception as exc:  # noqa: BLE001 - recorded per case, the sweep goes on
        if is_oom(exc):
            if cuda:
                torch.cuda.empty_cache()
            return BenchResult(case, "OOM", threads=torch.get_num_threads())
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return BenchResult(case, f"error: {first}", threads=torch.get_num_threads())
    if isinstance(measured, BenchResult):
        return measured
    seconds, warmup_runs, settled, peak, kind, kernels = measured
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


def _measure(case: BenchCase, dev: torch.device) -> Measured | BenchResult:
    """Build the case on `dev`, profile one call for its kernels, warm up, time `repeats` runs;
    (run times, warm-up runs, settled?, peak memory growth, how it was measured, kernels), or
    the error result of a case that cannot run."""
    cuda = dev.type == "cuda"
    precision = Precision(requested=case.dtype, dtype=case.dtype, device_type=dev.type)
    module, x = _build(case)
    module, x = module.to(dev), x.to(dev)  # float32: autocast runs the case's dtype
    has_explicit = set_explicit(module, case.sdpa_backend == "explicit")
    if case.sdpa_backend == "explicit" and not has_explicit:
        return BenchResult(case, "error: no explicit attention path")
    call = _forward_call(case, module, x, cuda)
    base, reset = _memory_baseline(dev)
    with torch.inference_mode(), forced(case.sdpa_backend), forward_context(precision):
        kernels = kernels_used(call)  # one profiled call (not timed)
        warmup_runs, settled = warm_up(call, case.warmup)
        seconds = [seconds_of(call, cuda) for _ in range(case.repeats)]
    peak, kind = _peak_memory(dev, base, reset)
    return seconds, warmup_runs, settled, peak, kind, kernels


def _forward_call(
    case: BenchCase, module: torch.nn.Module, x: torch.Tensor, cuda: bool
) -> Callable[[], None]:
    """One synchronised forward of the case (an attention layer also takes its grid)."""
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if case.kind == "attention":

        def call():
            module(x, case.height, case.width)
            sync()
    else:

        def call():
            module(x)
            sync()

    return call


def _memory_baseline(dev: torch.device) -> tuple[int | None, bool]:
    """(memory before the forwards, peak reset?): CUDA allocated bytes, else the RSS."""
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(dev)
        return torch.cuda.memory_allocated(dev), True
    reset = _reset_peak_rss()
    return _status_bytes("VmRSS"), reset


def _peak_memory(dev: torch.device, base: int | None, reset: bool) -> tuple[int | None, str]:
    """(peak growth over `base` during the forwards, how it was measured)."""
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) - base
        return peak, "CUDA max_memory_allocated growth over weights and input"
    hwm = _status_bytes("VmHWM")
    peak = hwm - base if (hwm is not None and base is not None) else None
    kind = (
        "CPU peak RSS growth (VmHWM - VmRSS), fresh process"
        if reset
        else "CPU peak RSS minus RSS before the forward (VmHWM not resettable: upper bound)"
    )
    return peak, kind


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
    cmd = [sys.executable, "-m", "hilocli.flops.runner", json.dumps(case.to_dict())]
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
    keep_freed_memory()
    res = run_case(BenchCase(**json.loads(argv[0])))
    sys.stdout.write(json.dumps(res.to_dict()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(sys.argv[1:]))
