"""Listing a run's inputs: distinct image files, with a reason for everything left out.

- Arguments: a folder is walked, a regular file taken; a FIFO, socket or device is a usage error
  (never opened: reading one can block for ever); a missing path or broken link is an error.
- In a folder (recursively, sorted; hidden files and folders skipped silently): FIFOs, sockets
  and devices, broken symbolic links, symbolic link loops, unreadable folders and symbolic links
  to folders (not followed) are listed in `skipped` with the reason; nothing of theirs is opened.
- The files hilo wrote (listed in a `<command>.manifest.json` beside them) are never inputs,
  wherever they are: so the output folder (`--out`) may be the image folder.
- Each file counts once (by resolved path, then by content SHA-256); its header is read (size,
  transparency) without decoding pixels, and files PIL cannot read are skipped: so `limit` counts
  images, not READMEs.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from hilocli.errors import HiloError, UsageError
from hilocli.image_decode import probe_image
from hilocli.models.geometry import check_input_size
from hilocli.outfolder import own_outputs
from hilocli.output import sha256_file
from hilocli.resize import model_input_size, resolve_preprocess
from hilocli.terminal import human_bytes

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)
LINKED_FOLDER_REASON = "a symbolic link to a folder: not followed (give the folder itself)"


@dataclass
class InputSet:
    """Distinct input images in the order found, and what was left out (paths as given)."""

    files: list[Path] = field(default_factory=list)
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)  # (path, same as)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (path, reason)
    sha256: dict[Path, str] = field(default_factory=dict)  # file -> content hash (readable ones)
    sizes: dict[Path, tuple[int, int]] = field(default_factory=dict)  # file -> (w, h), header
    transparent: list[Path] = field(default_factory=list)  # images with alpha (composited)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _stat(path: Path) -> tuple[os.stat_result | None, str]:
    """(stat following links, "") or (None, why it cannot be read)."""
    try:
        return os.stat(path), ""
    except FileNotFoundError:
        return None, "a broken symbolic link" if os.path.islink(path) else "no such file"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, "a symbolic link loop"
        return None, f"cannot read ({exc.strerror})"


def refuse_special(path: Path, what: str) -> None:
    """UsageError when `path` is a FIFO, socket or device (never opened: reading one can block for
    ever); `what` names it ('--checkpoint x.pth'). Missing paths are the caller's to report."""
    st, _ = _stat(Path(path))
    if st is not None and not stat.S_ISDIR(st.st_mode) and not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{what} is {_kind(st.st_mode)}, not a file; it is not opened")


def find_images(paths: list[Path]) -> list[Path]:
    """Files as given; folders walked as `collect_inputs` does (regular files only), without
    de-duplication or headers: every file found, images or not. A missing path is a HiloError."""
    found = collect_inputs(paths, probe=False, dedupe=False)
    return found.files


def _walk(top: Path, found: InputSet, ours) -> list[Path]:
    """Regular files under `top` (sorted); everything else in `found.skipped` with its reason."""
    files: list[Path] = []

    def unreadable(exc: OSError) -> None:
        found.skipped.append((Path(exc.filename), f"cannot read this folder ({exc.strerror})"))

    for root, dirs, names in os.walk(top, onerror=unreadable):  # followlinks=False: no loops
        here = Path(root)
        keep = []
        for d in sorted(d for d in dirs if not d.startswith(".")):
            if (here / d).is_symlink():
                found.skipped.append((here / d, LINKED_FOLDER_REASON))
            else:
                keep.append(d)
        dirs[:] = keep
        for name in (n for n in names if not n.startswith(".")):
            st, why = _stat(here / name)
            if st is None:
                found.skipped.append((here / name, why))
            elif not stat.S_ISREG(st.st_mode):
                found.skipped.append((here / name, f"{_kind(st.st_mode)}: not read"))
            elif not ours(here / name):
                files.append(here / name)
    return sorted(files)


def _file_sha256(path: Path) -> str | None:
    """SHA-256 of the content; None when it cannot be read (the loader reports why)."""
    try:
        return sha256_file(path)
    except OSError:
        return None


def _listed(paths: list[Path], found: InputSet) -> list[Path]:
    """Regular files of `paths` in order, folders walked; the files hilo wrote (listed in a
    manifest beside them, `hilocli.outfolder`) left out, counted in one `skipped` line a folder."""
    own: dict[Path, set[str]] = {}
    left_out: dict[Path, int] = {}

    def ours(p: Path) -> bool:
        folder = p.parent.absolute()
        if folder not in own:
            own[folder] = own_outputs(folder)
        if p.name in own[folder]:
            left_out[folder] = left_out.get(folder, 0) + 1
            return True
        return False

    candidates: list[Path] = []
    for p in map(Path, paths):
        st, why = _stat(p)
        if st is None:
            raise HiloError(
                f"no such file or directory: {p}" if why == "no such file" else f"{p}: {why}"
            )
        if stat.S_ISDIR(st.st_mode):
            candidates.extend(_walk(p, found, ours))
        elif not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{p} is {_kind(st.st_mode)}, not an image file; it is not opened")
        elif not ours(p):
            candidates.append(p)
    for folder, n in left_out.items():
        found.skipped.append((folder, f"{n} file(s) hilo wrote here are not read as inputs"))
    return candidates


def collect_inputs(
    paths: list[Path],
    limit: int | None = None,
    *,
    probe: bool = True,
    dedupe: bool = True,
) -> InputSet:
    """The distinct images of `paths` (see the module docstring), at most `limit` of them.

    A later path to the same file (resolved) or with byte-identical content (SHA-256) is listed in
    `duplicates` with the first."""
    found = InputSet()
    by_path: dict[Path, Path] = {}
    by_content: dict[str, Path] = {}
    for p in _listed(paths, found):
        if limit is not None and len(found.files) >= limit:
            break
        key = p.resolve() if dedupe else None
        first = by_path.get(key) if dedupe else None
        digest = None if first is not None or not dedupe else _file_sha256(p)
        first = first or (by_content.get(digest) if digest is not None else None)
        if first is not None:
            found.duplicates.append((p, first))
            continue
        if probe:
            try:
                header = probe_image(p)
            except HiloError as exc:
                found.skipped.append((p, str(exc)))
                continue
            found.sizes[p] = header.size
            if header.transparent:
                found.transparent.append(p)
        if key is not None:
            by_path[key] = p
        if digest is not None:
            by_content[digest] = p
            found.sha256[p] = digest
        found.files.append(p)
    return found


def available_bytes(device) -> int | None:
    """Memory a forward may use: free GPU memory on CUDA, MemAvailable on Linux; None unknown."""
    if getattr(device, "type", str(device)) == "cuda":
        import torch  # lazy: only on CUDA; listing inputs needs no torch

        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def fit_to_model(
    found: InputSet, paths: list[Path], resolution: int, mode: str, loaded, device
) -> list[Path]:
    """`paths` whose model input, known from the header, the model can take: each side within
    `check_input_size`'s range and, where the loader can estimate it
    (`LoadedModel.forward_bytes`), the forward's memory within what the device has. The others go
    to `found.skipped` with one line naming the limit, before any pixel is decoded."""
    free = available_bytes(device)
    kept = []
    for p in paths:
        w0, h0 = found.sizes.get(p, (resolution, resolution))
        w, h = model_input_size(w0, h0, resolution, mode)
        why = f"{p}: a {w0}x{h0} image becomes a {w}x{h} model input ({mode} mode)"
        try:
            check_input_size(h, w, loaded.min_input_size)
        except UsageError as exc:
            found.skipped.append((p, f"{why}; {str(exc).split(': ', 1)[-1]}"))
            continue
        need = loaded.forward_bytes(h, w)
        if free is not None and need is not None and need > free:
            found.skipped.append(
                (p, f"{why}, about {human_bytes(need)} for the forward, over the "
                 f"{human_bytes(free)} available; use a smaller --resolution or the crop")
            )  # fmt: skip
            continue
        kept.append(p)
    return kept


def fit_inputs(found, paths, resolution: int, crop: bool, loaded, device):
    """(paths the model can take, [(path, reason)] for the others), from the headers alone: no
    image is decoded that the model cannot take (`fit_to_model`)."""
    mode = resolve_preprocess(crop, None, loaded.preprocess).mode
    refused = InputSet(sizes=found.sizes)
    kept = fit_to_model(refused, list(paths), resolution, mode, loaded, device)
    if not kept:
        raise HiloError(f"no input fits the model: {refused.skipped[0][1]}")
    return kept, refused.skipped
