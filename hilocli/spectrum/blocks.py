"""The window-block part of a map's high band: how much of it an s x s block structure aligned
with the Hi-Fi windows explains.

Hi-Fi attends inside s x s windows anchored at token (0, 0) (the last row and column of windows
partial when the grid is not a multiple of s). Where that attention is near uniform, each window's
output is near its window mean: a block-constant map, whose steps at the window edges put power
in the high band without any high-frequency content. The measure, per channel: b, the map's
window means spread back over each window (its projection onto block-constant maps); y and y_b,
the high bands of the map and of b under the estimator; the block part is the projection of y
on y_b, <y, y_b>^2 / |y_b|^2, and `block_share` its power over the high-band power. One
regressor per channel, so it cannot fit content that has no block structure: a block-constant
map scores 1; a grating whose period divides s averages to zero in every window and scores 0;
white noise scores `block_reference` (a seeded Monte-Carlo mean, stated). The verdict decides on
the high band with the block part taken out (`hf_fraction_deblocked`), so window edges alone
cannot make a branch look high-frequency.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from hilocli.spectrum.estimator import high_band, high_weight, power2, tapered
from hilocli.spectrum.halfplane import half_plane

REFERENCE_DRAWS = 2048  # white-noise maps behind block_reference (seed 0)
NO_BLOCKS = 1e-12  # a window-mean map with less than this share of the map's power is none


def window_means(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, C, H, W) -> the same maps with every s x s window (partial at the bottom and right
    edges) replaced by its mean."""
    H, W = x.shape[-2:]
    s = window_size
    pad = (0, (-W) % s, 0, (-H) % s)
    sums = F.avg_pool2d(F.pad(x, pad), s) * s * s  # (B, C, H/s, W/s) window sums
    ones = F.pad(torch.ones(1, 1, H, W, device=x.device, dtype=x.dtype), pad)
    counts = F.avg_pool2d(ones, s) * s * s  # (1, 1, H/s, W/s) tokens per window
    means = (sums / counts).repeat_interleave(s, -2).repeat_interleave(s, -1)
    return means[..., :H, :W]  # (B, C, H, W)


def block_power(
    maps: torch.Tensor, spectrum: torch.Tensor, window_size: int, cutoff: float, boundary: str
) -> torch.Tensor:
    """(B,) the block part of the high-band power, summed over channels. `maps` (B, H, W, C);
    `spectrum` (B, C, H, W//2+1) the rfft2 of their tapered maps (`estimator.tapered`). The
    inner products of the high bands are taken in frequency (Parseval): no inverse FFT."""
    H, W = maps.shape[1:3]
    dtype = spectrum.real.dtype
    raw = maps.to(dtype).permute(0, 3, 1, 2)  # (B, C, H, W)
    blocks = window_means(raw, window_size).permute(0, 2, 3, 1)  # (B, H, W, C)
    xw, _ = tapered(blocks, boundary)
    block_spectrum = torch.fft.rfft2(xw)  # (B, C, H, Wh)
    half = half_plane(H, W, maps.device)
    band = high_weight(H, W, cutoff, maps.device, dtype)[:, : half.columns]  # (H, Wh)
    weight = band * half.weights.to(dtype)  # each stored column for itself and its mirror
    cross = torch.view_as_real(spectrum.conj() * block_spectrum)[..., 0]  # Re(conj X B)
    inner = (cross * weight).sum((-2, -1))  # (B, C) = H W <x_high, b_high>
    norm = (power2(block_spectrum) * weight).sum((-2, -1))  # (B, C) = H W |b_high|^2
    # window means that are zero up to rounding are no block structure (a fit on rounding noise
    # could explain anything): compared with the map's own power
    energy = raw.square().sum((-2, -1)) * (H * W)  # (B, C) on the scale of `norm`
    some = norm > NO_BLOCKS * energy.clamp_min(torch.finfo(dtype).tiny)
    explained = torch.where(some, inner.square() / torch.where(some, norm, 1.0), 0.0)
    return explained.sum(1) / float(H * W) ** 2  # power per token


@lru_cache(maxsize=32)
def block_reference(
    height: int, width: int, window_size: int, cutoff: float, boundary: str
) -> float:
    """The block share of unit white noise on this grid: the mean over REFERENCE_DRAWS seeded
    noise maps of the block part over the mean high-band power."""
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(1, height, width, REFERENCE_DRAWS, generator=gen, dtype=torch.float64)
    xw, _ = tapered(noise, boundary)
    spectrum = torch.fft.rfft2(xw)  # (1, D, H, Wh)
    high = high_band(spectrum, height, width, cutoff)  # (1, D, H, W)
    explained = block_power(noise, spectrum, window_size, cutoff, boundary)
    return float(explained / (high.square().sum() / (height * width)))
