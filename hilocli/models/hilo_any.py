"""HiLo's maths through any HiLo module's own projections, and reading the tensors such modules
see, whatever their forward signature.

Signatures handled (HILO_ADOPTERS.md section 3): tokens (B, N, C) with H, W passed; tokens of a
square map (B, N, C) alone; tokens with H alone (W = N / H); feature maps (B, C, H, W) or
channels-last (B, H, W, C). Branch outputs at h_proj / l_proj: (B, Hp, Wp, d) grids (cropped to
H x W), (B, N, d) tokens, or window-partitioned (B * G, s * s, d) tokens (merged back).

Recomputation follows the authors: zero-pad bottom/right to multiples of s; Hi-Fi attends inside
s x s windows (h_qkv output order q, k, v then heads); Lo-Fi queries every token against s x s
average-pooled keys (l_kv output order k, v then heads), pooled from the padded map ("pad") or,
as birder does, from the unpadded map with the last partial row/column dropped ("floor").
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from hilocli.errors import HiloError
from hilocli.models.geometry import HiLoLayerInfo, padded_grid
from hilocli.models.litv2 import (
    attention_probs,
    merge_windows,
    pad_grid,
    pooled_qkv,
    window_qkv,
)


def input_grid(info: HiLoLayerInfo, channels: int, args: tuple, kwargs: dict):
    """(grid (B, H, W, C), signature label) from the arguments a HiLo module was called with."""
    x = args[0] if args else kwargs.get("x")
    if not torch.is_tensor(x):
        raise HiloError(f"layer {info.index} ({info.path}): first input is not a tensor")
    rest = [
        int(a) for a in args[1:] if isinstance(a, int) or (torch.is_tensor(a) and a.numel() == 1)
    ]
    rest += [int(kwargs[k]) for k in ("H", "W") if k in kwargs and len(rest) < 2]
    if x.ndim == 4:
        if x.shape[-1] == channels and x.shape[1] != channels:
            return x, "map (B, H, W, C)"
        if x.shape[1] == channels:
            return x.permute(0, 2, 3, 1), "map (B, C, H, W)"  # (B, H, W, C)
    if x.ndim == 3 and x.shape[-1] == channels:
        B, N, C = x.shape
        if len(rest) >= 2 and rest[0] * rest[1] == N:
            return x.reshape(B, rest[0], rest[1], C), "tokens (x, H, W)"
        if len(rest) == 1 and rest[0] > 0 and N % rest[0] == 0:
            return x.reshape(B, rest[0], N // rest[0], C), "tokens (x, H)"
        side = math.isqrt(N)
        if not rest and side * side == N:
            return x.reshape(B, side, side, C), "tokens (x), square"
    raise HiloError(
        f"layer {info.index} ({info.path}): cannot read its input {tuple(x.shape)} "
        f"with {channels} channels and extra arguments {rest} as tokens or a feature map"
    )


def branch_grid(out: torch.Tensor, batch: int, grid: tuple[int, int], s: int, what: str):
    """A projection's output as (B, H, W, d), padding cropped, windows merged back."""
    H, W = grid
    Hp, Wp = padded_grid(grid, s)
    d = out.shape[-1]
    if out.ndim == 4 and out.shape[0] == batch and out.shape[1:3] in ((H, W), (Hp, Wp)):
        return out[:, :H, :W]
    if out.ndim == 3 and out.shape[0] == batch and out.shape[1] in (H * W, Hp * Wp):
        n = out.shape[1]
        full = out.reshape(batch, H, W, d) if n == H * W else out.reshape(batch, Hp, Wp, d)
        return full[:, :H, :W]
    G = (Hp // s) * (Wp // s)
    if out.ndim == 3 and out.shape[0] == batch * G and out.shape[1] == s * s:
        win = out.reshape(batch, Hp // s, Wp // s, s, s, d).transpose(2, 3)
        return win.reshape(batch, Hp, Wp, d)[:, :H, :W]  # (B, H, W, d)
    raise HiloError(f"{what}: cannot place its output {tuple(out.shape)} on the {H}x{W} token grid")


def hifi_qkv(module: nn.Module, info: HiLoLayerInfo, grid: torch.Tensor):
    """Grid (B, H, W, C) -> q, k, v each (B, G, h, s*s, d) through module.h_qkv (padded)."""
    s = info.window_size
    return window_qkv(module.h_qkv, pad_grid(grid, s), s, info.hifi_heads, info.head_dim)


def lofi_qkv(module: nn.Module, info: HiLoLayerInfo, grid: torch.Tensor, pooling: str = "pad"):
    """Grid (B, H, W, C) -> q (B, h, N, d) on the padded grid ("pad") or the grid itself
    ("floor"), k and v (B, h, M, d) from s x s average-pooled tokens."""
    s = info.window_size
    x = pad_grid(grid, s) if pooling == "pad" else grid
    return pooled_qkv(module.l_q, module.l_kv, x, s, info.lofi_heads, info.head_dim)


def scale_of(module: nn.Module, info: HiLoLayerInfo) -> float:
    scale = getattr(module, "scale", None)
    return float(scale) if isinstance(scale, (int, float)) else info.head_dim**-0.5


def recompute(module: nn.Module, info: HiLoLayerInfo, grid: torch.Tensor, pooling: str = "pad"):
    """Both branches from the input grid (B, H, W, C) with explicit softmax: (hifi_out, lofi_out,
    hifi_probs (B, G, h, s*s, s*s), lofi_probs (B, h, Nq, M)); absent branches are None."""
    scale = scale_of(module, info)
    B, H, W, _ = grid.shape
    s = info.window_size
    hifi_out = lofi_out = hifi_p = lofi_p = None
    if info.hifi_heads:
        q, k, v = hifi_qkv(module, info, grid)
        hifi_p = attention_probs(q, k, scale)  # (B, G, h, s*s, s*s)
        o = merge_windows(hifi_p @ v, *padded_grid((H, W), s), s)  # (B, Hp, Wp, h*d)
        hifi_out = module.h_proj(o)[:, :H, :W]  # (B, H, W, h_dim)
    if info.lofi_heads:
        q, k, v = lofi_qkv(module, info, grid, pooling)
        lofi_p = attention_probs(q, k, scale)  # (B, h, Nq, M)
        Hq, Wq = padded_grid((H, W), s) if pooling == "pad" else (H, W)
        o = (lofi_p @ v).transpose(1, 2).reshape(B, Hq, Wq, -1)
        lofi_out = module.l_proj(o)[:, :H, :W]  # (B, H, W, l_dim)
    return hifi_out, lofi_out, hifi_p, lofi_p


def _close(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    tol = 1e-4 * max(1.0, float(b.abs().max()))
    return a.shape == b.shape and float((a - b).abs().max()) <= tol


def matching_recompute(module, info, grid, hifi_out, lofi_out):
    """recompute() under the pooling rule that reproduces the captured branch outputs; HiloError
    naming the layer when none does (same names, other maths: not analysable as HiLo)."""
    for pooling in ("pad", "floor"):
        got = recompute(module, info, grid, pooling)
        if _close(got[0], hifi_out) and _close(got[1], lofi_out):
            return got
    diffs = [
        float((a - b).abs().max())
        for a, b in zip(got[:2], (hifi_out, lofi_out))
        if a is not None and b is not None and a.shape == b.shape
    ]
    raise HiloError(
        f"layer {info.index} ({info.path}): attention recomputed through its own projections "
        f"does not reproduce its branch outputs (max |diff| {max(diffs, default=float('nan')):.3g}"
        "); its maths differ from HiLo's (see docs/any-model.md)"
    )
