"""A layer's whole attention matrices (`--save-raw`) and the memory budget they need."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hilocli.attn_map.maps import LayerQK
from hilocli.attn_map.summaries import DEFAULT_CHUNK_SIZE
from hilocli.hilo.core import attention_probs
from hilocli.models.geometry import LayerGeometry


def raw_nbytes(g: LayerGeometry) -> int:
    """Bytes (float32) of a layer's full attention matrices in the model's layout: Hi-Fi
    (G, hifi_heads, s*s, s*s) and Lo-Fi (lofi_heads, Nq, M), Nq the Lo-Fi query rows."""
    G = g.windows[0] * g.windows[1]
    hifi = G * g.layer.hifi_heads * g.num_hifi_keys**2
    lofi = g.layer.lofi_heads * g.lofi_queries[0] * g.lofi_queries[1] * g.num_lofi_keys
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
    geometries: list[LayerGeometry],
    budget: int,
    resolution: int,
    smallest: int = 1,
    step: int = 32,
) -> RawBudget:
    """Bytes the full matrices of the layers (their geometries on this input) need; when over
    `budget`, the largest resolution (multiple of `step`, same aspect ratio, the shorter side =
    resolution) below `resolution` that fits (`LayerGeometry.at`)."""
    needed = sum(raw_nbytes(g) for g in geometries)
    result = RawBudget(needed=needed, budget=budget)
    if needed <= budget or not geometries:
        return result
    w, h = geometries[0].input_size
    short = min(w, h)
    r = (min(resolution, short) // step) * step
    while r >= max(smallest, 1):
        size = (max(r, int(w * r / short)), max(r, int(h * r / short)))
        if sum(raw_nbytes(g.at(size)) for g in geometries) <= budget:
            result.fitting_resolution = r
            break
        r -= step
    return result
