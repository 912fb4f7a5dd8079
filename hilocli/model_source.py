"""What `--model-fn` / `--hub` name: a `ModelSource`, parsed and checked without running anything.

`--model-fn path/to/file.py:function` or `package.module:function` (with `--model-kwargs JSON`), or
`--hub DIR:ENTRY` for a local `hubconf.py`. Parsing imports nothing of the user's and only stats
files, so a request validates before any work (also on the torch-free `hilo flops` path); building
the model is `hilocli.usermodel`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hilocli.errors import UsageError
from hilocli.output import sha256_file

_IDENT = re.compile(r"^[A-Za-z_]\w*$")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclass(frozen=True)
class ModelSource:
    """Where a user model's code comes from: 'model-fn' (file or module) or 'hub'."""

    kind: str  # "model-fn" | "hub"
    spec: str  # as given
    target: str  # file path, module name, or hub folder
    function: str
    kwargs: tuple = ()  # sorted (key, value) pairs of --model-kwargs

    @property
    def file(self) -> Path | None:
        if self.kind == "hub":
            return Path(self.target) / "hubconf.py"
        return Path(self.target) if self.target.endswith(".py") else None

    def to_dict(self) -> dict[str, Any]:
        f = self.file
        return {
            "kind": self.kind,
            "spec": self.spec,
            "function": self.function,
            "kwargs": dict(self.kwargs),
            "file": None if f is None else str(f),
            "file_sha256": None if f is None or not f.is_file() else sha256_file(f),
        }


def parse_kwargs(text: str | None) -> tuple:
    if text is None:
        return ()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--model-kwargs is not valid JSON ({exc.msg}): {text!r}") from None
    if not isinstance(obj, dict):
        raise UsageError(f"--model-kwargs must be a JSON object, got {text!r}")
    return tuple(sorted(obj.items()))


def parse_model_fn(spec: str, kwargs: str | None = None) -> ModelSource:
    """`file.py:function` or `package.module:function`; UsageError (one line) when malformed or
    when the file does not exist. Nothing is imported here."""
    target, sep, func = spec.rpartition(":")
    if not sep or not target or not _IDENT.match(func):
        raise UsageError(
            f"--model-fn {spec!r}: expected path/to/file.py:function or package.module:function"
        )
    if target.endswith(".py"):
        p = Path(target)
        if not p.is_file():
            raise UsageError(f"--model-fn {spec!r}: no such file {target}")
    elif not _DOTTED.match(target):
        raise UsageError(
            f"--model-fn {spec!r}: {target!r} is neither a .py file nor a dotted module name"
        )
    return ModelSource("model-fn", spec, target, func, parse_kwargs(kwargs))


def parse_hub(spec: str, kwargs: str | None = None) -> ModelSource:
    folder, sep, entry = spec.rpartition(":")
    if not sep or not folder or not _IDENT.match(entry):
        raise UsageError(f"--hub {spec!r}: expected DIR:ENTRY (a folder with hubconf.py)")
    if not (Path(folder) / "hubconf.py").is_file():
        raise UsageError(f"--hub {spec!r}: no hubconf.py in {folder}")
    return ModelSource("hub", spec, folder, entry, parse_kwargs(kwargs))


def check_user_options(request) -> bool:
    """Usage errors of --model-fn / --hub / --model-kwargs in a `WeightsRequest`; True when a user
    model is asked for (and its options are consistent). Imports nothing of the user's."""
    fn, hub = request.model_fn, request.hub
    if fn is None and hub is None:
        raise UsageError("--model-kwargs needs --model-fn or --hub")
    if fn is not None and hub is not None:
        raise UsageError("--model-fn and --hub conflict: give one model source")
    flag = "--model-fn" if fn is not None else "--hub"
    for given, name in (
        (request.model, "--model"),
        (request.window_sizes, "--window-sizes"),
        (request.head_dim, "--head-dim"),
        (request.pretrained, "--pretrained" if request.pretrained else "--random-init"),
    ):
        if given is not None and not (name == "--random-init" and request.checkpoint is None):
            raise UsageError(f"{flag} and {name} conflict: {name} is for hilo's own LITv2")
    for name, values in (("--mean", request.mean), ("--std", request.std)):
        if values is not None and len(values) != 3:
            raise UsageError(f"{name} needs 3 comma-separated numbers (R,G,B), got {list(values)}")
    if request.std is not None and min(request.std) <= 0:
        raise UsageError(f"--std must be positive, got {list(request.std)}")
    if request.checkpoint is not None:
        p = Path(request.checkpoint)
        if not p.is_file():
            raise UsageError(f"--checkpoint {p}: no such file")
    request.user_source  # noqa: B018 - parses the spec (usage errors), imports nothing
    return True
