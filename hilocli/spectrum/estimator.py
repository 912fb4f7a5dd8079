"""The estimator's pieces: the taper (a Hann window sampled at pixel centres, or none), the radius
of each frequency and the high band's weights (a frequency exactly on the cutoff counts half to
each band). `analyse` builds the per-image measures on these, `blocks` the window-block part."""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from hilocli.errors import UsageError

BOUNDARIES = ("hann", "none")
ON_CUTOFF = 1e-9  # a radius this close to the cutoff is on it (counts half to each band)


def check_boundary(boundary: str) -> None:
    if boundary not in BOUNDARIES:
        raise UsageError(f"boundary must be one of {', '.join(BOUNDARIES)}, got {boundary!r}")


def hann_window(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(H, W) separable Hann window sampled at pixel centres, w[k] = sin^2(pi (k + 1/2) / n):
    unlike torch.hann_window it zeroes no row or column, which matters on 7 x 7 grids."""

    def one(n: int) -> torch.Tensor:
        k = torch.arange(n, device=device, dtype=torch.float64)
        return torch.sin(math.pi * (k + 0.5) / n) ** 2  # (n,)

    return (one(height)[:, None] * one(width)[None, :]).to(dtype)  # (H, W)


@lru_cache(maxsize=64)
def taper(height: int, width: int, boundary: str, device, dtype) -> torch.Tensor:
    """(H, W) the estimator's window, scaled so that sum(w^2) = H W (ones for "none")."""
    if boundary == "none":
        return torch.ones(height, width, device=device, dtype=dtype)
    w = hann_window(height, width, "cpu", torch.float64)  # the scale is read on the host
    return (w * math.sqrt(height * width / float(w.square().sum()))).to(device, dtype)


@lru_cache(maxsize=64)
def radius_grid(height: int, width: int, device, dtype) -> torch.Tensor:
    """(H, W) radius in cycles per token (cached, read-only)."""
    fy = torch.fft.fftfreq(height, device=device, dtype=torch.float64)  # (H,)
    fx = torch.fft.fftfreq(width, device=device, dtype=torch.float64)  # (W,)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2).to(dtype)  # (H, W)


@lru_cache(maxsize=64)
def high_weight(height: int, width: int, cutoff: float, device, dtype) -> torch.Tensor:
    """(H, W) weight of each frequency in the high band: 1 above the cutoff, 1/2 on it, 0 below
    (DC 0). The low band's weight is 1 - this, DC excluded."""
    r = radius_grid(height, width, device, torch.float64)
    w = (r > cutoff + ON_CUTOFF).to(torch.float64) + 0.5 * ((r - cutoff).abs() <= ON_CUTOFF)
    return w.to(dtype)


def power2(z: torch.Tensor) -> torch.Tensor:
    """|z|^2 of a complex tensor without the square root."""
    squares = torch.view_as_real(z).square()  # (..., 2)
    return squares[..., 0] + squares[..., 1]


def tapered(x: torch.Tensor, boundary: str) -> torch.Tensor:
    """(B, C, H, W) float maps -> the estimator's input w * (x - m), m the window-weighted mean
    of each map, so the tapered map has no DC."""
    w = taper(x.shape[-2], x.shape[-1], boundary, x.device, x.dtype)  # (H, W)
    weighted_mean = (x * w).sum((-2, -1), keepdim=True) / w.sum()  # (B, C, 1, 1)
    return (x - weighted_mean) * w


def high_band(spectrum: torch.Tensor, height: int, width: int, cutoff: float) -> torch.Tensor:
    """Half-plane spectra (..., H, W//2+1) -> the high band of each map in space (..., H, W)."""
    amp = high_weight(height, width, cutoff, spectrum.device, spectrum.real.dtype).sqrt()
    return torch.fft.irfft2(spectrum * amp[:, : width // 2 + 1], s=(height, width))
