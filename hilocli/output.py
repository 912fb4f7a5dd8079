"""The output contract: one run record for every command, strict JSON, and output files that
appear together or not at all.

A run record has the same top-level keys for every command (`RunRecord.to_dict`):
`command`, `version`, `settings`, `weights` (file + sha256, or random init + seed), `inputs`
(`analysed`, `skipped` with reasons, `duplicates`), `environment`, `files`, `results`, and
`undefined` (JSON paths of values that are undefined: NaN or infinite numbers become `null`).

Files: `OutputSet(out, command)` stages every file in a hidden folder inside `out`; `commit()`
moves them into place together (signals held off meanwhile) beside the command's own manifest
`<command>.manifest.json` listing them with their SHA-256, and removes what the command's previous
set had and this one does not (`hilocli.outfolder`: the folder layout and its lock). A failed or
interrupted run (SIGINT, SIGTERM) removes the staging folder and leaves the previous set untouched.

Text: file names the OS allows but that are not UTF-8 (`x\\xff.jpg`, which Python holds with
surrogate escapes) are written in JSON and CSV with each such byte as `\\xNN` (`escaped_text`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, redirect_stdout
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from hilocli import __version__
from hilocli.image_decode import ALPHA_BACKGROUND
from hilocli.outfolder import (
    MANIFEST_SUFFIX,
    STAGING_PREFIX,
    check_names,
    manifest_name,
    output_lock,
    remove_stale,
    signals_held,
    umask,
)
from hilocli.outfolder import check_out_dir as check_out_dir  # re-exported

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


# ----------------------------------------------------------------------------------------------
# Strict JSON
# ----------------------------------------------------------------------------------------------


def escaped_text(text: str) -> str:
    """`text` as valid UTF-8: each byte of a non-UTF-8 file name (held by Python as a surrogate
    escape, as `os.fsdecode` gives it) becomes `\\xNN`; any other text is returned as it is."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file system byte gave
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def to_jsonable(obj: Any, undefined: list[str] | None = None, path: str = "$") -> Any:
    """Plain JSON types only. Non-finite floats become None; their paths go to `undefined`;
    strings are `escaped_text`."""
    if isinstance(obj, bool) or obj is None:
        return obj
    if isinstance(obj, str):
        return escaped_text(obj)
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
        return escaped_text(str(obj))
    if isinstance(obj, dict):
        return {
            escaped_text(str(k)): to_jsonable(v, undefined, f"{path}.{k}") for k, v in obj.items()
        }
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
    """Strict JSON text (no NaN/Infinity tokens), indented. A `RunRecord`'s dict is already plain
    (its `to_dict` ran `to_jsonable`): it is not walked a second time."""
    plain = obj.to_dict() if isinstance(obj, RunRecord) else to_jsonable(obj)
    return json.dumps(plain, indent=2, allow_nan=False) + "\n"


_JSON_STREAM: list[Any] = []  # the real stdout while `json_stdout` holds it


@contextmanager
def json_stdout() -> Iterator[None]:
    """Keep stdout for `emit_json` alone: anything else printed meanwhile (a user model's
    prints, say) goes to stderr."""
    _JSON_STREAM.append(sys.stdout)
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        _JSON_STREAM.pop()


def emit_json(obj: Any) -> None:
    """Machine-readable output on stdout (tables and progress go to stderr)."""
    stream = _JSON_STREAM[-1] if _JSON_STREAM else sys.stdout
    stream.write(dumps(obj))
    stream.flush()


# ----------------------------------------------------------------------------------------------
# The run record
# ----------------------------------------------------------------------------------------------


@dataclass
class InputsRecord:
    """What a run analysed: distinct images (or none), skipped files and duplicates."""

    analysed: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}
    duplicates: list[dict[str, str]] = field(default_factory=list)  # {"path", "same_as"}
    transparent: list[str] = field(default_factory=list)  # analysed images composited on white

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": len(self.analysed),
            "analysed": self.analysed,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "transparent": self.transparent,
            "transparent_background": list(ALPHA_BACKGROUND),
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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class OutputSet:
    """Files of one run of `command`, staged and moved into `out` together.

    with OutputSet(out, "spectrum") as files:
        files.json("spectrum.json", record)       # staged
        files.figure("spectrum.png", fig)
    # all files and spectrum.manifest.json now in `out`, the previous spectrum set's other files
    # removed; on an exception none of the new files are there and the previous set is intact
    """

    def __init__(self, out: Path, command: str):
        self.out = Path(out)
        self.command = command
        self.manifest = manifest_name(command)
        self._staging: Path | None = None
        self._names: list[str] = []
        self._held = ExitStack()

    def __enter__(self) -> OutputSet:
        self._held.enter_context(output_lock(self.out, self.command))
        try:
            self._staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.out))
        except BaseException:
            self._held.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.commit()
        finally:
            if self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)
                self._staging = None
            self._held.close()

    def path(self, name: str) -> Path:
        """The final path a staged file will have (for records written before commit)."""
        return self.out / name

    def _stage(self, name: str) -> Path:
        if self._staging is None:
            raise RuntimeError("OutputSet used outside its `with` block")
        if Path(name).name != name or name.endswith(MANIFEST_SUFFIX) or name[:1] == ".":
            raise ValueError(f"bad output file name {name!r}")
        if name not in self._names:
            self._names.append(name)
        return self._staging / name

    def text(self, name: str, text: str) -> Path:
        self._stage(name).write_text(text, encoding="utf-8")
        return self.path(name)

    def json(self, name: str, obj: Any) -> Path:
        return self.text(name, dumps(obj))

    def csv(self, name: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
        """A CSV with a header row, streamed (rows may be a generator). Floats are written at full
        precision (shortest repr that reads back exactly); NaN and None as empty cells (pandas
        reads them as NaN)."""

        def cell(v: Any) -> Any:
            if v is None or (isinstance(v, float) and math.isnan(v)):
                return ""
            if isinstance(v, str):
                return escaped_text(v)
            return repr(v) if isinstance(v, float) else v

        with self._stage(name).open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            writer.writerows([cell(v) for v in row] for row in rows)
        return self.path(name)

    def figure(self, name: str, fig, **kwargs) -> Path:
        """Save a matplotlib figure (format from the suffix). hilo's figures are plain
        `matplotlib.figure.Figure`s, unknown to pyplot: nothing to close."""
        fmt = Path(name).suffix.lstrip(".")
        if fmt == "png":  # fast zlib level: the same pixels, written several times faster
            kwargs = {"pil_kwargs": {"compress_level": 1}, **kwargs}
        fig.savefig(self._stage(name), format=fmt, **{"bbox_inches": "tight", **kwargs})
        return self.path(name)

    def npz(self, name: str, **arrays) -> Path:
        import numpy as np  # lazy: imported through hilocli.images, which loads no numpy

        with open(self._stage(name), "wb") as fh:
            np.savez_compressed(fh, **arrays)
        return self.path(name)

    def commit(self) -> list[Path]:
        """Move every staged file into `out`, write the command's manifest, then remove the files
        of the command's previous set that this one does not have; signals held off."""
        assert self._staging is not None
        check_names(self.out, self.command, self._names)
        mode = 0o666 & ~umask()
        manifest = {
            "command": self.command,
            "files": {
                n: {
                    "sha256": sha256_file(self._staging / n),
                    "bytes": (self._staging / n).stat().st_size,
                }
                for n in self._names
            },
        }
        (self._staging / self.manifest).write_text(dumps(manifest))
        with signals_held():
            for n in self._names:
                os.chmod(self._staging / n, mode)
                os.replace(self._staging / n, self.out / n)
            remove_stale(self.out, self.command, self._names)  # the old manifest says what
            os.chmod(self._staging / self.manifest, mode)
            os.replace(self._staging / self.manifest, self.out / self.manifest)
        return [self.out / n for n in self._names]
