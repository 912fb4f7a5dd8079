"""Measured cost: FLOPs counted by torch's FlopCounterMode, and throughput / peak memory.

Counting runs the model on the meta device: shapes only, no memory, no arithmetic, so any
resolution takes well under a second. torch's counter sees matrix products and convolutions only
(2 FLOPs per multiply-add, bias not included); everything else is listed in `NOT_COUNTED`.

Benchmarks follow the authors' protocol (eval mode, no grad, warm-up, synchronisation, several timed
repeats). On CPU every case runs in a fresh Python process: its peak-RSS growth is then its own
(no memory cached by earlier cases hides in the baseline), and a case killed for lack of memory is
recorded as "OOM" while the sweep goes on. On CUDA cases run in-process with
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
from dataclasses import asdict, dataclass, field
from typing import Any

from hilocli.cost import AS_RUN, CostRow, model_cost

NOT_COUNTED = (
    "LayerNorm and BatchNorm (the analytic count adds 1 MAC per element)",
    "bias additions (the analytic count adds 1 MAC per conv output element)",
    "softmax and the attention scale",
    "average pooling of the Lo-Fi keys/values",
    "GELU, residual adds, zero padding, the mean over tokens",
    "the bilinear sampling of the deformable conv (only its matmul with the weights is counted)",
)


# ----------------------------------------------------------------------------------------------
# Counting with torch.utils.flop_counter
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CountCheck:
    """Counted FLOPs of some modules beside 2 x the analytic product MACs (as-run convention)."""

    label: str
    modules: tuple[str, ...]
    analytic_flops: int
    counted_flops: int

    @property
    def match(self) -> bool:
        return self.analytic_flops == self.counted_flops


@dataclass(frozen=True)
class CountedCost:
    height: int
    width: int
    total_counted_flops: int
    total_analytic_product_flops: int  # 2 x product MACs, as-run convention
    checks: tuple[CountCheck, ...]
    by_module: dict[str, int]  # inclusive counted FLOPs per module name
    sdpa_counted_meta: bool  # does the counter see the fused attention path on meta tensors?
    sdpa_counted_cpu: bool  # ... on CPU tensors (a tiny HiLo layer)
    not_counted: tuple[str, ...]
    torch_version: str

    @property
    def all_match(self) -> bool:
        return all(c.match for c in self.checks) and \
            self.total_counted_flops == self.total_analytic_product_flops

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": {"height": self.height, "width": self.width},
            "units": "FLOPs counted by torch.utils.flop_counter (2 per multiply-add of products)",
            "total_counted_flops": self.total_counted_flops,
            "total_analytic_product_flops": self.total_analytic_product_flops,
            "all_match": self.all_match,
            "checks": [{**asdict(c), "match": c.match} for c in self.checks],
            "sdpa_counted_meta": self.sdpa_counted_meta,
            "sdpa_counted_cpu": self.sdpa_counted_cpu,
            "not_counted": list(self.not_counted),
            "torch": self.torch_version,
        }


def _count(fn) -> dict[str, int]:
    """Run fn() under FlopCounterMode; {module name without the root: inclusive FLOPs}."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, depth=None) as counter, torch.no_grad():
        fn()
    out = {}
    for name, ops in counter.get_flop_counts().items():
        if name == "Global":
            out[""] = int(sum(ops.values()))
        else:
            out[name.split(".", 1)[1] if "." in name else ""] = int(sum(ops.values()))
    return out


def _sdpa_counted(device: str) -> bool:
    """Does the counter see F.scaled_dot_product_attention on `device`? (tiny HiLo, both paths)"""
    import torch

    from hilocli.models.litv2 import HiLo

    with torch.device(device):
        layer = HiLo(32, 2, 2, 0.5).eval()
        x = torch.zeros(1, 16, 32)  # (B, N, C) on a 4 x 4 grid
    totals = []
    for flag in (False, True):
        layer.need_weights = flag
        totals.append(_count(lambda: layer(x, 4, 4))[""])
    return totals[0] == totals[1]


def count_flops(cfg, height: int, width: int) -> CountedCost:
    """Count FLOPs of a LITv2 forward at height x width on the meta device and check every analytic
    product row (linear layers, convs, attention products) against them."""
    import torch

    from hilocli.models.litv2 import LITv2

    analytic = model_cost(cfg, height, width, AS_RUN)
    with torch.device("meta"):
        model = LITv2(cfg).eval()
    model.set_need_weights(True)  # explicit q @ k^T and attn @ v, visible to the counter everywhere
    x = torch.empty(1, cfg.in_chans, height, width, device="meta")
    counts = _count(lambda: model(x))

    # group analytic rows by the modules they live in (Hi-Fi and Lo-Fi attention products share
    # the attention module) and subtract the counted FLOPs of other rows' sub-modules
    groups: dict[tuple[str, ...], list[CostRow]] = {}
    for r in analytic.rows:
        if r.product_macs:
            groups.setdefault(r.modules, []).append(r)
    row_modules = {m for mods in groups for m in mods}

    def exclusive(m: str) -> int:
        return counts.get(m, 0) - sum(counts.get(d, 0) for d in row_modules if d.startswith(m + "."))

    checks = []
    for mods, rows in groups.items():
        first = rows[0]
        if len(rows) > 1:  # Hi-Fi and Lo-Fi attention products of the same layers
            label = f"stage {first.stage}: {first.part} ({' + '.join(r.component for r in rows)})"
        elif first.stage is None:
            label = f"{first.component}: {first.part}"
        else:
            label = f"stage {first.stage} {first.component}: {first.part}"
        checks.append(CountCheck(label, mods, 2 * sum(r.product_macs for r in rows),
                                 sum(exclusive(m) for m in mods)))
    return CountedCost(
        height, width, counts.get("", 0), 2 * sum(r.product_macs for r in analytic.rows),
        tuple(checks), {k: v for k, v in counts.items() if k and k.count(".") <= 1},
        _sdpa_counted("meta"), _sdpa_counted("cpu"), NOT_COUNTED, torch.__version__)


# ----------------------------------------------------------------------------------------------
# Benchmarks
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
    dtype: str = "float32"
    threads: int | None = None
    warmup: int = 3
    repeats: int = 10
    dim: int = 0
    num_heads: int = 0
    alpha: float = 0.9
    window_size: int = 2
    sr_ratio: int = 2
    local_window: int = 7
    cfg: dict = field(default_factory=dict)  # LITv2Config.to_dict() for models

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BenchResult:
    case: BenchCase
    status: str  # "ok" | "OOM" | "error: ..."
    img_per_s: float | None = None  # median over repeats
    img_per_s_min: float | None = None
    img_per_s_max: float | None = None
    img_per_s_iqr: float | None = None
    peak_memory_bytes: int | None = None  # growth during the forward passes
    memory_kind: str = ""
    threads: int | None = None
    seconds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["case"] = self.case.to_dict()
        return d


_DTYPES = ("float32", "float16", "bfloat16")


def _status_kb(key: str) -> int | None:
    try:
        text = open("/proc/self/status").read()
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


def _is_oom(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate" in text \
        or "outofmemory" in text


def run_case(case: BenchCase) -> BenchResult:
    """Time one case in this process (the child side on CPU; the CUDA path)."""
    import torch

    if case.dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {case.dtype!r}")
    if case.threads:
        torch.set_num_threads(case.threads)
    dev = torch.device(case.device)
    dtype = getattr(torch, case.dtype)
    cuda = dev.type == "cuda"
    try:
        torch.manual_seed(0)
        if case.kind == "attention":
            from hilocli.models.baselines import build_attention

            module = build_attention(case.name, case.dim, case.num_heads, case.alpha,
                                     case.window_size, case.sr_ratio, case.local_window)
            x = torch.randn(case.batch_size, case.height * case.width, case.dim)  # (B, N, C)
            call = (lambda: module(x, case.height, case.width))
        else:
            from hilocli.models.litv2 import LITv2, LITv2Config

            cfg = dict(case.cfg)
            for k in ("depths", "num_heads", "local_ws"):
                cfg[k] = tuple(cfg[k])
            module = LITv2(LITv2Config(**cfg)).eval()
            x = torch.randn(case.batch_size, cfg.get("in_chans", 3), case.height, case.width)
            call = (lambda: module(x))
        module = module.to(dev, dtype)
        x = x.to(dev, dtype)
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        if cuda:
            sync()
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
        else:
            reset = _reset_peak_rss()
            base = _status_kb("VmRSS")
        seconds = []
        with torch.inference_mode():
            for _ in range(case.warmup):
                call()
            sync()
            for _ in range(case.repeats):
                t0 = time.perf_counter()
                call()
                sync()
                seconds.append(time.perf_counter() - t0)
        if cuda:
            peak = torch.cuda.max_memory_allocated(dev) - base
            kind = "CUDA max_memory_allocated growth over weights and input"
        else:
            hwm = _status_kb("VmHWM")
            peak = hwm - base if (hwm is not None and base is not None) else None
            kind = ("CPU peak RSS growth (VmHWM - VmRSS), fresh process" if reset else
                    "CPU peak RSS minus RSS before the forward (VmHWM not resettable: upper bound)")
    except Exception as exc:  # noqa: BLE001 - recorded per case, the sweep goes on
        if _is_oom(exc):
            if cuda:
                torch.cuda.empty_cache()
            return BenchResult(case, "OOM", threads=torch.get_num_threads())
        return BenchResult(case, f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                           threads=torch.get_num_threads())
    rates = sorted(case.batch_size / s for s in seconds)
    q = statistics.quantiles(rates, n=4) if len(rates) >= 2 else [rates[0]] * 3
    return BenchResult(case, "ok", statistics.median(rates), rates[0], rates[-1], q[2] - q[0], peak,
                       kind, torch.get_num_threads(), seconds)


def classify_failure(returncode: int, stderr: str) -> str:
    """Status of a child process that did not report a result."""
    if returncode in (-9, 137) or "memoryerror" in stderr.lower() or "out of memory" in stderr.lower() \
            or "can't allocate" in stderr.lower():
        return "OOM"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {returncode}"
    return f"error: {last}"


def run_case_isolated(case: BenchCase, timeout: float = 600.0) -> BenchResult:
    """Run a case in a fresh Python process (CPU memory measured per case; OOM kills survive)."""
    cmd = [sys.executable, "-m", "hilocli.cost_measure", json.dumps(case.to_dict())]
    env = dict(os.environ)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return BenchResult(case, f"error: timed out after {timeout:g} s")
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            d = json.loads(line)
            d.pop("case", None)
            return BenchResult(case, **d)
    return BenchResult(case, classify_failure(proc.returncode, proc.stderr))


def benchmark(cases: list[BenchCase], progress=None) -> list[BenchResult]:
    """Run every case (CPU: each in its own process; CUDA: in this process), never stopping early."""
    results = []
    for case in cases:
        res = run_case(case) if case.device.startswith("cuda") else run_case_isolated(case)
        results.append(res)
        if progress is not None:
            progress(res)
    return results


def _child(argv: list[str]) -> int:
    d = json.loads(argv[0])
    res = run_case(BenchCase(**d))
    out = res.to_dict()
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(sys.argv[1:]))
