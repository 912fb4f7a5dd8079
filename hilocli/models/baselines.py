"""Reference attention layers HiLo is compared with (for params and speed in `hilo flops`).

Written from the papers' descriptions: multi-head self-attention (ViT), spatial-reduction attention
(PVT: keys/values from a strided conv + LayerNorm copy of the grid) and local window attention
(Swin: non-overlapping w x w windows, no shift, relative-position bias). Every layer takes tokens
(B, H*W, C) on a row-major H x W grid and returns (B, H*W, C). Attention runs through
`F.scaled_dot_product_attention` (the fastest path torch has), as HiLo does by default.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from hilocli.models.geometry import padded_grid
from hilocli.models.layout import grid_view
from hilocli.models.litv2 import HiLo

__all__ = ["MSA", "SpatialReductionAttention", "WindowAttention", "build_attention"]


class MSA(nn.Module):
    """Multi-head self-attention over all H*W tokens."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, h, N, d)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, h, N, d)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class SpatialReductionAttention(nn.Module):
    """PVT's SRA: queries from every token; keys/values from Conv2d(C, C, r, stride r) +
    LayerNorm."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int = 2, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim, self.sr_ratio = num_heads, dim // num_heads, sr_ratio
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, N, C = x.shape
        q = self.q(x).reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, N, d)
        if self.sr_ratio > 1:
            red = self.sr(grid_view(x, H, W))  # (B, C, H/r, W/r)
            red = self.norm(red.flatten(2).transpose(1, 2))  # (B, M, C)
        else:
            red = x
        kv = self.kv(red).reshape(B, -1, 2, self.num_heads, self.head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, h, M, d)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, h, N, d)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class WindowAttention(nn.Module):
    """Swin-style attention inside non-overlapping w x w windows (no shift), with a learned
    relative-position bias; the grid is zero-padded bottom/right to multiples of w, then cropped."""

    def __init__(self, dim: int, num_heads: int, window: int = 7, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim, self.window = num_heads, dim // num_heads, window
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) ** 2, num_heads)
        )
        coords = torch.stack(
            torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        ).flatten(1)  # (2, w*w)
        rel = coords[:, :, None] - coords[:, None, :]  # (2, w*w, w*w)
        rel = rel.permute(1, 2, 0) + (window - 1)  # (w*w, w*w, 2)
        self.register_buffer(
            "relative_position_index",
            rel[..., 0] * (2 * window - 1) + rel[..., 1],
            persistent=False,
        )

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, N, C = x.shape
        w = self.window
        grid = x.reshape(B, H, W, C)
        Hp, Wp = padded_grid((H, W), w)
        if (Hp, Wp) != (H, W):
            grid = F.pad(grid, (0, 0, 0, Wp - W, 0, Hp - H))  # (B, Hp, Wp, C)
        G = (Hp // w) * (Wp // w)
        win = grid.reshape(B, Hp // w, w, Wp // w, w, C).transpose(2, 3).reshape(B * G, w * w, C)
        qkv = self.qkv(win).reshape(B * G, w * w, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B*G, h, w*w, d)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        bias = bias.reshape(w * w, w * w, self.num_heads)  # (w*w, w*w, h)
        bias = bias.permute(2, 0, 1).to(q.dtype)  # (h, w*w, w*w)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B*G, h, w*w, d)
        out = self.proj(out.transpose(1, 2).reshape(B * G, w * w, C))
        out = out.reshape(B, Hp // w, Wp // w, w, w, C).transpose(2, 3).reshape(B, Hp, Wp, C)
        return out[:, :H, :W].reshape(B, N, C)


def build_attention(
    name: str,
    dim: int,
    num_heads: int,
    alpha: float = 0.9,
    window_size: int = 2,
    sr_ratio: int = 2,
    local_window: int = 7,
    qkv_bias: bool = True,
) -> nn.Module:
    """One of "MSA", "SRA", "Window", "HiLo" (HiLo is the model's own layer), in eval mode."""
    if name == "MSA":
        m = MSA(dim, num_heads, qkv_bias)
    elif name == "SRA":
        m = SpatialReductionAttention(dim, num_heads, sr_ratio, qkv_bias)
    elif name == "Window":
        m = WindowAttention(dim, num_heads, local_window, qkv_bias)
    elif name == "HiLo":
        m = HiLo(dim, num_heads, window_size, alpha, qkv_bias)
    else:
        raise ValueError(f"unknown attention type {name!r}; known: MSA, SRA, Window, HiLo")
    return m.eval()
