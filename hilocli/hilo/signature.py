"""Reading the tensors a HiLo module sees, whatever its forward signature (HILO_ADOPTERS.md
section 3): tokens (B, N, C) with H, W passed; tokens of a square map (B, N, C) alone; tokens with
H alone (W = N / H); feature maps (B, C, H, W) or channels-last (B, H, W, C). Branch outputs at
h_proj / l_proj: (B, Hp, Wp, d) grids (cropped to H x W), (B, N, d) tokens, or window-partitioned
(B * G, s * s, d) tokens (merged back).
"""

from __future__ import annotations

import math

import torch

from hilocli.errors import HiloError
from hilocli.models.geometry import HiLoLayerInfo, padded_grid


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
