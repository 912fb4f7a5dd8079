"""Device selection and the environment a result was computed in."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from hilocli.errors import HiloError, UsageError


def resolve_device(choice: str = "auto"):
    """'auto' -> cuda when available else cpu; 'cuda' without CUDA is an error, not a fallback."""
    import torch

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
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    except (OSError, AttributeError):
        return False
    _kept = ok
    return ok


def freed_memory_kept() -> bool:
    """Does this process keep freed memory (set by `keep_freed_memory`)?"""
    return _kept


def environment(device=None) -> dict:
    """Versions and settings to store beside every result."""
    from importlib.metadata import version

    import matplotlib
    import numpy
    import torch

    from hilocli import __version__

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
    import torch

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
    import torch

    torch.backends.cuda.matmul.allow_tf32 = matmul
    torch.backends.cudnn.allow_tf32 = cudnn


def precision_environment() -> dict:
    """The float settings in force (recorded in every result's environment)."""
    import torch

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


# ----------------------------------------------------------------------------------------------
# torch.compile of the model forward (`hilo spectrum --compile`)
# ----------------------------------------------------------------------------------------------

COMPILE_CHOICES = ("off", "on", "auto")
# The least images for which `auto` compiles: a compile (or two: a last, smaller batch recompiles
# with a dynamic batch size) against the time it saves per image. CPU: from the measured compile
# time and per-batch gain, rounded up (docs/benchmarks.md); CUDA: estimated, not measured.
CPU_COMPILE_MIN_IMAGES = 2000
CUDA_COMPILE_MIN_IMAGES = 120_000
COMPILE_BACKEND = "inductor"  # torch's default; tests swap in "eager" (seconds, not minutes)
# torch's default mode on CUDA too: "max-autotune*" spends much longer compiling for little, and
# the CUDA-graph modes ("reduce-overhead", "max-autotune") replay into the same output buffers,
# which would overwrite the branch maps the capture hooks keep between batches.
COMPILE_MODE = None
# Inductor's freezing: the weights become constants of the compiled inference graph, so inductor
# prepacks them for the CPU's GEMMs and folds and fuses around them (convolution + GELU, say).
# Inference only (it applies under no_grad, as every command's forward runs), and a model whose
# weights change afterwards must be compiled again.
INDUCTOR_OPTIONS = {"freezing": True}


@dataclass(frozen=True)
class CompileDecision:
    """Whether the model forward runs through torch.compile, and why (recorded in settings)."""

    requested: str  # off | on | auto
    used: bool
    reason: str
    backend: str | None = None  # with used
    mode: str | None = None  # torch.compile's mode (None: its default)

    def to_dict(self) -> dict:
        return {
            "requested": self.requested,
            "used": self.used,
            "reason": self.reason,
            "backend": self.backend,
            "mode": self.mode or ("default" if self.used else None),
            "freezing": self.freezing,
        }

    @property
    def freezing(self) -> bool:
        """Does the compiled forward use inductor's freezing (`INDUCTOR_OPTIONS`)?"""
        return self.used and self.backend == "inductor"


def check_compile(choice: str) -> None:
    """Usage error of --compile before any work."""
    choice = getattr(choice, "value", choice)
    if choice not in COMPILE_CHOICES:
        raise UsageError(f"--compile must be one of {', '.join(COMPILE_CHOICES)}, got {choice!r}")


def compile_decision(
    choice: str,
    n_images: int,
    device_type: str,
    fixed_size: bool = True,
    freed_memory_kept: bool = False,
) -> CompileDecision:
    """Pure rule: `on` always, `off` never, `auto` only when compiling pays for the run: at least
    CPU_COMPILE_MIN_IMAGES (CPU) or CUDA_COMPILE_MIN_IMAGES (CUDA) images, all of one size
    (with --no-crop every new image size would compile again); never on a CPU whose process
    keeps freed memory (`keep_freed_memory`), where compiling was measured no faster."""
    choice = getattr(choice, "value", choice)
    check_compile(choice)
    if choice == "off":
        return CompileDecision("off", False, "--compile off")
    if choice == "on":
        return CompileDecision("on", True, "--compile on", COMPILE_BACKEND, COMPILE_MODE)
    if device_type != "cuda" and freed_memory_kept:
        return CompileDecision(
            "auto",
            False,
            "on a CPU that keeps freed memory the compiled forward was measured no faster than "
            "eager (docs/benchmarks.md)",
        )
    if device_type == "cuda":
        least, measured = CUDA_COMPILE_MIN_IMAGES, "estimated, not measured"
    else:
        least, measured = CPU_COMPILE_MIN_IMAGES, "measured on a CPU"
    if not fixed_size:
        return CompileDecision(
            "auto", False, "images keep their own sizes (--no-crop): each size would recompile"
        )
    if n_images < least:
        return CompileDecision(
            "auto",
            False,
            f"{n_images} images < {least}: compiling would not pay for itself on "
            f"{device_type} (break-even {measured}; docs/benchmarks.md)",
        )
    return CompileDecision(
        "auto",
        True,
        f"{n_images} images >= {least}: compiling pays for itself on {device_type} "
        f"(break-even {measured}; docs/benchmarks.md)",
        COMPILE_BACKEND,
        COMPILE_MODE,
    )


def compile_toolchain_problem(device_type: str, backend: str = COMPILE_BACKEND) -> str | None:
    """Why torch.compile cannot work here (None: nothing found missing). Inductor needs a C++
    compiler on the CPU and Triton on CUDA; other failures only show while compiling."""
    from torch._dynamo.eval_frame import is_dynamo_supported

    if not is_dynamo_supported():
        return "torch.compile is not supported on this Python/platform"
    if backend != "inductor":
        return None
    if device_type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "torch.compile (inductor) needs Triton for CUDA"
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as exc:  # noqa: BLE001 - any reason it cannot find one
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"torch.compile (inductor) needs a C++ compiler on the CPU ({first})"
    return None


def maybe_compile(
    model, choice: str, n_images: int, device, fixed_size: bool = True
) -> tuple[object, CompileDecision]:
    """Compile `model`'s forward in place (`nn.Module.compile`: the module stays the same object,
    so its submodules, capture hooks and isinstance checks are untouched) when the decision says
    so. A missing toolchain is a HiloError with --compile on; with auto the run goes on eager
    and the decision says why. Compilation itself happens at the first forward: wrap the run in
    `compile_errors` so its failures read as one line."""
    device_type = getattr(device, "type", str(device))
    decision = compile_decision(choice, n_images, device_type, fixed_size, freed_memory_kept())
    if not decision.used:
        return model, decision
    problem = compile_toolchain_problem(device_type, decision.backend)
    if problem is not None:
        if decision.requested == "on":
            raise HiloError(f"--compile on: {problem}; use --compile off")
        return model, CompileDecision("auto", False, f"{problem}: ran eager")
    compile_as(model, decision)
    return model, decision


@contextmanager
def compile_errors(decision: CompileDecision) -> Iterator[None]:
    """Failures of torch.compile (tracing, lowering, C++/Triton builds) as one HiloError line."""
    try:
        yield
    except HiloError:
        raise
    except Exception as exc:
        if not decision.used or not _from_compiler(exc) or "out of memory" in str(exc).lower():
            raise
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise HiloError(
            f"torch.compile ({decision.backend}) failed: {type(exc).__name__}: {first}; "
            "use --compile off"
        ) from exc


def _from_compiler(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor", "torch._functorch"))


def compile_as(model, decision: CompileDecision) -> None:
    """Compile `model`'s forward in place as `decision` says (also the random-init controls);
    with inductor, frozen (`INDUCTOR_OPTIONS`: for inference under no_grad)."""
    if not decision.used:
        return
    if decision.freezing:  # torch.compile takes a mode or options, never both
        model.compile(backend=decision.backend, options=INDUCTOR_OPTIONS)
    else:
        model.compile(backend=decision.backend, mode=decision.mode)
