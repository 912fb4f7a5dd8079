"""Released weights: where they come from, the cache they land in, and what hilo can vouch for.

Weights are fetched once into the torch hub cache (`$TORCH_HOME/hub/checkpoints`), from the
authors' GitHub release or, with HILO_RELEASE_URL, from a mirror. Beside each cached file a small
record `<file>.hilo-download.json` keeps the URL it came from and its SHA-256 at that first
download (trust on first use). A run's provenance then says which (`ReleaseOrigin`):
- "the authors' release": downloaded from the official URL;
- "mirror": downloaded from another URL (the record names it): any file could sit there;
- "unknown": a cached file without a record (placed by hand, or cached before hilo kept records);
and whether the file's SHA-256 still equals the one recorded at its first download.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from hilocli.errors import HiloError
from hilocli.outfolder import atomic_write
from hilocli.output import sha256_file

RELEASE_URL_ENV = "HILO_RELEASE_URL"  # replaces the release base URL (mirrors, tests)
RECORD_SUFFIX = ".hilo-download.json"


def release_url(variant) -> str:
    base = os.environ.get(RELEASE_URL_ENV)
    if not base:
        return variant.url
    tail = variant.url.split("/releases/download/", 1)[1]  # e.g. v1.0/litv2_s.pth
    return f"{base.rstrip('/')}/{tail}"


def cache_dir() -> Path:
    """The standard torch hub checkpoint cache ($TORCH_HOME/hub/checkpoints)."""
    import torch.hub  # here: `hilo info --list` imports this module without torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _stream(response, url: str, total: int | None, dest: Path, tmp: Path, progress: bool):
    import http.client  # here, with urllib: only a download pays for the network modules

    with (
        open(tmp, "wb") as out,
        Progress(
            TextColumn("[bold]download[/] {task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            disable=not progress,
            transient=True,
        ) as bar,
    ):
        task, got = bar.add_task(dest.name, total=total), 0
        try:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                got += len(chunk)
                bar.advance(task, len(chunk))
        except (OSError, http.client.HTTPException) as exc:
            broke = type(exc).__name__
            raise HiloError(f"download of {url} broke off ({broke}); try again") from None
    if total is not None and got != total:
        raise HiloError(f"download of {url} broke off after {got:,} of {total:,} bytes; try again")


def download(url: str, dest: Path, progress: bool = True) -> Path:
    """Fetch url (http, https or file) to dest with a progress bar; dest appears only when whole
    (`hilocli.outfolder.atomic_write`: nothing is left on failure, a killed download's temporary
    is removed by the next one)."""
    import urllib.error  # here: see _stream
    import urllib.request

    try:
        response = urllib.request.urlopen(url, timeout=30)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HiloError(
            f"cannot download {url} ({reason}); offline? copy the file to {dest} "
            "or pass --checkpoint PATH"
        ) from None
    total = int(response.headers.get("Content-Length") or 0) or None
    with response:
        atomic_write(dest, lambda tmp: _stream(response, url, total, dest, tmp, progress))
    return dest


@dataclass(frozen=True)
class ReleaseOrigin:
    """Where a cached release file came from, by its download record."""

    origin: str  # "the authors' release" | "mirror" | "unknown"
    url: str | None  # the URL it was downloaded from (None: no record)
    first_sha256: str | None  # SHA-256 at its first download (None: no record)

    def check(self, sha256: str) -> str:
        """'recorded at its first download', 'same as at its first download', 'differs ...'."""
        if self.first_sha256 is None:
            return "no record of its first download"
        if sha256 == self.first_sha256:
            return "same as at its first download"
        return f"DIFFERS from the sha256 {self.first_sha256} recorded at its first download"

    def to_dict(self) -> dict[str, Any]:
        return {"origin": self.origin, "url": self.url, "first_sha256": self.first_sha256}


def _read_record(record: Path, variant) -> ReleaseOrigin:
    try:
        data = json.loads(record.read_text())
        url, sha = str(data["url"]), str(data["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return ReleaseOrigin("unknown", None, None)
    return ReleaseOrigin("the authors' release" if url == variant.url else "mirror", url, sha)


def fetch_released(variant, progress: bool = True) -> tuple[Path, ReleaseOrigin]:
    """(path, origin) of the variant's released weights, downloaded into the hub cache once; the
    first download records its URL and SHA-256 beside the file."""
    url = release_url(variant)
    dest = cache_dir() / url.rsplit("/", 1)[-1]
    if variant.name.startswith("litv2_s_alpha"):  # alpha_0.9.pth would be ambiguous in the cache
        dest = dest.with_name(f"litv2_s_{dest.name}")
    record = dest.with_name(dest.name + RECORD_SUFFIX)
    if not dest.exists():
        download(url, dest, progress=progress)
        text = json.dumps({"url": url, "sha256": sha256_file(dest)}, indent=2) + "\n"
        atomic_write(record, lambda tmp: tmp.write_text(text))
    return dest, _read_record(record, variant)
