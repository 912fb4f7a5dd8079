"""A small network with HiLo attention, written the way papers that reuse HiLo write it: the
authors' sub-layer names (h_qkv, h_proj, l_q, l_kv, l_proj, ws) inside someone else's model.
Point hilo at it with `--model-fn examples/my_model.py:build` (see docs/any-model.md)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class HiLo(nn.Module):
    """HiLo attention on tokens (B, N, C) of an H x W grid: forward(x, H, W)."""

    def __init__(self, dim: int, num_heads: int = 4, window_size: int = 2, alpha: float = 0.5):
        super().__init__()
        self.num_heads, self.dim = num_heads, dim  # hilo reads head_dim = dim // num_heads
        head_dim = dim // num_heads
        self.l_heads = int(num_heads * alpha)
        self.h_heads = num_heads - self.l_heads
        self.l_dim, self.h_dim = self.l_heads * head_dim, self.h_heads * head_dim
        self.ws = window_size
        self.scale = head_dim**-0.5
        self.h_qkv = nn.Linear(dim, 3 * self.h_dim)
        self.h_proj = nn.Linear(self.h_dim, self.h_dim)
        self.l_q = nn.Linear(dim, self.l_dim)
        self.l_kv = nn.Linear(dim, 2 * self.l_dim)
        self.l_proj = nn.Linear(self.l_dim, self.l_dim)

    def hifi(self, x):  # x (B, H, W, C), H and W multiples of ws
        B, H, W, C = x.shape
        s, h, d = self.ws, self.h_heads, self.h_dim // self.h_heads
        x = x.reshape(B, H // s, s, W // s, s, C).transpose(2, 3).reshape(B, -1, s * s, C)
        q, k, v = self.h_qkv(x).reshape(B, -1, s * s, 3, h, d).permute(3, 0, 1, 4, 2, 5)
        out = ((q @ k.transpose(-2, -1)) * self.scale).softmax(-1) @ v  # (B, G, h, s*s, d)
        out = out.transpose(2, 3).reshape(B, H // s, W // s, s, s, self.h_dim)
        return self.h_proj(out.transpose(2, 3).reshape(B, H, W, self.h_dim))

    def lofi(self, x):  # x (B, H, W, C)
        B, H, W, C = x.shape
        h, d = self.l_heads, self.l_dim // self.l_heads
        q = self.l_q(x).reshape(B, H * W, h, d).transpose(1, 2)
        pooled = F.avg_pool2d(x.permute(0, 3, 1, 2), self.ws).flatten(2).transpose(1, 2)
        k, v = self.l_kv(pooled).reshape(B, -1, 2, h, d).permute(2, 0, 3, 1, 4)
        out = ((q @ k.transpose(-2, -1)) * self.scale).softmax(-1) @ v  # (B, h, N, d)
        return self.l_proj(out.transpose(1, 2).reshape(B, H, W, self.l_dim))

    def forward(self, x, H, W):
        B, N, C = x.shape
        grid = x.reshape(B, H, W, C)
        return torch.cat([self.hifi(grid), self.lofi(grid)], dim=-1).reshape(B, N, C)


class MyNet(nn.Module):
    """Conv stem (stride 4), two HiLo blocks, mean pool, classifier."""

    def __init__(self, dim: int = 32, depth: int = 2, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 4, 4)
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(depth))
        self.attns = nn.ModuleList(HiLo(dim) for _ in range(depth))
        self.head = nn.Linear(dim, num_classes)

    def forward(self, img):
        x = self.stem(img)  # (B, C, H, W)
        H, W = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # (B, N, C)
        for norm, attn in zip(self.norms, self.attns):
            x = x + attn(norm(x), H, W)
        return self.head(x.mean(dim=1))


def build(dim: int = 32, depth: int = 2, num_classes: int = 10) -> nn.Module:
    """What --model-fn calls: returns the network (hilo loads --checkpoint into it, if given)."""
    return MyNet(dim, depth, num_classes)
