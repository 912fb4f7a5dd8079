"""torch.compile of the model forward (`hilo spectrum --compile`): the pure decision whether it
pays for a run, the toolchain check, and compiling in place (inductor with freezing).

Torch-free at import: `hilocli.commands.spectrum` reads the thresholds for its `--help`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from hilocli.errors import HiloError, UsageError
from hilocli.runtime import freed_memory_kept

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
    # torch's compile machinery: heavy, and only a run that compiles asks
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
