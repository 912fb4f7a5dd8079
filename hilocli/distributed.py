"""Several processes (GPUs or CPU processes) on one run: who we are, the process group, sharding,
and failures that never hang.

    torchrun --nproc_per_node 2 -m hilocli spectrum photos/ --out hilo-out
    srun --ntasks 8 --gpus-per-task 1 hilo spectrum photos/ --out hilo-out   # SLURM

A process learns its place from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT) or, under SLURM's srun, from SLURM_PROCID, SLURM_STEP_NUM_TASKS and
SLURM_LOCALID (MASTER_ADDR and MASTER_PORT must then be exported by the job script). The step's
task count, not SLURM_NTASKS: a batch script run without srun sees the job's SLURM_NTASKS but is
one process. Without
either, hilo runs as one process and nothing here initialises anything.

Backend: NCCL when the run's device is CUDA (each process takes GPU LOCAL_RANK), gloo on the CPU.
Rank 0 alone tests, draws, prints and writes; the others measure their shard and send it.

Failures: every phase that may fail on one rank only ends in `agree()`, a collective where each
rank says "ok" or its error; if any rank failed, rank 0 raises one HiloError naming the rank and
its message and the others exit quietly (`PeerFailed`). A rank that dies outright (killed, segfault)
is seen by torchrun, which stops the others; the process-group timeout (HILO_DIST_TIMEOUT seconds,
default 1800) bounds any other wait.

torch is imported inside the functions that need it: the console and the CLI ask `quiet_rank`
on the torch-free paths (`hilo --help`, the analytic `hilo flops`, `hilo info --list`).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from hilocli.errors import HiloError, UsageError

TIMEOUT_ENV = "HILO_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800
T = TypeVar("T")


class PeerFailed(HiloError):
    """Another rank failed; rank 0 reports it, this rank exits 1 without a line of its own."""


@dataclass(frozen=True)
class Placement:
    """Where this process sits in a multi-process run."""

    rank: int
    world_size: int
    local_rank: int
    launcher: str  # "torchrun" | "slurm" | "single"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def to_dict(self) -> dict[str, Any]:
        return {"world_size": self.world_size, "launcher": self.launcher}


SINGLE = Placement(rank=0, world_size=1, local_rank=0, launcher="single")


def _int_env(env: dict[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise UsageError(f"environment variable {name}={env[name]!r} is not an integer") from None


def placement(env: dict[str, str] | None = None) -> Placement:
    """This process's place from torchrun's or SLURM's variables (SINGLE without them).

    UsageError when the variables are inconsistent (rank outside the world) or when SLURM runs
    several tasks without MASTER_ADDR / MASTER_PORT (where rank 0 listens)."""
    env = dict(os.environ if env is None else env)
    if "WORLD_SIZE" in env and "RANK" in env:
        world, rank = _int_env(env, "WORLD_SIZE"), _int_env(env, "RANK")
        local = _int_env(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
        launcher = "torchrun"
    elif "SLURM_PROCID" in env and "SLURM_STEP_NUM_TASKS" in env:
        world, rank = _int_env(env, "SLURM_STEP_NUM_TASKS"), _int_env(env, "SLURM_PROCID")
        local = _int_env(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0
        launcher = "slurm"
        if world > 1 and not ("MASTER_ADDR" in env and "MASTER_PORT" in env):
            raise UsageError(
                "under srun with several tasks, export MASTER_ADDR (the first node) and "
                "MASTER_PORT (a free port) so the processes can meet (see docs/scale.md)"
            )
    else:
        return SINGLE
    if world < 1 or not 0 <= rank < world or local < 0:
        raise UsageError(f"rank {rank} does not fit a world of {world} processes")
    if world == 1:
        return SINGLE
    return Placement(rank=rank, world_size=world, local_rank=local, launcher=launcher)


def quiet_rank() -> bool:
    """True in a non-zero rank (cheap: no torch import). Such a rank prints nothing of its own:
    rank 0 reports for the run."""
    try:
        return not placement().is_main
    except UsageError:
        return False


def shard(count: int, where: Placement) -> list[int]:
    """Indices 0..count-1 of this rank's share: round robin (rank, rank + world, ...), so every
    index belongs to exactly one rank and shares differ in size by at most one."""
    return list(range(where.rank, count, where.world_size))


def _timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}")
    return value


@contextmanager
def process_group(where: Placement, device) -> Iterator[Placement]:
    """Join the process group for the run (NCCL on CUDA, gloo on the CPU) and leave it after.
    Nothing happens for a single process or when a group already exists (an outer run's)."""
    if not where.distributed:
        yield where
        return
    import torch  # here: see the module docstring
    import torch.distributed as dist

    if dist.is_initialized():
        yield where
        return
    cuda = getattr(device, "type", str(device)) == "cuda"
    if cuda:
        torch.cuda.set_device(where.local_rank % max(torch.cuda.device_count(), 1))
    dist.init_process_group(
        backend="nccl" if cuda else "gloo",
        init_method="env://",
        rank=where.rank,
        world_size=where.world_size,
        timeout=datetime.timedelta(seconds=_timeout_s()),
    )
    try:
        yield where
    finally:
        dist.destroy_process_group()


def rank_device(device, where: Placement):
    """The device of this rank: its own GPU (LOCAL_RANK) on CUDA, the CPU otherwise."""
    import torch  # here: see the module docstring

    if getattr(device, "type", None) == "cuda" and where.distributed:
        return torch.device("cuda", where.local_rank % max(torch.cuda.device_count(), 1))
    return device


def _message(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    if isinstance(exc, HiloError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}{': ' + text if text else ''}"


def agree(where: Placement, work: Callable[[], T]) -> T:
    """Run `work` on every rank; if it fails on any rank, fail on all of them.

    Rank 0 raises one HiloError naming the first failed rank (or re-raises its own error);
    the other ranks raise PeerFailed. Single process: just `work()`."""
    if not where.distributed:
        return work()
    import torch.distributed as dist  # here: see the module docstring

    error: BaseException | None = None
    value: Any = None
    try:
        value = work()
    except Exception as exc:  # noqa: BLE001 - shared with the other ranks below
        error = exc
    said: list[Any] = [None] * where.world_size
    dist.all_gather_object(said, None if error is None else _message(error))
    failed = [(r, msg) for r, msg in enumerate(said) if msg is not None]
    if not failed:
        return value
    if where.is_main:
        if error is not None:
            raise error
        rank, msg = failed[0]
        raise HiloError(f"rank {rank} of {where.world_size} failed: {msg}")
    raise PeerFailed("another rank failed")


def from_main(where: Placement, work: Callable[[], T]) -> T:
    """Run `work` on rank 0 alone and hand its value to every rank: work whose answer is the
    same everywhere, such as listing and hashing the inputs, then reads the files once, not once
    per rank. A failure on rank 0 fails every rank, as in `agree`. Single process: `work()`."""
    if not where.distributed:
        return work()
    import torch.distributed as dist  # here: see the module docstring

    value = agree(where, work if where.is_main else (lambda: None))
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(where: Placement, obj: T) -> list[T] | None:
    """Every rank's `obj` on rank 0, in rank order (None elsewhere). Objects are pickled: move
    tensors to the CPU first."""
    if not where.distributed:
        return [obj]
    import torch.distributed as dist  # here: see the module docstring

    out: list[Any] | None = [None] * where.world_size if where.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def ordered(parts: Sequence[Sequence[tuple[Any, T]]]) -> list[T]:
    """Per-rank lists of (key, item) merged into one list sorted by key (one process's order)."""
    merged = [pair for part in parts for pair in part]
    merged.sort(key=lambda pair: pair[0])
    return [item for _key, item in merged]
