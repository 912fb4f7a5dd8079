"""Device selection, the host allocator, the precision of the model forward, and the environment
a result was computed in.

Torch-free at import (torch is imported inside the functions that use it): the `hilo` entry
(`hilocli.cli`) and the analytic `hilo flops` run import this module and never run a model.
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from importlib.metadata import version

from hilocli import __version__
from hilocli.errors import HiloError, UsageError


def resolve_device(choice: str = "auto"):
    """'auto' -> cuda when available else cpu; 'cuda' without CUDA is an error, not a fallback."""
    import torch  # lazy: see the module docstring

    choice = getattr(choice, "value", choice)
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise HiloError(
                "--device cuda was asked for but CUDA is not available on this machine "
                f"(torch {torch.__version__}); use --device cpu or auto"
            )
        return torch.device("cuda")
    raise UsageError(f"--device must be auto, cpu or cuda, got {choice!r}")


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
KEPT = "glibc, freed memory kept (mallopt M_MMAP_MAX 0, M_TRIM_THRESHOLD 2^31-1)"
_kept = False  # set once by keep_freed_memory


def keep_freed_memory() -> bool:
    """Keep freed host memory in the process instead of returning it to the kernel (glibc).

    By default glibc serves every block above 128 KiB-32 MiB with a fresh mmap and unmaps it on
    free, so each forward pass faults in and zeroes all its large activations again (the CPU
    forward's cost of that: docs/benchmarks.md). With mmap off and trimming at its limit, freed
    blocks are reused: the results are the same bits, the process's resident memory stays at its
    peak until it exits. Process-wide, so only process entries call it (`hilocli.cli.main`, an
    isolated benchmark case's process), and the environment record says whether it was applied
    (`host_allocator`). No-op elsewhere (macOS, Windows, musl); True when applied (now or
    before)."""
    global _kept
    if _kept:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    except (OSError, AttributeError):
        return False
    _kept = ok
    return ok


_collection_deferred = False  # set by defer_collection until freeze_loaded


def defer_collection() -> None:
    """No cyclic garbage collection while the process starts (`hilocli.cli.main` only): each
    collection walks every object alive, and importing torch and building a model make hundreds
    of thousands of them, none of them garbage. `freeze_loaded` turns it back on."""
    global _collection_deferred
    if gc.isenabled():
        gc.disable()
        _collection_deferred = True


def freeze_loaded() -> None:
    """Called where every load ends (`loaded.loaded_model`): everything alive now (modules,
    model) is frozen, so later collections (the analysis, matplotlib's import, the figures)
    never walk it again (reference counting still frees what is dropped), and collection is
    back on if `defer_collection` paused it."""
    global _collection_deferred
    gc.freeze()
    if _collection_deferred:
        gc.enable()
        _collection_deferred = False


def freed_memory_kept() -> bool:
    """Does this process keep freed memory (set by `keep_freed_memory`)?"""
    return _kept


def environment(device=None) -> dict:
    """Versions and settings to store beside every result."""
    import matplotlib  # heavy, and only a run that computed something records them
    import numpy
    import torch

    env = {
        "hilo": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": version("scipy"),  # not `import scipy`: a run pays only for what it uses
        "matplotlib": matplotlib.__version__,
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "host_allocator": KEPT if _kept else "default allocator",
        **precision_environment(),
    }
    if device is not None:
        env["device"] = str(device)
        if getattr(device, "type", None) == "cuda":
            env["gpu"] = torch.cuda.get_device_name(device)
            env["cuda"] = torch.version.cuda
    return env


# ----------------------------------------------------------------------------------------------
# Precision of the model forward
# ----------------------------------------------------------------------------------------------

DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
TF32_POLICY = (
    "TF32 off unless --tf32: float32 matmuls and convolutions on CUDA run in full float32 "
    "(fidelity first); bfloat16/float16 autocast is the fast path"
)


@dataclass(frozen=True)
class Precision:
    """How the model forward runs: autocast to `dtype` (None: plain float32) and TF32.

    Analysis never runs at this precision: captured activations are cast to float32 first
    (`hilocli.hilo.capture`), FFTs and statistics run in float32/float64.
    """

    requested: str  # what the user asked: auto | float32 | bfloat16 | float16
    dtype: str  # what runs: float32 | bfloat16 | float16
    device_type: str  # "cpu" | "cuda"
    tf32: bool = False

    @property
    def autocast(self) -> bool:
        return self.dtype != "float32"

    def to_dict(self) -> dict:
        return {
            "dtype": self.dtype,
            "dtype_requested": self.requested,
            "autocast": self.autocast,
            "tf32": self.tf32,
        }


def check_dtype(dtype: str, device_choice: str = "auto") -> None:
    """Usage errors of --dtype before any work: unknown names; float16 on an explicit CPU."""
    dtype = getattr(dtype, "value", dtype)
    device_choice = getattr(device_choice, "value", device_choice)
    if dtype not in DTYPE_CHOICES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPE_CHOICES)}, got {dtype!r}")
    if dtype == "float16" and device_choice == "cpu":
        raise UsageError(
            "--dtype float16 needs CUDA (CPU float16 matmuls are emulated and slow); "
            "use --dtype bfloat16 or float32 on the CPU"
        )


def resolve_precision(dtype: str, device, tf32: bool = False, auto: str | None = None) -> Precision:
    """'auto' -> bfloat16 on CUDA, float32 on CPU, unless the command fixes `auto` (spectrum:
    float32, measured in docs/benchmarks.md); float16 on a CPU device is a usage error (also
    when --device auto fell back to the CPU)."""
    dtype = getattr(dtype, "value", dtype)
    check_dtype(dtype)
    device_type = getattr(device, "type", str(device))
    chosen = dtype
    if dtype == "auto":
        chosen = auto or ("bfloat16" if device_type == "cuda" else "float32")
    if chosen == "float16" and device_type != "cuda":
        check_dtype(chosen, "cpu")
    return Precision(requested=dtype, dtype=chosen, device_type=device_type, tf32=tf32)


@contextmanager
def forward_context(precision: Precision) -> Iterator[None]:
    """no_grad + autocast at the precision's dtype + its TF32 setting, restored on exit."""
    import torch  # lazy: see the module docstring

    old_tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        if precision.device_type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = precision.tf32
            torch.backends.cudnn.allow_tf32 = precision.tf32
            stack.callback(_restore_tf32, *old_tf32)
        if precision.autocast:
            stack.enter_context(
                torch.autocast(precision.device_type, dtype=getattr(torch, precision.dtype))
            )
        yield


def _restore_tf32(matmul: bool, cudnn: bool) -> None:
    import torch  # lazy: see the module docstring

    torch.backends.cuda.matmul.allow_tf32 = matmul
    torch.backends.cudnn.allow_tf32 = cudnn


def precision_environment() -> dict:
    """The float settings in force (recorded in every result's environment)."""
    import torch  # lazy: see the module docstring

    return {
        "tf32_policy": TF32_POLICY,
        "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def to_device(x, device):
    """Host tensor -> device; pinned and non-blocking on CUDA (no host sync per batch)."""
    if getattr(device, "type", str(device)) == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)
