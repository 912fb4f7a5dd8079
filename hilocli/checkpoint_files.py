"""What a checkpoint file is, told from its bytes, and why it cannot be read, in hilo's words.

Torch-free. A weights file is untrusted input: its pickle is only ever scanned here (with
`pickletools`, which decodes opcodes and runs nothing) to name the globals it references, so a
refusal can say what the file wanted to call. Loading is `hilocli.checkpoint.read_checkpoint`
(torch's `weights_only` unpickler, or safetensors).

Kinds: "safetensors" (8-byte little-endian header length, then a JSON header), "zip" (torch.save's
format since 1.6), "pickle" (torch's legacy format, or a plain pickle), "empty", "unknown".
"""

from __future__ import annotations

import pickletools
import re
import zipfile
from _compat_pickle import IMPORT_MAPPING  # Python 2 module names in protocol <= 2 pickles
from collections import OrderedDict
from pathlib import Path

TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of torch's pre-1.6 format
_DATA_PKL = re.compile(r"^[^/]+/data\.pkl$")

# Modules and builtins whose functions run code, touch files or the network: a weights file never
# references them, so a pickle that does is called hostile (and is refused either way).
_DANGEROUS_MODULES = {
    "os",
    "posix",
    "nt",
    "subprocess",
    "sys",
    "shutil",
    "socket",
    "importlib",
    "pty",
    "runpy",
    "webbrowser",
    "pickle",
    "_pickle",
    "marshal",
    "ctypes",
    "code",
    "codeop",
    "types",
    "operator",
    "functools",
    "platform",
    "multiprocessing",
    "asyncio",
    "signal",
    "tempfile",
    "pathlib",
    "io",
    "_io",
    "urllib",
    "http",
    "ftplib",
    "smtplib",
    "telnetlib",
    "commands",
    "timeit",
    "pdb",
    "bdb",
    "imp",
    "zipimport",
    "pkgutil",
    "site",
    "pip",
    "setuptools",
    "shelve",
    "glob",
}
_DANGEROUS_BUILTINS = {
    "eval",
    "exec",
    "compile",
    "__import__",
    "getattr",
    "setattr",
    "delattr",
    "open",
    "input",
    "breakpoint",
    "globals",
    "locals",
    "vars",
    "apply",
    "execfile",
    "file",
    "reload",
}
_OS_ALIASES = {"posix": "os", "nt": "os"}


class InertMapping:
    """Stand-in for a dict-like config class (yacs CfgNode, argparse Namespace): becomes a plain
    OrderedDict holding the same items. Constructing it never runs code from the checkpoint."""

    def __new__(cls, *args, **kwargs):
        return OrderedDict()


class InertValue:
    """Stand-in for a data-only value class (numpy scalars and dtypes): swallows its state."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __setstate__(self, state):
        self.state = state


# Classes that hold configuration or metadata only; never imported, mapped to inert stand-ins.
DATA_ONLY_GLOBALS: dict[str, type] = {
    "yacs.config.CfgNode": InertMapping,
    "argparse.Namespace": InertMapping,
    "numpy.core.multiarray.scalar": InertValue,
    "numpy._core.multiarray.scalar": InertValue,
    "numpy.dtype": InertValue,
    **{f"numpy.dtypes.{t}DType": InertValue for t in ("Float64", "Float32", "Int64", "Int32")},
}


def sniff(path: Path) -> str:
    """The file's kind by content: safetensors, zip, pickle, empty or unknown."""
    size = path.stat().st_size
    if size == 0:
        return "empty"
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if len(head) > 8 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if size < (1 << 20):  # an old text-protocol pickle: one whole pickle with a global in it
        data = path.read_bytes()
        globals_, end = _scan(data)
        if end == len(data) and globals_:
            return "pickle"
    return "unknown"


def _scan(data: bytes, max_pickles: int = 1) -> tuple[list[str], int]:
    """Globals referenced by up to `max_pickles` consecutive pickles in `data` (decoded, never
    run), and the offset just after the last complete one (-1 if none was complete)."""
    found: list[str] = []
    end, pos = -1, 0
    for _ in range(max_pickles):
        memo: dict = {}
        recent: list = []  # values of recent pushes (strings or None), for STACK_GLOBAL
        try:
            for op, arg, at in pickletools.genops(data[pos:]):
                name = op.name
                if name in ("GLOBAL", "INST"):
                    module, _, attr = arg.partition(" ")
                    found.append(f"{IMPORT_MAPPING.get(module, module)}.{attr}")
                elif name == "STACK_GLOBAL":
                    if len(recent) >= 2 and all(isinstance(s, str) for s in recent[-2:]):
                        found.append(f"{recent[-2]}.{recent[-1]}")
                elif name == "MEMOIZE":
                    memo[len(memo)] = recent[-1] if recent else None
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[int(arg)] = recent[-1] if recent else None
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    recent.append(memo.get(int(arg)))
                elif name == "STOP":
                    end = pos + at + 1
                else:
                    recent.append(arg if isinstance(arg, str) else None)
                del recent[:-4]
        except Exception:  # noqa: BLE001 - malformed or truncated: what was decoded so far counts
            break
        if end <= pos:
            break
        pos = end
    return list(dict.fromkeys(found)), end


def pickle_globals(path: Path, kind: str) -> list[str]:
    """Every global the file's pickle(s) reference, in order (for zip files: data.pkl)."""
    if kind == "zip":
        try:
            with zipfile.ZipFile(path) as zf:
                name = next((n for n in zf.namelist() if _DATA_PKL.match(n)), None)
                return _scan(zf.read(name))[0] if name else []
        except (zipfile.BadZipFile, OSError, ValueError, RuntimeError):
            return []
    with open(path, "rb") as fh:
        head = fh.read(64 << 20)  # the pickles come first; storages follow
    return _scan(head, max_pickles=5)[0]


def is_torch_legacy(path: Path) -> bool:
    """True if the file starts with torch's legacy magic-number pickle."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    try:
        for op, arg, _ in pickletools.genops(head):
            if op.name in ("LONG1", "LONG4", "LONG", "INT"):
                return arg == TORCH_LEGACY_MAGIC
            if op.name != "PROTO":
                return False
    except Exception:  # noqa: BLE001 - not a pickle at all
        return False
    return False


def zip_problem(path: Path) -> str | None:
    """Why a zip file is not a readable torch checkpoint, or None if it looks like one."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return (
            f"{path} is a truncated or damaged checkpoint: its zip archive is incomplete "
            "(an interrupted download or save?); fetch or save it again"
        )
    if not any(_DATA_PKL.match(n) for n in names):
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "") or "nothing"
        return (
            f"{path} is a zip archive but not a PyTorch checkpoint (no <name>/data.pkl "
            f"inside; it holds {shown})"
        )
    return None


def _is_dangerous(name: str) -> bool:
    module, _, attr = name.rpartition(".")
    root = module.split(".")[0]
    if root == "builtins":
        return attr in _DANGEROUS_BUILTINS
    return root in _DANGEROUS_MODULES


def _is_known_data(name: str) -> bool:
    """Globals a weights file legitimately holds (torch decides exactly; this only words errors)."""
    return (
        name in DATA_ONLY_GLOBALS
        or name == "collections.OrderedDict"
        or (name.startswith("torch.") and not name.startswith("torch.nn.modules."))
        or name
        in (
            "builtins.set",
            "builtins.frozenset",
            "builtins.bytearray",
            "builtins.complex",
            "builtins.slice",
            "_codecs.encode",
        )
    )


def _alias(name: str) -> str:
    module, _, attr = name.rpartition(".")
    root, _, rest = module.partition(".")
    if root in _OS_ALIASES:
        return f"{name} (that is, {_OS_ALIASES[root]}{'.' + rest if rest else ''}.{attr})"
    return name


def refuse_unread(globals_: list[str]) -> bool:
    """True when the file must be refused before torch even sees it: it references code-running
    functions or whole nn.Module classes."""
    return any(_is_dangerous(g) or g.startswith("torch.nn.modules.") for g in globals_)


def refusal(path: Path, globals_: list[str]) -> str | None:
    """The message for a pickle hilo will not load, from the globals it references; None when
    nothing in them explains a failure (then the file is damaged)."""
    dangerous = [g for g in globals_ if _is_dangerous(g)]
    if dangerous:
        return (
            f"refusing to load {path}: its pickle references {_alias(dangerous[0])}, which "
            "could run code on this machine and which no weights file needs; it was refused "
            "and nothing in it was run"
        )
    if any(g.startswith("torch.nn.modules.") for g in globals_):
        cls = next(g for g in globals_ if not _is_known_data(g))
        return (
            f"{path} holds a whole pickled model object ({cls}), not a state dict; "
            "unpickling it would run code, so hilo refused it and ran nothing (save "
            "model.state_dict() instead)"
        )
    unknown = [g for g in globals_ if not _is_known_data(g)]
    if unknown:
        return (
            f"refusing to load {path}: its pickle references {unknown[0]}, which a weights "
            "file has no need for (it could run code); it was refused and nothing in it was "
            "run"
        )
    return None


def unknown_format(path: Path) -> str:
    """Message for a file that is no checkpoint format at all."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    try:
        what = " (it is a text file)" if "\x00" not in head.decode("utf-8") else ""
    except UnicodeDecodeError:
        what = ""
    if path.suffix == ".safetensors":
        return f"{path} is not a valid safetensors file: its header is missing or damaged{what}"
    return (
        f"{path} is not a PyTorch checkpoint: neither a torch.save zip archive, a legacy "
        f"torch pickle, nor safetensors{what}"
    )
