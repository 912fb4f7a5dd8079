"""Park & Kim's measure (How Do Vision Transformers Work?, ICLR 2022) as they define it, and its
depth curve for LITv2.

Their definition (their fourier analysis code): for a feature map (B, C, h, w), log(|FFT2| + 1e-6)
WITHOUT mean removal, rolled by (h/2, w/2), averaged over images and channels, read on the
diagonal from the zero frequency over the next ceil(h/2) points (`diag()[int(h/2):]`): per axis
frequencies k/h, k = 0 .. ceil(h/2) - 1 (on even h it ends at (h/2 - 1)/h: no Nyquist point),
minus its value at zero frequency ("relative log amplitude"). The depth curve is that relative
log amplitude at the highest diagonal frequency for the output of every block, INCLUDING the
residual (x + attn(norm1(x)), then + mlp(norm2(x))). Non-square maps (not in their setting) use
the nearest sample on the longer axis and are flagged `square=False`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from hilocli.weights import check_finite

PARKKIM_EPS = 1e-6  # their log(|F| + 1e-6)


def parkkim_diagonal(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(freq, rows, cols) of their diagonal in torch.fft order: k = 0 .. ceil(L/2) - 1, L the
    shorter side; freq k / L cycles per token."""
    short = min(height, width)
    k = np.arange(short - short // 2)
    freq = k / short
    return freq, np.round(freq * height).astype(int), np.round(freq * width).astype(int)


def parkkim_curves(maps: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """Per-image relative log amplitude on their diagonal: maps (B, H, W, C) -> (freq (K,),
    curves (B, K)); the mean over images of the curves is their curve."""
    B, H, W, C = maps.shape
    x = maps.permute(0, 3, 1, 2)  # (B, C, H, W)
    x = x.double() if x.dtype == torch.float64 else x.float()
    logs = torch.log(torch.fft.fft2(x).abs() + PARKKIM_EPS).mean(1)  # (B, H, W)
    freq, rows, cols = parkkim_diagonal(H, W)
    diag = logs[:, torch.as_tensor(rows), torch.as_tensor(cols)]  # (B, K)
    return freq, diag - diag[:, :1]


@dataclass
class BlockCurve:
    name: str  # layers.i.blocks.j
    stage: int
    grid: tuple[int, int]
    hilo_index: int | None  # its attention layer's index (what --layer takes), None: no attention
    freq: np.ndarray  # (K,)
    curve_sum: torch.Tensor | None = None  # (K,) sum over images
    highest: list[torch.Tensor] = field(default_factory=list)  # per batch (B,)
    count: int = 0


@dataclass
class DepthCurve:
    """Park & Kim's Delta log amplitude (highest diagonal frequency) for every block output."""

    blocks: list[str]
    stages: list[int]
    grids: list[tuple[int, int]]
    hilo_index: list[int | None]
    square: list[bool]
    freq: list[np.ndarray]  # per block (K,)
    rel_log_amplitude: list[np.ndarray]  # per block (K,) mean over images (their curve)
    per_image_highest: np.ndarray  # (n_images, n_blocks) the last point of each image's curve

    @property
    def highest(self) -> np.ndarray:
        """(n_blocks,) the depth curve: mean over images at the highest diagonal frequency."""
        return np.array([c[-1] for c in self.rel_log_amplitude])

    def to_dict(self) -> dict[str, Any]:
        return {
            "measure": "Park & Kim (ICLR 2022) relative log amplitude of block outputs "
            "(residual included), diagonal k/L for k = 0..ceil(L/2)-1",
            "blocks": self.blocks,
            "stages": self.stages,
            "grids": [list(g) for g in self.grids],
            "hilo_index": self.hilo_index,
            "square": self.square,
            "freq": [f.tolist() for f in self.freq],
            "rel_log_amplitude": [c.tolist() for c in self.rel_log_amplitude],
            "highest": self.highest.tolist(),
            "per_image_highest": self.per_image_highest.tolist(),
        }


@contextmanager
def block_outputs(model: torch.nn.Module, blocks: list) -> Iterator[list[BlockCurve]]:
    """Forward hooks on every block (`hilocli.loaded.BlockMeta`: LITv2's, as its config states
    them, each called as (x, H, W)); each forward adds its images to the curves. Hooks are removed
    on exit."""
    curves: list[BlockCurve] = []
    handles = []

    def hook_for(curve: BlockCurve):
        def hook(_mod, args, out):
            H, W = int(args[1]), int(args[2])
            B, _, C = out.shape
            maps = out.detach().reshape(B, H, W, C)  # (B, H, W, C) block output with residual
            check_finite(maps, f"the output of block {curve.name}")
            freq, rel = parkkim_curves(maps)
            curve.freq, curve.grid = freq, (H, W)
            total = rel.sum(0)  # (K,)
            curve.curve_sum = total if curve.curve_sum is None else curve.curve_sum + total
            curve.highest.append(rel[:, -1])
            curve.count += B

        return hook

    try:
        for block in blocks:
            curve = BlockCurve(block.name, block.stage, (0, 0), block.hilo_index, np.zeros(0))
            curves.append(curve)
            module = model.get_submodule(block.name)
            handles.append(module.register_forward_hook(hook_for(curve)))
        yield curves
    finally:
        for h in handles:
            h.remove()


def finish_depth(curves: list[BlockCurve]) -> DepthCurve:
    if not curves or curves[0].count == 0:
        raise ValueError("no images went through the model")
    return DepthCurve(
        blocks=[c.name for c in curves],
        stages=[c.stage for c in curves],
        grids=[c.grid for c in curves],
        hilo_index=[c.hilo_index for c in curves],
        square=[c.grid[0] == c.grid[1] for c in curves],
        freq=[c.freq for c in curves],
        rel_log_amplitude=[(c.curve_sum / c.count).double().cpu().numpy() for c in curves],
        per_image_highest=torch.stack([torch.cat(c.highest) for c in curves], 1)
        .double()
        .cpu()
        .numpy(),
    )
