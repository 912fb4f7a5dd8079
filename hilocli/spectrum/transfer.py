"""What a head's attention does as a spatial filter: its transfer curve.

The head's attention weights are fixed (computed from an image); instead of its values we feed 2D
complex sinusoids e(y, x) = exp(2 pi i (fy y + fx x)) over the (padded) token grid, at radial
frequencies r from 0 to Nyquist (0.5 cycles/token) and several orientations theta:
(fy, fx) = r (sin theta, cos theta). The gain at (r, theta) is the RMS of the output over the
unpadded tokens (the input has |e| = 1 everywhere). Hi-Fi: each query mixes the sinusoid's values
inside its s x s window; Lo-Fi: each query mixes the s x s average-pooled sinusoid (its keys and
values are pooled). Identity attention has gain 1 at every frequency; uniform attention inside
s x s windows has the box filter's gain |D_s(fy) D_s(fx)|, D_s(f) = sin(pi s f) / (s sin(pi f)).
Cost: one complex (..., N, M) x (M,) product per frequency; optional (`transfer` measures).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hilocli.models.geometry import padded_grid

ANGLES = (0.0, 45.0, 90.0, 135.0)  # degrees


def transfer_frequencies(
    n_radii: int = 15, angles: tuple[float, ...] = ANGLES
) -> tuple[torch.Tensor, torch.Tensor]:
    """radii (R,) from 0 to 0.5 cycles/token and frequencies (A, R, 2) as (fy, fx)."""
    radii = torch.linspace(0.0, 0.5, n_radii, dtype=torch.float64)  # (R,)
    theta = torch.tensor(angles, dtype=torch.float64) * math.pi / 180  # (A,)
    freqs = torch.stack(
        [radii[None] * torch.sin(theta)[:, None], radii[None] * torch.cos(theta)[:, None]], -1
    )  # (A, R, 2)
    return radii, freqs


def sinusoids(freqs: torch.Tensor, height: int, width: int, device) -> torch.Tensor:
    """(..., 2) frequencies -> complex sinusoids (..., H, W) on the token grid."""
    yy = torch.arange(height, device=device, dtype=torch.float64)[:, None]
    xx = torch.arange(width, device=device, dtype=torch.float64)[None, :]
    f = freqs.to(device)
    phase = f[..., 0, None, None] * yy + f[..., 1, None, None] * xx  # (..., H, W)
    return torch.exp(2j * math.pi * phase)


def hifi_gain(attn: torch.Tensor, freqs: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Hi-Fi attention (B, G, h, s*s, s*s) on the padded grid (windows row-major) -> gains
    (B, h, *freqs.shape[:-1]) over the unpadded grid (H, W)."""
    B, G, h, ss, _ = attn.shape
    s = math.isqrt(ss)
    H, W = grid
    Hp, Wp = padded_grid(grid, s)
    waves = sinusoids(freqs, Hp, Wp, attn.device).reshape(-1, Hp // s, s, Wp // s, s)
    waves = waves.transpose(2, 3).reshape(-1, G, ss)  # (F, G, s*s) per window
    a = attn.to(torch.complex128)  # (B, G, h, q, k)
    out = torch.einsum("bghqk,fgk->bhfgq", a, waves)  # (B, h, F, G, s*s)
    out = out.reshape(B, h, -1, Hp // s, Wp // s, s, s).transpose(4, 5)
    out = out.reshape(B, h, -1, Hp, Wp)[..., :H, :W]  # (B, h, F, H, W)
    gain = out.abs().square().mean((-2, -1)).sqrt()
    return gain.reshape(B, h, *freqs.shape[:-1]).float()


def lofi_gain(
    attn: torch.Tensor, freqs: torch.Tensor, grid: tuple[int, int], window_size: int
) -> torch.Tensor:
    """Lo-Fi attention (B, h, Hp*Wp, M) over s x s pooled keys -> gains (B, h, *freqs[:-1])."""
    B, h, N, M = attn.shape
    s = window_size
    H, W = grid
    Hp, Wp = padded_grid(grid, s)
    waves = sinusoids(freqs, Hp, Wp, attn.device).reshape(-1, 1, Hp, Wp)  # (F, 1, Hp, Wp)
    if s > 1:
        pooled = torch.complex(
            F.avg_pool2d(waves.real, s, s), F.avg_pool2d(waves.imag, s, s)
        )  # (F, 1, Hp/s, Wp/s)
    else:
        pooled = waves
    pooled = pooled.flatten(1)  # (F, M)
    out = torch.einsum("bhnm,fm->bhfn", attn.to(torch.complex128), pooled)  # (B, h, F, N)
    out = out.reshape(B, h, -1, Hp, Wp)[..., :H, :W]
    gain = out.abs().square().mean((-2, -1)).sqrt()
    return gain.reshape(B, h, *freqs.shape[:-1]).float()


def box_gain(freqs: torch.Tensor, s: int) -> torch.Tensor:
    """|D_s(fy) D_s(fx)|: the gain of an s x s moving average aligned with the windows."""

    def dirichlet(f: torch.Tensor) -> torch.Tensor:
        den = s * torch.sin(math.pi * f)
        safe = den.abs() > 1e-12
        return torch.where(safe, torch.sin(math.pi * s * f) / torch.where(safe, den, 1.0), 1.0)

    return (dirichlet(freqs[..., 0]) * dirichlet(freqs[..., 1])).abs()


def matched_outputs(layer, grid: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each branch with its attention replaced by identity over its own values, through its own
    projection, on the layer input grid (B, H, W, C) -> {"hifi", "lofi"} (B, H, W, branch
    channels); `layer` is a `hilocli.hilo.layer.HiLoLayer` (pad-then-pool). Hi-Fi: each query
    takes its own value, h_proj(v_self). Lo-Fi: each query takes the pooled value of the s x s
    window containing it, l_proj(v_pooled[win])."""
    B, H, W, _ = grid.shape
    s, info, module = layer.window_size, layer.info, layer.module
    Hp, Wp = padded_grid((H, W), s)
    out: dict[str, torch.Tensor] = {}
    if info.hifi_heads > 0:
        _, _, v = layer.hifi_qkv(grid)  # (B, G, h, s*s, d)
        v = v.transpose(2, 3).reshape(B, Hp // s, Wp // s, s, s, -1)
        v = v.transpose(2, 3).reshape(B, Hp, Wp, -1)  # (B, Hp, Wp, h_dim) back on the grid
        out["hifi"] = module.h_proj(v)[:, :H, :W]
    if info.lofi_heads > 0:
        _, _, v = layer.lofi_qkv(grid, "pad")  # (B, h, M, d)
        v = v.transpose(1, 2).reshape(B, Hp // s, Wp // s, -1)  # (B, Hp/s, Wp/s, l_dim)
        v = v.repeat_interleave(s, 1).repeat_interleave(s, 2)  # (B, Hp, Wp, l_dim)
        out["lofi"] = module.l_proj(v)[:, :H, :W]
    return out
