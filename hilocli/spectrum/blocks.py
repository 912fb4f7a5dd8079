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

from dataclasses import dataclass
from functools import lru_cache

import torch

from hilocli.spectrum.estimator import high_band, high_weight, power2, taper, tapered
from hilocli.spectrum.halfplane import half_plane

REFERENCE_DRAWS = 2048  # white-noise maps behind block_reference (seed 0)
NO_BLOCKS = 1e-12  # a window-mean map with less than this share of the map's power is none


@dataclass(frozen=True)
class WindowOperators:
    """The fixed linear maps of the block part on one grid (cached per grid, read-only). With b
    the block map of the window means m (B, C, n), less its window-weighted mean, and X a
    map's tapered half-plane spectrum as (re, im) pairs (B, C, 2F):
    H W <x_high, b_high> = ((X @ against) * m).sum(-1) and
    H W |b_high|^2 = ((m @ gram) * m).sum(-1)."""

    pool: torch.Tensor  # (H W, n): x (.., H W) @ pool = the n window means
    share: torch.Tensor  # (n,): window means @ share = the block map's window-weighted mean
    against: torch.Tensor  # (2F, n): high band x half-plane weight x spectrum of tapered window j
    gram: torch.Tensor  # (n, n): the same weighted inner products between the windows


def window_indicators(height: int, width: int, window_size: int) -> torch.Tensor:
    """(H W, n) float64 0/1: which s x s window (anchored at (0, 0), partial at the bottom and
    right edges) each token lies in."""
    s = window_size
    cols = -(-width // s)
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    window = ((y // s) * cols + x // s).flatten()  # (H W,)
    n = -(-height // s) * cols
    return torch.nn.functional.one_hot(window, n).to(torch.float64)


@lru_cache(maxsize=32)
def window_operators(
    height: int, width: int, window_size: int, cutoff: float, boundary: str, device, dtype
) -> WindowOperators:
    """The block part's linear maps on an H x W grid (see `WindowOperators`), built in float64."""
    ind = window_indicators(height, width, window_size)  # (H W, n)
    w = taper(height, width, boundary, "cpu", torch.float64).flatten()  # (H W,)
    maps = (ind * w[:, None]).T.reshape(-1, height, width)  # (n, H, W) tapered windows
    spectra = torch.view_as_real(torch.fft.rfft2(maps)).flatten(1)  # (n, 2F)
    half = half_plane(height, width, "cpu")
    band = high_weight(height, width, cutoff, "cpu", torch.float64)[:, : half.columns]
    weight = (band * half.weights).flatten().repeat_interleave(2)  # (2F,) per (re, im) value
    against = (spectra * weight).T  # (2F, n)
    ops = (ind / ind.sum(0), (w @ ind) / w.sum(), against, spectra @ against)
    return WindowOperators(*(t.to(device, dtype) for t in ops))


DENSE_TOKENS = 28 * 28  # grids up to this size take the matrix products; larger ones the FFT
# (the dense operators grow as (H W)^2 / s^2, the transform of the block map as H W log H W)


def block_power(
    x: torch.Tensor,
    spectrum: torch.Tensor,
    energy: torch.Tensor,
    window_size: int,
    cutoff: float,
    boundary: str,
) -> torch.Tensor:
    """(B, C) the block part of each map's high-band power. `x` (B, C, H, W) the maps;
    `spectrum` (B, C, H, W//2+1) the rfft2 of their tapered maps (`estimator.tapered`);
    `energy` (B, C) each map's sum of squares. The high bands' inner products are taken in
    frequency (Parseval): on small grids as matrix products with the window operators (the
    block map never formed), on large ones from the block map's own transform."""
    B, C, H, W = x.shape
    small = H * W <= DENSE_TOKENS
    products = _dense_products if small else _transformed_products
    inner, norm = products(x, spectrum, window_size, cutoff, boundary)
    # window means that are zero up to rounding are no block structure (a fit on rounding noise
    # could explain anything): compared with the map's own power
    energy = energy * (H * W)  # (B, C) on the scale of `norm`
    some = norm > NO_BLOCKS * energy.clamp_min(torch.finfo(x.dtype).tiny)
    explained = torch.where(some, inner.square() / torch.where(some, norm, 1.0), 0.0)
    return explained / float(H * W) ** 2  # power per token


def _dense_products(x, spectrum, window_size: int, cutoff: float, boundary: str):
    """(H W <x_high, b_high>, H W |b_high|^2), each (B, C), by `WindowOperators`: the block
    map's tapered spectrum is linear in the window means less their window-weighted mean."""
    B, C, H, W = x.shape
    ops = window_operators(H, W, window_size, cutoff, boundary, x.device, x.dtype)
    tokens = x.permute(0, 2, 3, 1).reshape(B, H * W, C)  # a view of channels-last maps
    means = (ops.pool.T @ tokens).transpose(1, 2).reshape(B * C, -1)  # (B C, n) window means
    means -= (means @ ops.share)[:, None]  # less the block map's window-weighted mean
    pairs = torch.view_as_real(spectrum).reshape(B * C, -1)  # (B C, 2F)
    inner = ((pairs @ ops.against) * means).sum(-1).view(B, C)
    norm = ((means @ ops.gram) * means).sum(-1).view(B, C)
    return inner, norm


def _transformed_products(x, spectrum, window_size: int, cutoff: float, boundary: str):
    """The same inner products from the block map b itself: the window means (partial windows
    at the bottom and right edges averaged over their own tokens) spread over their windows,
    tapered as every map (`estimator.tapered`) and transformed."""
    B, C, H, W = x.shape
    s = window_size
    pad = (0, -W % s, 0, -H % s)
    sums = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, pad), s)  # (B, C, h, w)
    ones = torch.ones(1, 1, H, W, device=x.device, dtype=x.dtype)
    counts = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(ones, pad), s)  # (1,1,h,w)
    means = sums / counts  # (B, C, h, w) window means
    block = means.repeat_interleave(s, -2).repeat_interleave(s, -1)[..., :H, :W]  # (B, C, H, W)
    block_spectrum = torch.fft.rfft2(tapered(block, boundary))  # (B, C, H, Wh)
    half = half_plane(H, W, x.device)
    band = high_weight(H, W, cutoff, x.device, x.dtype)[:, : half.columns]  # (H, Wh)
    weight = band * half.weights.to(x.dtype)  # (H, Wh): high band x half-plane multiplicity
    inner = (weight * (spectrum * block_spectrum.conj()).real).sum((-2, -1))
    norm = (weight * power2(block_spectrum)).sum((-2, -1))
    return inner, norm


@lru_cache(maxsize=32)
def block_reference(
    height: int, width: int, window_size: int, cutoff: float, boundary: str
) -> float:
    """The block share of unit white noise on this grid: the mean over REFERENCE_DRAWS seeded
    noise maps of the block part over the mean high-band power."""
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(1, height, width, REFERENCE_DRAWS, generator=gen, dtype=torch.float64)
    x = noise.permute(0, 3, 1, 2)  # (1, D, H, W)
    spectrum = torch.fft.rfft2(tapered(x, boundary))  # (1, D, H, Wh)
    high = high_band(spectrum, height, width, cutoff)  # (1, D, H, W)
    energy = x.square().sum((-2, -1))  # (1, D)
    explained = block_power(x, spectrum, energy, window_size, cutoff, boundary).sum()
    return float(explained / (high.square().sum() / (height * width)))
