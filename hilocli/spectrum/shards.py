"""Spectrum collectors split over processes and put back together on rank 0.

Each rank measures its chunks of the images (`hilocli.batches`) with its own `SpectrumCollector`;
`collector_part` takes what the collector holds (per-image fields, summed maps and profiles,
transfer gains, depth curves) to the CPU; rank 0 `merge_parts` them into its own collector, with
per-image values in the single-process order (by batch key), so `finish()` gives the per-image
numbers a single process gives. Sums (averaged maps) are added in rank order: equal to a single
process's up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from hilocli.distributed import ordered
from hilocli.spectrum.branch import GridSums
from hilocli.spectrum.measures import frequency_axes

Key = tuple[int, int]  # (chunk, group): hilocli.batches.Group.key


def _cpu(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().cpu()


@dataclass
class BranchPart:
    channels: int | None
    per_image: dict[str, list[torch.Tensor]]  # field -> one (B,) tensor per batch
    sums: dict[tuple[int, int], dict[str, Any]]  # grid -> {"count": int, name: tensor}


@dataclass
class CollectorPart:
    """One rank's share of one collector, on the CPU, picklable."""

    keys: list[Key]  # the batches, in the order they were added
    images: int
    branches: dict[int, dict[str, BranchPart]]  # layer index -> branch -> part
    gains: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    depth: list[dict[str, Any]] | None = None  # per block: curve_sum, highest, count, grid, freq


SUM_FIELDS = ("log_amp", "raw_log_diag", "radial", "radial_rel", "paper")


def collector_part(col: Any, keys: list[Key]) -> CollectorPart:
    """What `col` (a SpectrumCollector) measured on this rank, moved to the CPU."""
    branches: dict[int, dict[str, BranchPart]] = {}
    for index, accs in col.accs.items():
        branches[index] = {
            b: BranchPart(
                channels=acc.channels,
                per_image={k: [v.detach().cpu() for v in vs] for k, vs in acc.per_image.items()},
                sums={
                    grid: {"count": s.count, **{n: _cpu(getattr(s, n)) for n in SUM_FIELDS}}
                    for grid, s in acc.sums.items()
                },
            )
            for b, acc in accs.items()
        }
    depth = None
    if col._depth is not None:
        depth = [
            {
                "curve_sum": _cpu(c.curve_sum),
                "highest": [h.detach().cpu() for h in c.highest],
                "count": c.count,
                "grid": c.grid,
                "freq": c.freq,
            }
            for c in col._depth
        ]
    gains = {i: {b: g.detach().cpu() for b, g in gs.items()} for i, gs in col._gains.items()}
    return CollectorPart(list(keys), col.images, branches, gains, depth)


def _add(old: torch.Tensor | None, new: torch.Tensor | None, device) -> torch.Tensor | None:
    if new is None:
        return old
    new = new.to(device)
    return new if old is None else old + new


def merge_parts(col: Any, parts: list[CollectorPart]) -> None:
    """Replace `col`'s state by the union of `parts` (every rank's, rank 0's included)."""
    device = next((p.device for p in col.model.parameters()), torch.device("cpu"))
    for index, accs in col.accs.items():
        for b, acc in accs.items():
            got = [part.branches[index][b] for part in parts]
            acc.channels = next((g.channels for g in got if g.channels is not None), None)
            for name in acc.per_image:
                pairs = [list(zip(p.keys, g.per_image[name])) for p, g in zip(parts, got)]
                acc.per_image[name] = [t.to(device) for t in ordered(pairs)]
            acc.sums = {}
            for g in got:
                for (H, W), sums in g.sums.items():
                    mine = acc.sums.get((H, W))
                    if mine is None:
                        axes = frequency_axes(H, W, acc.settings.cutoff, acc.window_size, device)
                        mine = acc.sums[(H, W)] = GridSums(axes)
                    mine.count += sums["count"]
                    for n in SUM_FIELDS:
                        setattr(mine, n, _add(getattr(mine, n), sums[n], device))
    col.images = sum(p.images for p in parts)
    col._gains = {}
    for p in parts:
        for index, gs in p.gains.items():
            mine = col._gains.setdefault(index, {})
            for b, g in gs.items():
                mine[b] = _add(mine.get(b), g, device)
    if col._depth is not None:
        for k, curve in enumerate(col._depth):
            blocks = [p.depth[k] for p in parts if p.depth is not None]
            done = [blk for blk in blocks if blk["count"]]
            curve.curve_sum = None
            for blk in done:
                curve.curve_sum = _add(curve.curve_sum, blk["curve_sum"], device)
            if done:
                curve.grid, curve.freq = done[0]["grid"], done[0]["freq"]
            curve.count = sum(blk["count"] for blk in blocks)
            curve.highest = [
                h.to(device)
                for h in ordered(
                    [list(zip(p.keys, p.depth[k]["highest"])) for p in parts if p.depth is not None]
                )
            ]
