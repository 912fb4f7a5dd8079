"""The output contract: one run record for every command, strict JSON, and output files that
appear together or not at all.

A run record has the same top-level keys for every command (`RunRecord.to_dict`):
`command`, `version`, `settings`, `weights` (file + sha256, or random init + seed), `inputs`
(`analysed`, `skipped` with reasons, `duplicates`), `environment`, `files`, `results`, and
`undefined` (JSON paths of values that are undefined: NaN or infinite numbers become `null`).

Files: `OutputSet(out)` stages every file in a hidden folder inside `out`; `commit()` moves them
into place together (signals held off meanwhile) beside a `manifest.json` listing them with their
SHA-256. A failed or interrupted run (SIGINT, SIGTERM) removes the staging folder and leaves the
previous set untouched.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from hilocli.errors import UsageError

MANIFEST = "manifest.json"
RECORD_KEYS = (
    "command",
    "version",
    "settings",
    "weights",
    "inputs",
    "environment",
    "files",
    "results",
    "undefined",
)  # every record's top-level keys, in this order
STAGING_PREFIX = ".hilo-staging-"


# ----------------------------------------------------------------------------------------------
# Strict JSON
# ----------------------------------------------------------------------------------------------


def to_jsonable(obj: Any, undefined: list[str] | None = None, path: str = "$") -> Any:
    """Plain JSON types only. Non-finite floats become None; their paths go to `undefined`."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        if undefined is not None:
            undefined.append(path)
        return None
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v, undefined, f"{path}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, undefined, f"{path}[{i}]") for i, v in enumerate(obj)]
    if hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict(), undefined, path)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_jsonable(obj.tolist(), undefined, path)
    if hasattr(obj, "item"):
        return to_jsonable(obj.item(), undefined, path)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__} at {path}")


def dumps(obj: Any) -> str:
    """Strict JSON text (no NaN/Infinity tokens), indented."""
    return json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"


def emit_json(obj: Any) -> None:
    """Machine-readable output on stdout (tables and progress go to stderr)."""
    sys.stdout.write(dumps(obj))
    sys.stdout.flush()


# ----------------------------------------------------------------------------------------------
# The run record
# ----------------------------------------------------------------------------------------------


@dataclass
class InputsRecord:
    """What a run analysed: distinct images (or none), skipped files and duplicates."""

    analysed: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}
    duplicates: list[dict[str, str]] = field(default_factory=list)  # {"path", "same_as"}

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": len(self.analysed),
            "analysed": self.analysed,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
        }


@dataclass
class RunRecord:
    command: str
    settings: dict[str, Any]
    weights: dict[str, Any] | None
    environment: dict[str, Any]
    results: Any
    inputs: InputsRecord = field(default_factory=InputsRecord)
    files: dict[str, str] = field(default_factory=dict)  # role -> path

    def to_dict(self) -> dict[str, Any]:
        from hilocli import __version__

        undefined: list[str] = []
        body = to_jsonable(
            {
                "settings": self.settings,
                "weights": self.weights,
                "inputs": self.inputs,
                "environment": self.environment,
                "files": self.files,
                "results": self.results,
            },
            undefined,
        )
        return {
            "command": self.command,
            "version": __version__,
            **body,
            "undefined": [p.replace("$.", "", 1) for p in undefined],
        }


# ----------------------------------------------------------------------------------------------
# Output folders and file sets
# ----------------------------------------------------------------------------------------------


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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def _signals_held() -> Iterator[None]:
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


class OutputSet:
    """Files of one run, staged and moved into `out` together.

    with OutputSet(out) as files:
        files.json("spectrum.json", record)       # staged
        files.figure("spectrum.png", fig)
    # all files and manifest.json now in `out`; on an exception none of them are
    """

    def __init__(self, out: Path):
        self.out = Path(out)
        self._staging: Path | None = None
        self._names: list[str] = []

    def __enter__(self) -> OutputSet:
        self.out.mkdir(parents=True, exist_ok=True)
        self._staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.out))
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.commit()
        finally:
            if self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)
                self._staging = None

    def path(self, name: str) -> Path:
        """The final path a staged file will have (for records written before commit)."""
        return self.out / name

    def _stage(self, name: str) -> Path:
        if self._staging is None:
            raise RuntimeError("OutputSet used outside its `with` block")
        if Path(name).name != name or name == MANIFEST:
            raise ValueError(f"bad output file name {name!r}")
        if name not in self._names:
            self._names.append(name)
        return self._staging / name

    def text(self, name: str, text: str) -> Path:
        self._stage(name).write_text(text)
        return self.path(name)

    def json(self, name: str, obj: Any) -> Path:
        return self.text(name, dumps(obj))

    def csv(self, name: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
        """A CSV with a header row, streamed (rows may be a generator). Floats are written at full
        precision (shortest repr that reads back exactly); NaN and None as empty cells (pandas
        reads them as NaN)."""
        import csv

        def cell(v: Any) -> Any:
            if v is None or (isinstance(v, float) and math.isnan(v)):
                return ""
            return repr(v) if isinstance(v, float) else v

        with self._stage(name).open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            writer.writerows([cell(v) for v in row] for row in rows)
        return self.path(name)

    def figure(self, name: str, fig, **kwargs) -> Path:
        """Save a matplotlib figure (format from the suffix) and close it."""
        import matplotlib.pyplot as plt

        fmt = Path(name).suffix.lstrip(".")
        if fmt == "png":  # fast zlib level: the same pixels, written several times faster
            kwargs = {"pil_kwargs": {"compress_level": 1}, **kwargs}
        try:
            fig.savefig(self._stage(name), format=fmt, **{"bbox_inches": "tight", **kwargs})
        finally:
            plt.close(fig)
        return self.path(name)

    def npz(self, name: str, **arrays) -> Path:
        import numpy as np

        with open(self._stage(name), "wb") as fh:
            np.savez_compressed(fh, **arrays)
        return self.path(name)

    def commit(self) -> list[Path]:
        """Move every staged file into `out`, then write the manifest; signals held off."""
        assert self._staging is not None
        mode = 0o666 & ~_umask()
        manifest = {
            "files": {
                n: {
                    "sha256": sha256_file(self._staging / n),
                    "bytes": (self._staging / n).stat().st_size,
                }
                for n in self._names
            }
        }
        (self._staging / MANIFEST).write_text(dumps(manifest))
        with _signals_held():
            for n in [*self._names, MANIFEST]:
                os.chmod(self._staging / n, mode)
                os.replace(self._staging / n, self.out / n)
        return [self.out / n for n in self._names]
