"""A layer's whole attention matrices (`--save-raw`) and the memory budget they need."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hilocli.attn_map.maps import LayerQK
from hilocli.attn_map.summaries import DEFAULT_CHUNK_SIZE
from hilocli.models.geometry import (
    HiLoLayerInfo,
    LayerGeometry,
    layer_geometry,
    min_input_size,
)
from hilocli.models.litv2 import attention_probs


def raw_nbytes(g: LayerGeometry) -> int:
    """Bytes (float32) of a layer's full attention matrices in the model's padded layout:
    Hi-Fi (G, hifi_heads, s*s, s*s) and Lo-Fi (lofi_heads, Hp*Wp, M)."""
    Hp, Wp = g.padded
    G = g.pooled[0] * g.pooled[1]
    hifi = G * g.layer.hifi_heads * g.num_hifi_keys**2
    lofi = g.layer.lofi_heads * Hp * Wp * g.num_lofi_keys
    return 4 * (hifi + lofi)


def full_matrices(qk: LayerQK, chunk_size: int = DEFAULT_CHUNK_SIZE) -> dict[str, np.ndarray]:
    """The layer's whole softmax matrices as float32 numpy arrays, filled chunk by chunk (peak:
    the arrays themselves plus one chunk): {"hifi": (G, h, s*s, s*s), "lofi": (h, Hp*Wp, M)}.
    Rows of padded query positions are included, as the model computes them."""
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        if qk.hifi_q is not None:
            G, h, ss, _ = qk.hifi_q.shape
            arr = np.empty((G, h, ss, ss), dtype=np.float32)
            per = max(1, chunk_size // ss)
            for start in range(0, G, per):
                w = attention_probs(
                    qk.hifi_q[start : start + per], qk.hifi_k[start : start + per], qk.scale
                )  # (g, h, ss, ss)
                arr[start : start + per] = w.float().cpu().numpy()
            out["hifi"] = arr
        if qk.lofi_q is not None:
            h, N, _ = qk.lofi_q.shape
            arr = np.empty((h, N, qk.lofi_k.shape[1]), dtype=np.float32)
            for start in range(0, N, chunk_size):
                w = attention_probs(
                    qk.lofi_q[:, start : start + chunk_size], qk.lofi_k, qk.scale
                )  # (h, n, M)
                arr[:, start : start + chunk_size] = w.float().cpu().numpy()
            out["lofi"] = arr
    return out


@dataclass
class RawBudget:
    """Whether --save-raw fits: bytes needed vs allowed, and a resolution that would fit."""

    needed: int
    budget: int
    fitting_resolution: int | None = None

    @property
    def fits(self) -> bool:
        return self.needed <= self.budget


def raw_budget(
    layers: list[HiLoLayerInfo],
    cfg,
    input_size: tuple[int, int],
    budget: int,
    resolution: int,
    step: int = 32,
) -> RawBudget:
    """Bytes the full matrices of `layers` need for an input of input_size = (w, h); when over
    `budget`, the largest resolution (multiple of `step`, same aspect ratio, the shorter side =
    resolution) below `resolution` that fits."""

    def needed_for(size: tuple[int, int]) -> int:
        return sum(raw_nbytes(layer_geometry(info, cfg, size)) for info in layers)

    needed = needed_for(input_size)
    result = RawBudget(needed=needed, budget=budget)
    if needed <= budget:
        return result
    w, h = input_size
    short = min(w, h)
    r = (min(resolution, short) // step) * step
    while r >= min_input_size(cfg):
        size = (max(r, int(w * r / short)), max(r, int(h * r / short)))
        if needed_for(size) <= budget:
            result.fitting_resolution = r
            break
        r -= step
    return result
