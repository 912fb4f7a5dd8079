"""A HiLo layer's queries and keys, and the attention maps of chosen query tokens.

Nothing here materialises a layer's whole attention matrix: a map is the softmax row of one query
token (`attention_probs` on that query only). Heads are numbered as the layer's output channels:
Hi-Fi heads first (0 .. hifi_heads-1), then Lo-Fi heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hilocli.errors import HiloError
from hilocli.hilo.core import attention_probs
from hilocli.models.geometry import LayerGeometry
from hilocli.weights import check_finite


@dataclass
class LayerQK:
    """A layer's queries and keys for one image (batch of 1 squeezed away)."""

    geometry: LayerGeometry
    scale: float
    hifi_q: torch.Tensor | None  # (G, hifi_heads, s*s, d), windows row-major
    hifi_k: torch.Tensor | None  # (G, hifi_heads, s*s, d)
    lofi_q: torch.Tensor | None  # (lofi_heads, Nq, d): Nq = Hp*Wp (pad) or H*W (floor)
    lofi_k: torch.Tensor | None  # (lofi_heads, M, d)


def layer_qk(layer, control: torch.Tensor, geometry: LayerGeometry) -> LayerQK:
    """Project the layer input ((1, H, W, C) or (H, W, C), unpadded) to queries and keys with the
    layer's own projections (`layer` a `hilocli.hilo.layer.HiLoLayer`), under the pooling rule
    the capture verified (`geometry.pooling`), exactly as its forward does."""
    if control.dim() == 3:
        control = control.unsqueeze(0)  # (1, H, W, C)
    if control.shape[0] != 1:
        raise ValueError(f"one image at a time, got a batch of {control.shape[0]}")
    if tuple(control.shape[1:3]) != geometry.grid:
        raise ValueError(
            f"control grid {tuple(control.shape[1:3])} does not match the layer "
            f"geometry {geometry.grid}"
        )
    check_finite(control, f"the input of layer {geometry.layer.index} ({geometry.layer.name})")
    info = geometry.layer
    hq = hk = lq = lk = None
    with torch.no_grad():
        if info.hifi_heads > 0:
            q, k, _ = layer.hifi_qkv(control)  # each (1, G, h, s*s, d)
            hq, hk = q[0], k[0]
        if info.lofi_heads > 0:
            q, k, _ = layer.lofi_qkv(control, geometry.pooling)  # q (1, h, Nq, d), k (1, h, M, d)
            lq, lk = q[0], k[0]
    return LayerQK(geometry=geometry, scale=layer.scale, hifi_q=hq, hifi_k=hk, lofi_q=lq, lofi_k=lk)


def window_of(g: LayerGeometry, row: int, col: int) -> tuple[int, int]:
    """(window index, position inside the window), both row-major, of token (row, col)."""
    s = g.layer.window_size
    return (row // s) * g.windows[1] + col // s, (row % s) * s + col % s


def _check_token(g: LayerGeometry, row: int, col: int) -> None:
    H, W = g.grid
    if not (0 <= row < H and 0 <= col < W):
        raise ValueError(f"token ({row}, {col}) is outside the {H}x{W} grid of {g.layer.name}")


@dataclass
class QueryMap:
    """One query token's attention in one layer. Weights are float32 numpy arrays."""

    token: tuple[int, int]  # (row, col) on the layer's grid
    centre: tuple[float, float]  # (x, y) of the token centre, input pixels
    hifi: np.ndarray | None  # (hifi_heads, s, s) weights over the query's window
    window_origin: tuple[int, int] | None  # (row, col) token of the window's top-left
    lofi: np.ndarray | None  # (lofi_heads, *pooled) weights over the pooled keys

    def heads(self) -> list[np.ndarray]:
        """Per global head index (Hi-Fi first): (s, s) or (Hp/s, Wp/s) maps."""
        out = [] if self.hifi is None else list(self.hifi)
        return out + ([] if self.lofi is None else list(self.lofi))

    def to_dict(self) -> dict:
        return {
            "token": list(self.token),
            "token_centre_input": list(self.centre),
            "window_origin": None if self.window_origin is None else list(self.window_origin),
        }


def query_maps(qk: LayerQK, tokens: list[tuple[int, int]]) -> list[QueryMap]:
    """Softmax rows of both branches for the given query tokens only (real tokens)."""
    g = qk.geometry
    s, t = g.layer.window_size, g.stride
    out = []
    with torch.no_grad():
        for row, col in tokens:
            _check_token(g, row, col)
            hifi = origin = lofi = None
            if qk.hifi_q is not None:
                win, pos = window_of(g, row, col)
                q = qk.hifi_q[win, :, pos : pos + 1]  # (h, 1, d)
                w = attention_probs(q, qk.hifi_k[win], qk.scale)  # (h, 1, s*s)
                hifi = w[:, 0].reshape(-1, s, s).float().cpu().numpy()
                origin = ((row // s) * s, (col // s) * s)
            if qk.lofi_q is not None:
                idx = row * g.lofi_queries[1] + col
                q = qk.lofi_q[:, idx : idx + 1]  # (h, 1, d)
                w = attention_probs(q, qk.lofi_k, qk.scale)  # (h, 1, M)
                lofi = w[:, 0].reshape(-1, *g.pooled).float().cpu().numpy()
            for branch, arr in (("Hi-Fi", hifi), ("Lo-Fi", lofi)):
                if arr is not None and not np.isfinite(arr).all():
                    raise HiloError(
                        f"non-finite attention weights in layer {g.layer.index} "
                        f"({g.layer.name}) {branch}; refusing to analyse"
                    )
            out.append(
                QueryMap(
                    token=(row, col),
                    centre=((col + 0.5) * t, (row + 0.5) * t),
                    hifi=hifi,
                    window_origin=origin,
                    lofi=lofi,
                )
            )
    return out


def query_map_distances(g: LayerGeometry, qmap: QueryMap) -> np.ndarray:
    """Attention-weighted distance (input px) from the query token's centre to the keys' centres,
    per global head (Hi-Fi heads first): the per-query version of the summary's mean distance."""
    s, t = g.layer.window_size, g.stride
    qx, qy = qmap.centre
    out = []
    if qmap.hifi is not None:
        r0, c0 = qmap.window_origin
        rows, cols = np.mgrid[0:s, 0:s]
        d = np.hypot((c0 + cols + 0.5) * t - qx, (r0 + rows + 0.5) * t - qy)  # (s, s)
        out.extend((qmap.hifi * d).sum(axis=(1, 2)))
    if qmap.lofi is not None:
        Hk, Wk = qmap.lofi.shape[1:]
        rows, cols = np.mgrid[0:Hk, 0:Wk]
        d = np.hypot((cols + 0.5) * s * t - qx, (rows + 0.5) * s * t - qy)  # (Hk, Wk)
        out.extend((qmap.lofi * d).sum(axis=(1, 2)))
    return np.asarray(out, dtype=np.float64)
