"""Who owns what in an output folder (`--out`), one run at a time, and no debris from killed runs.

Layout: every command owns its own file names in `--out` (`spectrum*`, `per_image.csv` and
`transfer.*` for `hilo spectrum`; `compare*` for `hilo compare`; `attn_*` for `hilo attn-map`;
`flops*` for `hilo flops`) and lists them, with their SHA-256, in its own manifest
`<command>.manifest.json`. A new run of a command replaces that command's previous set whole: the
files its old manifest lists and the new run does not write again are removed; other commands'
files are never touched.

One run at a time: a run holds an advisory lock (`fcntl.flock`) on `--out/.hilo.lock` while it
works; a second run into the same folder is refused with one line naming the first. The kernel
drops the lock when its process dies (also on `kill -9`), so a dead run never blocks the folder.
Whoever takes the lock removes what killed runs left: staging folders (`.hilo-staging-*`).
Temporary files beside a file being written whole (`atomic_write`: `.NAME.*.part`) are locked by
their writer while it lives; the next write of NAME removes the ones no living process holds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hilocli.distributed import placement
from hilocli.errors import HiloError, UsageError

try:  # POSIX; elsewhere runs are not locked against each other
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".hilo.lock"
STAGING_PREFIX = ".hilo-staging-"
MANIFEST_SUFFIX = ".manifest.json"
_HELD: dict[Path, list] = {}  # resolved folder -> [lock fd, nesting depth] held by this process


def check_out_dir(out: Path) -> Path:
    """Validate `--out` before any work: a folder that exists or can be created, writable.

    Creates nothing; UsageError with the reason otherwise."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    probe = out
    while not probe.exists():
        parent = probe.parent
        if parent == probe:
            break
        probe = parent
    if not probe.is_dir():
        raise UsageError(f"--out {out} cannot be created: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out} is not writable (no write permission on {probe})")
    return out


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def signals_held() -> Iterator[None]:
    """Defer SIGINT/SIGTERM while a few renames run; the first one arrived is acted on after.

    Python-level handlers are swapped (signal masks would not do: a process-directed signal may
    be delivered to another thread). Outside the main thread nothing is deferred."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = (signal.SIGINT, signal.SIGTERM)
    pending: list[int] = []
    old = {s: signal.getsignal(s) for s in sigs}
    for s in sigs:
        signal.signal(s, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if pending:
            signum, handler = pending[0], old[pending[0]]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


def manifest_name(command: str) -> str:
    """'spectrum' -> 'spectrum.manifest.json': each command's own manifest."""
    return f"{command}{MANIFEST_SUFFIX}"


def listed_files(folder: Path, command: str | None = None) -> dict[str, set[str]]:
    """Command -> names its manifest in `folder` lists (every command's, or `command`'s alone).
    Unreadable or foreign manifests list nothing; names with a folder part are ignored."""
    owned: dict[str, set[str]] = {}
    pattern = manifest_name(command) if command else f"*{MANIFEST_SUFFIX}"
    for manifest in sorted(Path(folder).glob(pattern)):
        try:
            files = json.loads(manifest.read_text())["files"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        names = {n for n in files if isinstance(n, str) and Path(n).name == n and n[:1] != "."}
        owned[manifest.name[: -len(MANIFEST_SUFFIX)]] = names
    return owned


def own_outputs(folder: Path) -> set[str]:
    """Names in `folder` that hilo wrote: every manifest and the files they list."""
    listed = listed_files(folder)
    return {manifest_name(c) for c in listed}.union(*listed.values())


def check_names(folder: Path, command: str, names: list[str]) -> None:
    """HiloError when a name `command` is about to write belongs to another command's set."""
    for other, listed in listed_files(folder).items():
        taken = sorted(listed.intersection(names)) if other != command else []
        if taken:
            raise HiloError(
                f"{folder / taken[0]} belongs to `hilo {other}`'s set in {folder} "
                f"(see {manifest_name(other)}); choose another --out"
            )


def remove_stale(folder: Path, command: str, keep: list[str]) -> None:
    """Remove the files `command`'s previous manifest listed that are not in `keep`."""
    for name in sorted(listed_files(folder, command).get(command, set()) - set(keep)):
        path = folder / name
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)


def _holder(lock: Path) -> str:
    try:
        pid, _, command = lock.read_text().strip().partition(" ")
    except OSError:
        return "another hilo run"
    return f"`hilo {command}`, process {pid}" if pid.isdigit() else "another hilo run"


def _acquire(lock: Path, command: str) -> int:
    """An fd holding an exclusive flock on `lock` (the file at that path, not an unlinked one)."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise HiloError(
                f"another run is writing into {lock.parent} ({_holder(lock)}); wait for it to "
                "finish or choose another --out"
            ) from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {command}\n".encode())
            return fd
        os.close(fd)  # the holder before us removed it on release: lock the new file


def _missing_parents(folder: Path) -> list[Path]:
    """`folder` and its ancestors that do not exist yet, innermost first."""
    missing = []
    probe = folder.absolute()
    while not probe.exists() and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    return missing


@contextmanager
def output_lock(out: Path, command: str) -> Iterator[Path]:
    """Hold `out` for one run of `command` (re-entrant in a process); see the module docstring.

    Creates `out` when missing (and removes it again if the run leaves it empty). Under torchrun or
    srun only rank 0 writes, so only rank 0 locks."""
    out = Path(out)
    if not placement().is_main or fcntl is None:
        yield out
        return
    created = _missing_parents(out)
    out.mkdir(parents=True, exist_ok=True)
    key = out.resolve()
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield out
        finally:
            _HELD[key][1] -= 1
        return
    fd = _acquire(out / LOCK_NAME, command)
    _HELD[key] = [fd, 1]
    try:
        for stale in out.glob(f"{STAGING_PREFIX}*"):  # killed runs': nobody else holds `out`
            shutil.rmtree(stale, ignore_errors=True)
        yield out
    finally:
        del _HELD[key]
        (out / LOCK_NAME).unlink(missing_ok=True)  # while still held: see _acquire
        os.close(fd)
        for folder in created:  # a run that wrote nothing leaves no folder behind
            try:
                folder.rmdir()
            except OSError:
                break


def _remove_dead_temporaries(dest: Path) -> None:
    """Remove `.NAME.*.part` beside `dest` that no living process holds (killed writers')."""
    for part in dest.parent.glob(f".{dest.name}.*.part"):
        try:
            fd = os.open(part, os.O_RDONLY)
        except OSError:
            continue
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: a live writer's
                part.unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            os.close(fd)


def atomic_write(dest: Path, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` to a temporary file beside `dest`, then rename it onto `dest`: `dest` appears
    whole or not at all. The temporary is locked while this process lives and removed on any
    failure; ones left by killed writers of the same name are removed first."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_temporaries(dest)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(name)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        write(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
        os.close(fd)
    return dest
