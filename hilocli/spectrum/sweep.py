"""One pass over a run's images: listed and hashed once, decoded in workers, every batch fed to
each model's collector (the model under test and its random inits), and, under torchrun/srun,
every process's share gathered and merged on rank 0 (`shards.py`)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hilocli.batches import image_chunks, shard_files
from hilocli.distributed import SINGLE, agree, from_main, gather, ordered
from hilocli.errors import HiloError
from hilocli.inputs import collect_inputs
from hilocli.runtime import forward_context, resolve_precision, to_device
from hilocli.scenes import no_spatial_content, scene_hashes
from hilocli.spectrum.collect import LayerSpectra, SpectrumCollector
from hilocli.spectrum.measures import SpectrumSettings
from hilocli.spectrum.shards import collector_part, merge_parts

Progress = Callable[[int, int], None]  # (files done, files in total)


@dataclass
class Measured:
    """What one pass over the images gave: per model, the layers' spectra."""

    spectra: list[list[LayerSpectra]]  # one list per model, in the order given
    analysed: list[str]  # paths, in the order fed to the models
    skipped: list[tuple[Path, str]]  # (path, the loader's reason)
    hashes: np.ndarray  # (n, 2) uint64 perceptual hashes of each input and its mirror image
    # (zeros for a run of one file: one image is one scene, nothing to compare it with)
    blank: np.ndarray  # (n,) bool: inputs with no spatial content
    depth: Any = None  # the first model's DepthCurve when settings.depth


@dataclass
class _Shard:
    """What one process fed its collectors (keys order images as a single process would)."""

    keys: list[tuple[int, int]] = field(default_factory=list)  # one per batch
    analysed: list[tuple[tuple[int, int, int], str]] = field(default_factory=list)
    skipped: list[tuple[tuple[int, int], tuple[Path, str]]] = field(default_factory=list)
    looks: list[tuple[tuple[int, int, int], tuple]] = field(default_factory=list)  # hash, blank


def measure(
    models: list[Any],  # LoadedModel: the model, then its random-init twins
    layers: list[int],  # indices into each model's layers
    settings: SpectrumSettings,
    paths: list[Path],
    resolution: int,
    crop: bool,
    batch_size: int,
    device: Any,
    progress: Progress | None = None,
    preprocess=None,  # a user model's --mean/--std (None: the released preprocessing)
    precision: Any = None,
    workers: int = 0,
    where: Any = None,  # hilocli.distributed.Placement; None: one process
    stop_early: bool = True,  # False for compiled models (`SpectrumCollector`)
) -> Measured | None:
    """Decode `paths` (hilocli.batches: `workers` processes) and feed every batch to each model's
    collector. Several processes: each measures its chunks, rank 0 gathers and merges them and
    returns the result; the other ranks return None."""
    precision = precision or resolve_precision("float32", device)
    where = where or SINGLE
    looks = Looks(preprocess, hashing=len(paths) > 1)
    cuda = getattr(device, "type", None) == "cuda"
    with ExitStack() as stack:
        cols = [stack.enter_context(c) for c in collectors(models, layers, settings, stop_early)]

        def feed_mine() -> _Shard:
            chunks = image_chunks(
                paths, resolution, crop, batch_size, preprocess, workers=workers,
                pin_memory=cuda, where=where,
            )  # fmt: skip
            total = shard_files(len(paths), batch_size, where)  # this process's files
            return feed(cols, chunks, total, device, precision, looks, progress)

        shards = gathered(where, cols, agree(where, feed_mine))
        if shards is None:  # not rank 0: its share is sent
            return None
        analysed = ordered([s.analysed for s in shards])
        skipped = ordered([s.skipped for s in shards])
        seen = ordered([s.looks for s in shards])
        if not analysed:
            raise HiloError(
                f"none of the {len(paths)} files could be read as an image (first: {skipped[0][1]})"
            )
        depth = cols[0].depth_curve() if settings.depth else None
    hashes = np.array([h for h, _ in seen], dtype=np.uint64).reshape(-1, 2)
    blank = np.array([b for _, b in seen], dtype=bool)
    return Measured([col.finish() for col in cols], analysed, skipped, hashes, blank, depth)


def collectors(models: list[Any], layers: list[int], settings: SpectrumSettings, stop_early: bool):
    """One SpectrumCollector per model; the depth curve is read from the first model only, so
    its random inits skip that work."""
    twin = replace(settings, depth=False)
    return [
        SpectrumCollector(
            m.model,
            [m.layers[i] for i in layers],
            settings if k == 0 else twin,
            m.blocks if k == 0 else (),
            stop_early,
        )
        for k, m in enumerate(models)
    ]


@dataclass(frozen=True)
class Looks:
    """How each input looks: its perceptual hashes (source scenes) and whether it is blank."""

    preprocess: Any  # the normalisation the inputs went through (None: the released one)
    hashing: bool  # one image is one scene: no hash to compare (and no scipy.fft)

    def of(self, x: torch.Tensor) -> list[tuple]:
        """(hashes, blank) of each image of a batch x (B, 3, H, W)."""
        p = self.preprocess
        norm = (None, None) if p is None else (p.mean, p.std)
        hashes = scene_hashes(x, *norm) if self.hashing else np.zeros((len(x), 2), np.uint64)
        return list(zip(hashes, no_spatial_content(x, *norm), strict=True))


def feed(cols, chunks, total: int, device, precision, looks: Looks, progress) -> _Shard:
    """Every batch of `chunks` to each collector; what this process fed, in a `_Shard`."""
    mine, done = _Shard(), 0
    for chunk in chunks:
        mine.skipped += [((chunk.index, j), s) for j, s in enumerate(chunk.skipped)]
        for group in chunk.groups:
            x = to_device(group.x, device)  # (B, 3, H, W)
            with forward_context(precision), torch.no_grad():
                for col in cols:
                    col.add_batch(x)
            mine.keys.append(group.key)
            mine.analysed += [((*group.key, i), str(p)) for i, p in enumerate(group.paths)]
            mine.looks += [((*group.key, i), look) for i, look in enumerate(looks.of(x))]
        done += chunk.files
        if progress is not None:
            progress(done, total)
    return mine


def gathered(where, cols, mine: _Shard) -> list[_Shard] | None:
    """Every process's shard, its collectors' parts merged into rank 0's `cols`; [mine] in a
    single process; None on the other ranks (their share sent to rank 0)."""
    if not where.distributed:
        return [mine]
    parts = gather(where, (mine, [collector_part(c, mine.keys) for c in cols]))
    if parts is None:
        return None
    for k, col in enumerate(cols):
        merge_parts(col, [p[1][k] for p in parts])
    return [p[0] for p in parts]


def listed_inputs(where: Any, inputs: tuple[Path, ...], limit: int | None):
    """(InputSet, files to analyse) of a run's inputs: listed and hashed on rank 0 alone and
    handed to every rank (`hilo spectrum`, `hilo compare`); none at all is a HiloError on every
    rank together. The files hilo wrote (its own outputs, here or earlier) are never read."""
    found = from_main(where, lambda: collect_inputs(inputs, limit))
    paths = found.files  # collect_inputs stopped at `limit` images
    if not paths:
        first = f" (first skipped: {found.skipped[0][1]})" if found.skipped else ""
        raise HiloError("no image files found in " + ", ".join(map(str, inputs)) + first)
    return found, paths
