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
import torch.nn.functional as F

from hilocli.errors import HiloError
from hilocli.models.geometry import HiLoLayerInfo, padded_grid
from hilocli.models.litv2 import attention_probs


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


def _pad(x: torch.Tensor, s: int) -> torch.Tensor:
    H, W = x.shape[1:3]
    return F.pad(x, (0, 0, 0, (-W) % s, 0, (-H) % s)) if s > 1 else x


def hifi_qkv(module: nn.Module, info: HiLoLayerInfo, grid: torch.Tensor):
    """Grid (B, H, W, C) -> q, k, v each (B, G, h, s*s, d) through module.h_qkv (padded)."""
    s, h, d = info.window_size, info.hifi_heads, info.head_dim
    x = _pad(grid, s)  # (B, Hp, Wp, C)
    B, Hp, Wp, C = x.shape
    G = (Hp // s) * (Wp // s)
    x = x.reshape(B, Hp // s, s, Wp // s, s, C).transpose(2, 3).reshape(B, G, s * s, C)
    qkv = module.h_qkv(x).reshape(B, G, s * s, 3, h, d)
    return qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)


def lofi_qkv(module: nn.Module, info: HiLoLayerInfo, grid: torch.Tensor, pooling: str = "pad"):
    """Grid (B, H, W, C) -> q (B, h, N, d) on the padded grid ("pad") or the grid itself
    ("floor"), k and v (B, h, M, d) from s x s average-pooled tokens."""
    s, h, d = info.window_size, info.lofi_heads, info.head_dim
    x = _pad(grid, s) if pooling == "pad" else grid
    B, Hq, Wq, C = x.shape
    q = module.l_q(x).reshape(B, Hq * Wq, h, d).transpose(1, 2)
    if s > 1:
        pooled = F.avg_pool2d(x.permute(0, 3, 1, 2), s, s).flatten(2).transpose(1, 2)  # (B, M, C)
    else:
        pooled = x.reshape(B, Hq * Wq, C)
    k, v = module.l_kv(pooled).reshape(B, -1, 2, h, d).permute(2, 0, 3, 1, 4).unbind(0)
    return q, k, v


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
        Hp, Wp = padded_grid((H, W), s)
        o = (hifi_p @ v).transpose(2, 3).reshape(B, Hp // s, Wp // s, s, s, -1)
        o = o.transpose(2, 3).reshape(B, Hp, Wp, -1)
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
