"""Decoded batches for runs over many images: a torch DataLoader over fixed chunks of files.

    for chunk in image_chunks(paths, 224, crop=True, batch_size=16, workers=2):
        for group in chunk.groups:       # images of one size: one forward each
            model(group.x)               # (B, 3, H, W), pinned on CUDA runs

The file list is cut into chunks of `batch_size` files (chunk i: files i*b .. i*b+b-1), always the
same chunks whatever the number of workers or processes: a chunk is decoded in a worker process
(`--workers N`, 0 = in the main process) and its images grouped by size (with --no-crop sizes
differ), so every forward sees the same batch in every configuration and per-image numbers are
identical. Several processes (`hilocli.distributed`) take the chunks round robin. Each group has a
key (chunk, group) that orders images as one process would.

Unreadable files are in `Chunk.skipped` with the loader's reason, never an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hilocli.distributed import SINGLE, Placement, shard
from hilocli.image_decode import max_pixels_limit
from hilocli.images import load_many

MAX_DEFAULT_WORKERS = 8


@dataclass
class Group:
    """Images of one size from one chunk, stacked for one forward."""

    key: tuple[int, int]  # (chunk index, group index in the chunk): the single-process order
    x: torch.Tensor  # (B, 3, H, W) float32, normalised
    paths: list[Path]

    def pin_memory(self) -> Group:
        self.x = self.x.pin_memory()
        return self


@dataclass
class Chunk:
    """Up to batch_size consecutive files, decoded."""

    index: int
    groups: list[Group] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (path, reason)
    files: int = 0  # files in the chunk, read or not

    def pin_memory(self) -> Chunk:  # called by the DataLoader's pinning thread
        for g in self.groups:
            g.pin_memory()
        return self


class ChunkDataset(torch.utils.data.Dataset):
    """Item k: chunk `chunk_ids[k]` of `paths`, decoded and grouped by size."""

    def __init__(
        self,
        paths: Sequence[Path],
        chunk_ids: Sequence[int],
        resolution: int,
        crop: bool,
        batch_size: int,
        preprocess=None,
    ):
        self.paths = list(paths)
        self.chunk_ids = list(chunk_ids)
        self.resolution, self.crop, self.batch_size = resolution, crop, batch_size
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.chunk_ids)

    def __getitem__(self, k: int) -> Chunk:
        index = self.chunk_ids[k]
        start = index * self.batch_size
        files = self.paths[start : start + self.batch_size]
        prepared, skipped = load_many(files, self.resolution, self.crop, preprocess=self.preprocess)
        by_size: dict[tuple[int, ...], list] = {}
        for p in prepared:
            by_size.setdefault(tuple(p.tensor.shape), []).append(p)
        groups = [
            Group(
                key=(index, g),
                x=torch.stack([p.tensor for p in members]),  # (B, 3, H, W)
                paths=[p.path for p in members],
            )
            for g, members in enumerate(by_size.values())
        ]
        return Chunk(index=index, groups=groups, skipped=skipped, files=len(files))


def chunk_count(files: int, batch_size: int) -> int:
    return -(-files // batch_size)


def shard_files(files: int, batch_size: int, where: Placement = SINGLE) -> int:
    """How many of `files` files fall into this process's chunks."""
    return sum(
        min(batch_size, files - i * batch_size)
        for i in shard(chunk_count(files, batch_size), where)
    )


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers(where: Placement = SINGLE, device: Any = None) -> int:
    """Decoding workers per process, at most 8, from the cores this process may use (its share
    when several processes share the machine): on a GPU all but one; on the CPU only the cores
    the forward's threads leave free, so usually 0 (decoding is a few percent of a CPU forward
    that already uses every core: a worker beside it was measured no faster, docs/benchmarks.md)."""
    per_process = available_cores() // max(1, where.world_size if where.distributed else 1)
    if getattr(device, "type", device) in ("cuda", "mps", "xpu"):
        return max(0, min(MAX_DEFAULT_WORKERS, per_process - 1))
    return max(0, min(MAX_DEFAULT_WORKERS, per_process - torch.get_num_threads()))


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)  # a decoding worker does not compete with the forward's threads


def _as_is(chunk: Chunk) -> Chunk:
    return chunk


def image_chunks(
    paths: Sequence[Path],
    resolution: int,
    crop: bool,
    batch_size: int,
    preprocess=None,
    *,
    workers: int = 0,
    pin_memory: bool = False,
    where: Placement = SINGLE,
) -> Iterator[Chunk]:
    """This process's chunks of `paths`, in order, decoded by `workers` processes (0: here).
    `pin_memory`: page-locked batches for fast host-to-GPU copies (CUDA runs)."""
    max_pixels_limit()  # a bad HILO_MAX_PIXELS is a usage error here, not inside a worker
    ids = shard(chunk_count(len(paths), batch_size), where)
    data = ChunkDataset(paths, ids, resolution, crop, batch_size, preprocess)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=None,  # a chunk is already a batch
        shuffle=False,
        num_workers=workers,
        collate_fn=_as_is,
        pin_memory=pin_memory,
        worker_init_fn=_one_thread if workers else None,
        prefetch_factor=2 if workers else None,
    )
    yield from loader
