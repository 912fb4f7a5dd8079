"""Whole-image locality summaries of a HiLo layer: per head, mean attention distance, entropy and
(Lo-Fi) attention received, over every real query token.

The queries run in chunks of `chunk_size`, so the largest temporary is (heads, chunk, keys)
whatever the image size. Only real tokens (r < H, c < W) are queries (the model crops the padded
positions' outputs); padded keys stay, since the model attends to them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hilocli.attn_map.maps import LayerQK
from hilocli.errors import HiloError
from hilocli.hilo.core import attention_probs
from hilocli.models.geometry import LayerGeometry

DEFAULT_CHUNK_SIZE = 256  # query tokens per chunk


@dataclass
class BranchSummary:
    """Per-head numbers of one branch, over all real query tokens of one image."""

    branch: str  # "hifi" | "lofi"
    heads: list[int]  # global head indices
    num_keys: int  # keys per query (s*s for Hi-Fi, M for Lo-Fi)
    num_queries: int  # real query tokens averaged over
    mean_distance: np.ndarray  # (heads,) attention-weighted distance, input pixels
    entropy: np.ndarray  # (heads,) mean row entropy, nats
    uniform_distance: float  # the distance uniform weights would give (same keys), pixels
    received: np.ndarray | None = None  # Lo-Fi only: (heads, Hp/s, Wp/s), mean weight per key

    @property
    def entropy_normalised(self) -> np.ndarray:
        """Entropy / log(#keys): 1 = uniform over the keys, 0 = one key. NaN with one key."""
        if self.num_keys < 2:
            return np.full_like(self.entropy, np.nan)
        return self.entropy / math.log(self.num_keys)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "branch": self.branch,
            "heads": self.heads,
            "num_keys": self.num_keys,
            "num_queries": self.num_queries,
            "mean_distance_px": self.mean_distance.tolist(),
            "entropy_nats": self.entropy.tolist(),
            "entropy_normalised": self.entropy_normalised.tolist(),
            "uniform_distance_px": float(self.uniform_distance),
        }
        if self.received is not None:
            d["attention_received"] = self.received.tolist()
        return d  # NaN stays NaN here: the run record turns it into null and lists it


@dataclass
class LayerSummary:
    geometry: LayerGeometry
    hifi: BranchSummary | None
    lofi: BranchSummary | None
    chunk_size: int = DEFAULT_CHUNK_SIZE

    def branches(self) -> list[BranchSummary]:
        return [b for b in (self.hifi, self.lofi) if b is not None]

    def to_dict(self) -> dict[str, Any]:
        g = self.geometry
        return {
            **g.to_dict(),
            "hifi_max_distance_px": g.hifi_max_distance if g.layer.hifi_heads else None,
            "window_diagonal_px": g.window_diagonal if g.layer.window_size > 1 else None,
            "hifi": None if self.hifi is None else self.hifi.to_dict(),
            "lofi": None if self.lofi is None else self.lofi.to_dict(),
        }


class _Sums:
    """Per-head running sums over query chunks of one branch: weighted distance and entropy."""

    def __init__(self, heads: int, device):
        self.distance = torch.zeros(heads, dtype=torch.float64, device=device)
        self.entropy = torch.zeros(heads, dtype=torch.float64, device=device)

    def add(
        self, q: torch.Tensor, k: torch.Tensor, scale: float, dist: torch.Tensor, real: torch.Tensor
    ) -> torch.Tensor:
        """One chunk: q (g, h, n, d), k (g, h, M, d), dist (g or 1, n, M) key distances, real
        (g or 1, n) 1 for real query tokens, 0 for padding. Returns the weights (g, h, n, M)."""
        p = attention_probs(q, k, scale)  # (g, h, n, M)
        mask = real.double().unsqueeze(1)  # (g, 1, n)
        self.distance += ((p.double() * dist.unsqueeze(1)).sum(-1) * mask).sum(dim=(0, 2))
        self.entropy += (torch.special.entr(p).sum(-1).double() * mask).sum(dim=(0, 2))
        return p

    def summary(
        self,
        branch: str,
        heads: list[int],
        num_keys: int,
        num_queries: int,
        uniform_distance: float,
        received: np.ndarray | None = None,
    ) -> BranchSummary:
        distance = (self.distance / num_queries).cpu().numpy()
        entropy = (self.entropy / num_queries).cpu().numpy()
        if not (np.isfinite(distance).all() and np.isfinite(entropy).all()):
            raise HiloError(
                f"non-finite attention weights in the {branch} branch; refusing to analyse"
            )
        return BranchSummary(
            branch=branch,
            heads=heads,
            num_keys=num_keys,
            num_queries=num_queries,
            mean_distance=distance,
            entropy=entropy,
            uniform_distance=uniform_distance,
            received=received,
        )


def _check_chunk(chunk_size: int) -> None:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")


def real_query_index(g: LayerGeometry, device=None) -> torch.Tensor:
    """Flat indices into the Lo-Fi query grid (`LayerGeometry.lofi_queries`) of the real
    tokens, row-major."""
    H, W = g.grid
    rows = torch.arange(H, device=device).unsqueeze(1)
    cols = torch.arange(W, device=device).unsqueeze(0)
    return (rows * g.lofi_queries[1] + cols).reshape(-1)  # (H*W,)


def summarise_lofi(qk: LayerQK, chunk_size: int = DEFAULT_CHUNK_SIZE) -> BranchSummary | None:
    """Lo-Fi per-head distance, entropy and attention received, `chunk_size` queries at a time."""
    if qk.lofi_q is None:
        return None
    _check_chunk(chunk_size)
    g = qk.geometry
    dev = qk.lofi_q.device
    heads, M = qk.lofi_k.shape[0], qk.lofi_k.shape[1]
    Wp = g.lofi_queries[1]
    t, s = g.stride, g.layer.window_size
    Hk, Wk = g.pooled
    ki = torch.arange(M, device=dev)
    key_xy = torch.stack([(ki % Wk + 0.5) * s * t, (ki // Wk + 0.5) * s * t], -1).double()  # (M, 2)
    queries = real_query_index(g, dev)  # (N,)
    sums = _Sums(heads, dev)
    received = torch.zeros(heads, M, dtype=torch.float64, device=dev)
    uniform_sum = 0.0
    for start in range(0, queries.numel(), chunk_size):
        idx = queries[start : start + chunk_size]  # (n,)
        q_xy = torch.stack([(idx % Wp + 0.5) * t, (idx // Wp + 0.5) * t], -1).double()  # (n, 2)
        dist = torch.cdist(q_xy, key_xy)  # (n, M)
        p = sums.add(
            qk.lofi_q[None, :, idx],
            qk.lofi_k[None],
            qk.scale,
            dist[None],
            torch.ones(1, idx.numel(), device=dev),
        )  # (1, h, n, M)
        received += p[0].sum(dim=1).double()
        uniform_sum += float(dist.mean(-1).sum())
    n = queries.numel()
    return sums.summary(
        "lofi",
        list(range(g.layer.hifi_heads, g.layer.hifi_heads + heads)),
        M,
        n,
        uniform_sum / n,
        (received / n).reshape(heads, Hk, Wk).cpu().numpy(),
    )


def summarise_hifi(qk: LayerQK, chunk_size: int = DEFAULT_CHUNK_SIZE) -> BranchSummary | None:
    """Hi-Fi per-head distance and entropy; windows in chunks of ~chunk_size query tokens."""
    if qk.hifi_q is None:
        return None
    _check_chunk(chunk_size)
    g = qk.geometry
    dev = qk.hifi_q.device
    G, heads, ss, _ = qk.hifi_q.shape
    s, t = g.layer.window_size, g.stride
    H, W = g.grid
    Wg = g.windows[1]
    pos = torch.arange(ss, device=dev)
    local_xy = torch.stack([(pos % s).double(), (pos // s).double()], -1) * t  # (s*s, 2)
    dist = torch.cdist(local_xy, local_xy)  # (s*s, s*s): the same in every window
    wins = torch.arange(G, device=dev)
    row = (wins // Wg).unsqueeze(1) * s + pos // s  # (G, s*s) token rows
    col = (wins % Wg).unsqueeze(1) * s + pos % s  # (G, s*s)
    real = (row < H) & (col < W)  # (G, s*s) real query tokens
    sums = _Sums(heads, dev)
    per = max(1, chunk_size // ss)  # windows per chunk
    for start in range(0, G, per):
        sums.add(
            qk.hifi_q[start : start + per],
            qk.hifi_k[start : start + per],
            qk.scale,
            dist[None],
            real[start : start + per],
        )  # (g, h, s*s, s*s)
    n = int(real.sum())
    uniform = float((dist.mean(-1).unsqueeze(0) * real).sum() / n)
    return sums.summary("hifi", list(range(heads)), ss, n, uniform)


def summarise_layer(qk: LayerQK, chunk_size: int = DEFAULT_CHUNK_SIZE) -> LayerSummary:
    with torch.no_grad():
        return LayerSummary(
            geometry=qk.geometry,
            hifi=summarise_hifi(qk, chunk_size),
            lofi=summarise_lofi(qk, chunk_size),
            chunk_size=chunk_size,
        )
