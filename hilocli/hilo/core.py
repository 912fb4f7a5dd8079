"""HiLo's maths as functions of given projections: the one functional core behind hilo's own
`HiLo` module and the recomputation of any model's HiLo layer (`hilocli.hilo.layer`).

Shapes: B batch, H x W token grid (Hp x Wp padded to multiples of the window size s), C input
channels, G windows, h heads, d head dimension, N query tokens, M pooled keys.

Two pooling rules exist in the code bases that use HiLo (HILO_ADOPTERS.md):
- "pad": the authors' rule. The grid is zero-padded bottom/right to multiples of s; Lo-Fi queries
  every padded token against the s x s average-pooled padded grid.
- "floor": birder's rule. Lo-Fi queries the unpadded grid; keys and values pool it with a floor
  (the last partial row/column of windows is dropped).
Hi-Fi always attends inside the s x s windows of the padded grid.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

POOLING_RULES = ("pad", "floor")


def attention_probs(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale) over the keys: q (..., Nq, d), k (..., Nk, d) -> (..., Nq, Nk)."""
    return ((q @ k.transpose(-2, -1)) * scale).softmax(dim=-1)  # (..., Nq, Nk)


def pad_grid(x: torch.Tensor, s: int) -> torch.Tensor:
    """Zero-pad a (B, H, W, C) grid at the bottom/right to multiples of the window size s."""
    H, W = x.shape[1:3]
    if s > 1 and (H % s or W % s):
        x = F.pad(x, (0, 0, 0, (-W) % s, 0, (-H) % s))
    return x  # (B, Hp, Wp, C)


def window_qkv(h_qkv: nn.Module, x: torch.Tensor, s: int, heads: int, head_dim: int):
    """Padded grid (B, Hp, Wp, C) -> q, k, v, each (B, G, h, s*s, d), windows row-major
    (h_qkv output order q, k, v then heads)."""
    B, Hp, Wp, C = x.shape
    G = (Hp // s) * (Wp // s)
    x = x.reshape(B, Hp // s, s, Wp // s, s, C).transpose(2, 3)  # (B, Hg, Wg, s, s, C)
    x = x.reshape(B, G, s * s, C)  # (B, G, s*s, C)
    qkv = h_qkv(x).reshape(B, G, s * s, 3, heads, head_dim)
    q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # each (B, G, h, s*s, d)
    return q, k, v


def merge_windows(out: torch.Tensor, Hp: int, Wp: int, s: int) -> torch.Tensor:
    """Windowed attention output (B, G, h, s*s, d) -> (B, Hp, Wp, h*d) back on the grid."""
    B = out.shape[0]
    out = out.transpose(2, 3).reshape(B, Hp // s, Wp // s, s, s, -1)
    return out.transpose(2, 3).reshape(B, Hp, Wp, -1)  # (B, Hp, Wp, h*d)


def lofi_query_grid(grid: torch.Tensor, s: int, pooling: str) -> torch.Tensor:
    """The grid Lo-Fi queries and pools under a pooling rule: padded ("pad") or as is ("floor")."""
    if pooling not in POOLING_RULES:
        raise ValueError(f"pooling must be one of {POOLING_RULES}, got {pooling!r}")
    return pad_grid(grid, s) if pooling == "pad" else grid


def pooled_qkv(l_q: nn.Module, l_kv: nn.Module, x: torch.Tensor, s: int, heads: int, head_dim: int):
    """Grid (B, Hq, Wq, C) -> q (B, h, Hq*Wq, d), k and v (B, h, M, d) from s x s average-pooled
    tokens (a floor where Hq or Wq is not a multiple of s; l_kv output order k, v then heads)."""
    B, Hq, Wq, C = x.shape
    q = l_q(x).reshape(B, Hq * Wq, heads, head_dim).transpose(1, 2)  # (B, h, N, d)
    if s > 1:
        pooled = F.avg_pool2d(x.permute(0, 3, 1, 2), s, s)  # (B, C, Hq//s, Wq//s)
        pooled = pooled.flatten(2).transpose(1, 2)  # (B, M, C)
    else:
        pooled = x.reshape(B, Hq * Wq, C)  # (B, M=N, C)
    kv = l_kv(pooled).reshape(B, -1, 2, heads, head_dim)
    k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, h, M, d)
    return q, k, v


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, explicit: bool):
    """Attention output (..., Nq, d): fused SDPA, or with explicit=True softmax weights from
    `attention_probs` (what a FLOP counter or a reader sees as two matrix products)."""
    if explicit:
        return attention_probs(q, k, scale) @ v  # (..., Nq, d)
    if q.ndim == 5:  # Hi-Fi windows: the fused kernels take (batch, heads, tokens, d) only
        B, G = q.shape[:2]
        out = F.scaled_dot_product_attention(
            q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), scale=scale
        )  # (B*G, h, s*s, d)
        return out.unflatten(0, (B, G))  # (B, G, h, s*s, d)
    return F.scaled_dot_product_attention(q, k, v, scale=scale)  # (B, h, N, d)
