"""Which attention kernel really runs, forcing one, and the device's measured matmul peak.

`kernels_used(call)` profiles one call and names the scaled-dot-product-attention kernels that
ran (from the aten ops torch dispatched to, on CPU and CUDA alike), or "explicit" when attention
ran as matmul + softmax. `forced(backend)` restricts SDPA to one backend
(torch.nn.attention.sdpa_kernel); "explicit" switches HiLo layers to their explicit path.
`matmul_peak(device, dtype)` is the GFLOP/s of large square matmuls: the denominator of model
FLOP utilisation (MFU = 2 x analytic MACs x images/s / peak).

A peak measured once can read low when other processes take the cores at that moment, and then a
model reads above 100% of it. So the peak is the best of two sizes (their median each), and
callers measure it more than once around their timed runs (`PeakRuns`) and divide by the
highest: a peak is what the machine showed it can do, and MFU against it errs low, never high.

Torch is imported inside the functions that use it: the analytic `hilo flops` run imports this
module (`BACKENDS`, `PeakRuns`, `mfu`) and never runs a model.
"""

from __future__ import annotations

import statistics
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

BACKENDS = ("default", "flash", "efficient", "cudnn", "math", "explicit")
_SDPA_ENUM = {
    "flash": "FLASH_ATTENTION",
    "efficient": "EFFICIENT_ATTENTION",
    "cudnn": "CUDNN_ATTENTION",
    "math": "MATH",
}
_ATEN_LABELS = {  # aten op -> kernel label (longest names first when matching)
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash (CPU)",
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_efficient_attention": "memory-efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_fused_attention_overrideable": "fused (device)",
    "aten::_scaled_dot_product_attention_math": "math",
}


def forced(backend: str) -> AbstractContextManager:
    """A context that restricts SDPA to `backend` ('default'/'explicit': no restriction)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend in ("default", "explicit"):
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel  # lazy: see the module docstring

    return sdpa_kernel(getattr(SDPBackend, _SDPA_ENUM[backend]))


def set_explicit(module: Any, flag: bool) -> bool:
    """Switch every attention layer in `module` with an explicit path (matmul + softmax, seen by
    the FLOP counter and the profiler) to it, or back to fused SDPA; False when it has none.
    The one switch for this: the FLOP count, the benchmarks and the tests all go through it."""
    found = False
    for m in module.modules():
        if hasattr(m, "need_weights"):
            m.need_weights = flag
            found = True
    return found


def label_kernels(op_names: set[str]) -> list[str]:
    """Kernel labels from the names of the aten ops that ran."""
    labels = sorted({label for op, label in _ATEN_LABELS.items() if op in op_names})
    if not labels and "aten::_softmax" in op_names:
        labels = ["explicit (matmul + softmax)"]
    return labels or ["none"]


def ops_that_ran(call) -> set[str]:
    """The names of the ops one call of `call` dispatched (aten::..., mkldnn::...; dispatched on
    the host, also for CUDA tensors). torch.autograd.profiler records the same op names as
    torch.profiler, whose first use imports dynamo and inductor (seconds in every benchmark
    case's fresh process)."""
    from torch.autograd.profiler import profile  # lazy: see the module docstring

    with profile() as prof:
        call()
    return {e.name for e in prof.function_events}


def kernels_used(call) -> list[str]:
    """Profile one call of `call` and name the attention kernels that ran (`ops_that_ran`)."""
    return label_kernels(ops_that_ran(call))


def cuda_seconds(call) -> float:
    """One call timed with CUDA events (device time, no host-side overhead)."""
    import torch  # lazy: see the module docstring

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    call()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000


def seconds_of(call, cuda: bool) -> float:
    """One call timed: CUDA events on a GPU, else the host's perf_counter."""
    if cuda:
        return cuda_seconds(call)
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


PEAK_SIZES = {"cpu": (1024, 2048), "cuda": (4096, 8192)}  # n of the n x n @ n x n products
PEAK_SLOW_S = 0.5  # a product slower than this (no matmul units for the dtype): no larger size


def matmul_peak(device: Any, dtype: str = "float32", repeats: int = 5) -> float:
    """GFLOP/s of n x n @ n x n matmuls: per size in PEAK_SIZES the median of `repeats` (>= 3)
    timed products after two warm-ups; the best of these. A size whose products take longer than
    PEAK_SLOW_S is the last (bfloat16 on a CPU without bfloat16 units: seconds per product)."""
    import torch  # lazy: see the module docstring

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    best = 0.0
    with torch.no_grad():
        for n in PEAK_SIZES["cuda" if cuda else "cpu"]:
            a = torch.randn(n, n, device=dev).to(getattr(torch, dtype))
            b = torch.randn(n, n, device=dev).to(getattr(torch, dtype))
            product = lambda a=a, b=b: a @ b  # noqa: E731 - (n, n)
            for _ in range(2):
                seconds_of(product, cuda)
            seconds = statistics.median(seconds_of(product, cuda) for _ in range(max(repeats, 3)))
            best = max(best, 2 * n**3 / seconds / 1e9)
            if seconds > PEAK_SLOW_S:
                break
    return best


@dataclass(frozen=True)
class PeakRuns:
    """The matmul peak of one dtype measured several times in a run (e.g. before and after the
    timed cases). `gflop_per_s` (the highest) is the MFU denominator; the spread between the runs
    says how much the machine's speed moved meanwhile."""

    dtype: str
    runs: tuple[float, ...]  # GFLOP/s, in the order measured

    @property
    def gflop_per_s(self) -> float:
        return max(self.runs)

    @property
    def moved(self) -> float:
        """(highest - lowest) / highest of the runs: 0 on a steady machine."""
        return 1.0 - min(self.runs) / max(self.runs)


def mfu(peak: PeakRuns | None, gflop_per_s: float | None, dtype: str) -> float | None:
    """Model FLOP utilisation: GFLOP/s over the peak of the same dtype (None when either is
    missing or the peak was measured at another dtype)."""
    if peak is None or gflop_per_s is None or peak.dtype != dtype:
        return None
    return gflop_per_s / peak.gflop_per_s


def matmul_peak_at(device: Any, dtype: str, threads: int | None) -> float:
    """The matmul peak at the benchmark's thread count (the MFU denominator)."""
    import torch  # lazy: see the module docstring

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return matmul_peak(device, dtype)
    finally:
        torch.set_num_threads(before)
