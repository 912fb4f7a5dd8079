"""`analyse_maps`: per-image spectral measures of (B, H, W, C) maps, one estimator for all.

The estimator is a Hann-windowed periodogram (`boundary="hann"`, the default): per channel the
map minus its window-weighted mean, times a separable Hann window sampled at pixel centres,
2D real FFT, power |F|^2 / (H W)^2 scaled by H W / sum(w^2) (so a stationary map's non-DC power
is its spatial variance). Why this one: the FFT of an unwindowed map treats it as periodic, so
a ramp or a blob near the border jumps at the wrap-around and reads as high frequency; the window
takes the jump away and leaves each pure tone within about one bin of where it is, in any
direction and on any grid (the DCT-II has no wrap-around either, but a tone whose phase is not
the DCT's own leaks far below its frequency). What it cannot do: resolve two frequencies closer
than about two bins, or weigh the border tokens fully. `boundary="none"` is the plain periodic
periodogram (the authors' picture), for comparison.

Bands: low is 0 < r <= cutoff, high r > cutoff (r = |(fy, fx)| in cycles per token); a frequency
exactly at the cutoff counts half to each (the window blurs every tone one bin each way, so a
bin on the cutoff holds power from both sides). The window-block part of the high band is
`hilocli.spectrum.blocks`. Undefined (0/0: constant or dead maps) is NaN, never 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from hilocli.errors import UsageError
from hilocli.spectrum.blocks import block_power, block_reference
from hilocli.spectrum.depth import parkkim_diagonal
from hilocli.spectrum.estimator import (
    check_boundary,
    high_weight,
    power2,
    radius_grid,
    tapered,
)
from hilocli.spectrum.halfplane import half_plane

CUTOFFS = (0.125, 0.25, 0.375)  # cycles per token; the fields hf_fraction_c125 ...
ZERO_ENERGY = 1e-10  # non-DC power below this share of the map's total power counts as none
EPS = 1e-6  # log(|F| + EPS): absolute guard against log(0)


def cutoff_key(cutoff: float) -> str:
    return f"c{round(cutoff * 1000):03d}"


@dataclass
class Spectra:
    """One set of maps' spectra under the estimator; channel means unless said otherwise."""

    power: torch.Tensor  # (B, H, W) full plane, torch.fft order, DC zero
    nondc_power: torch.Tensor  # (B,) spatial variance of the raw map (no window)
    dc_power: torch.Tensor  # (B,) squared channel mean
    block_power: torch.Tensor  # (B,) high-band power explained by window blocks (NaN: no s)
    radius: torch.Tensor  # (H, W) cycles per token
    channels: int
    block_reference: float  # the block share of white noise on this grid (NaN: no window)
    log_amplitude: torch.Tensor | None = None  # (B, H, W) log(|F| + EPS) of the tapered map
    raw_log_diagonal: torch.Tensor | None = None  # (B, K) the same of the plain FFT WITHOUT
    # mean removal, on Park & Kim's diagonal (`depth.parkkim_diagonal`) only
    paper_log_amplitude: torch.Tensor | None = None  # (B, k, H, W) plain, for paper channels


@dataclass(frozen=True)
class Part:
    """One set of maps (B, H, W, C) for `joint_spectra`, with what to measure on it."""

    maps: torch.Tensor
    window_size: int | None = None  # the block part's s (None or 1: none, NaN)
    amplitudes: bool = False  # also the log-amplitude maps and the plain diagonal
    paper_channels: tuple[int, ...] = ()  # those channels' plain log-amplitude maps


def spectra(
    maps: torch.Tensor,
    window_size: int | None = None,
    boundary: str = "hann",
    cutoff: float = 0.25,
    amplitudes: bool = False,
    paper_channels: list[int] | None = None,
) -> Spectra:
    """The estimator on (B, H, W, C) maps; with `amplitudes` the log-amplitude maps and the
    plain diagonal, with `paper_channels` those channels' plain log-amplitude maps."""
    part = Part(maps, window_size, amplitudes, tuple(paper_channels or ()))
    return joint_spectra([part], boundary, cutoff)[0]


def joint_spectra(parts: list[Part], boundary: str = "hann", cutoff: float = 0.25) -> list:
    """The estimator on several sets of maps of one grid (a layer's branches and its stream) in
    one transform: the channels of all parts stacked, tapered and FFT'd together, then each
    part's channel means taken on its own channels. One Spectra per part, in order."""
    check_boundary(boundary)
    x = stacked([p.maps for p in parts])  # (B, C_total, H, W)
    B, _, H, W = x.shape
    mean = x.mean((-2, -1))  # (B, C_total); torch.var_mean is several times slower here
    var = (x - mean[..., None, None]).square().mean((-2, -1))  # (B, C_total) spatial variance
    spectrum = torch.fft.rfft2(tapered(x, boundary))  # (B, C_total, H, Wh)
    power = power2(spectrum)  # (B, C_total, H, Wh)
    power[..., 0, 0] = 0
    sizes = {p.window_size for p in parts if (p.window_size or 1) >= 2}
    energy = (var + mean.square()) * (H * W)  # (B, C_total) each map's sum of squares
    blocks = {s: block_power(x, spectrum, energy, s, cutoff, boundary) for s in sizes}
    diagonal = plain_diagonal(x) if any(p.amplitudes for p in parts) else None  # (B, C_t, K)
    out, start = [], 0
    for part in parts:
        own = slice(start, start + part.maps.shape[-1])
        start = own.stop
        spec = Spectra(
            power=half_plane(H, W, x.device).expand(power[:, own].mean(1) / float(H * W) ** 2),
            nondc_power=var[:, own].mean(1),
            dc_power=mean[:, own].square().mean(1),
            block_power=blocks[part.window_size][:, own].mean(1)
            if part.window_size in blocks
            else torch.full((B,), torch.nan, device=x.device, dtype=x.dtype),
            radius=radius_grid(H, W, x.device, x.dtype),
            channels=part.maps.shape[-1],
            block_reference=block_reference(H, W, part.window_size, cutoff, boundary)
            if part.window_size in blocks
            else math.nan,
        )
        if part.amplitudes:
            amplitudes(spec, x[:, own], power[:, own], diagonal[:, own], part.paper_channels)
        out.append(spec)
    return out


def stacked(maps: list[torch.Tensor]) -> torch.Tensor:
    """(B, H, W, C_k) maps of one grid -> (B, sum C_k, H, W) in the estimator's precision
    (float64 when any part is, else float32): one copy, channels last in memory (the layout the
    maps come in; the sums over a map then add in the same order as for one part alone)."""
    B, H, W = maps[0].shape[:3]
    for m in maps:
        if m.ndim != 4 or tuple(m.shape[:3]) != (B, H, W):
            raise ValueError(f"maps must be (B, H, W, C) of one grid, got {tuple(m.shape)}")
    wide = any(m.dtype == torch.float64 for m in maps)
    dtype = torch.float64 if wide else torch.float32
    x = torch.empty(B, H, W, sum(m.shape[-1] for m in maps), dtype=dtype, device=maps[0].device)
    start = 0
    for m in maps:
        x[..., start : start + m.shape[-1]].copy_(m)
        start += m.shape[-1]
    return x.permute(0, 3, 1, 2)


def amplitudes(
    spec: Spectra,
    x: torch.Tensor,
    power: torch.Tensor,
    diagonal: torch.Tensor,
    paper_channels: tuple[int, ...],
) -> None:
    """Fill spec's log-amplitude fields from its channels: x (B, C, H, W), their tapered power
    (B, C, H, Wh), their plain diagonal (B, C, K), and the paper channels' plain maps."""
    H, W = x.shape[-2:]
    half = half_plane(H, W, x.device)
    spec.log_amplitude = half.expand(power.sqrt().add_(EPS).log_().mean(1))  # (B, H, W)
    spec.raw_log_diagonal = diagonal.mean(1)  # (B, K)
    if paper_channels:
        first, last = paper_channels[0], paper_channels[-1]
        paper = x[:, first : last + 1].contiguous()  # (B, k, H, W); a strided FFT is slow
        plain = power2(torch.fft.rfft2(paper)).sqrt_().add_(EPS).log_()
        spec.paper_log_amplitude = half.expand(plain)


@lru_cache(maxsize=32)
def diagonal_dft(height: int, width: int, device, dtype) -> torch.Tensor:
    """(H W, 2 K): x (.., H W) @ this = the (re, im) of the plain 2D DFT of x at the K points
    of Park & Kim's diagonal (`depth.parkkim_diagonal`), for each map (cached, read-only)."""
    _, rows, cols = parkkim_diagonal(height, width)
    y = torch.arange(height, dtype=torch.float64)[:, None] / height  # (H, 1)
    x = torch.arange(width, dtype=torch.float64)[None, :] / width  # (1, W)
    fy, fx = (torch.as_tensor(k, dtype=torch.float64)[:, None, None] for k in (rows, cols))
    phase = -2 * math.pi * (fy * y + fx * x)  # (K, H, W)
    dft = torch.stack([phase.cos(), phase.sin()], -1).flatten(1, 2)  # (K, H W, 2)
    return dft.permute(1, 0, 2).reshape(height * width, -1).to(device, dtype)


def plain_diagonal(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) maps -> (B, C, K) log(|F| + EPS) of their plain FFT (no mean removal, no
    window) on Park & Kim's diagonal: a DFT at K points, not a full FFT."""
    B, C, H, W = x.shape
    tokens = x.permute(0, 2, 3, 1).reshape(B, H * W, C)  # a view of channels-last maps
    values = diagonal_dft(H, W, x.device, x.dtype).T @ tokens  # (B, 2 K, C)
    values = values.view(B, -1, 2, C).square().sum(2).sqrt_().add_(EPS).log_()  # (B, K, C)
    return values.transpose(1, 2)  # (B, C, K)


def nan_unless(ok: torch.Tensor, num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den where ok, NaN elsewhere (0/0 is undefined, never 0)."""
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.nan)


def summarise(spec: Spectra, cutoff: float, cutoffs: tuple[float, ...], boundary: str):
    """Per-image fields (B,) from spectra; channel means, band powers channel sums."""
    p = spec.power  # (B, H, W)
    H, W = p.shape[-2:]
    total = p.sum((-2, -1))  # (B,)
    floor = ZERO_ENERGY * (spec.nondc_power + spec.dc_power) + 1e-30
    ok = (total > floor) & (spec.nondc_power > floor)
    levels = sorted({cutoff, *cutoffs})
    weights = [high_weight(H, W, c, p.device, p.dtype) for c in levels]
    sums = p.flatten(1) @ torch.stack([*weights, spec.radius], -1).flatten(0, 1)  # (B, L+1)
    out: dict[str, torch.Tensor] = {}
    for k, c in enumerate(levels):
        hf = nan_unless(ok, sums[:, k], total)
        ref = torch.full_like(hf, white_noise_reference(H, W, boundary, c))
        suffixes = ([""] if c == cutoff else []) + ([f"_{cutoff_key(c)}"] if c in cutoffs else [])
        for suffix in suffixes:
            out[f"hf_fraction{suffix}"], out[f"hf_reference{suffix}"] = hf, ref
    high = sums[:, levels.index(cutoff)]
    block = spec.block_power  # (B,) NaN without a window
    out["high_power"] = high * spec.channels
    out["low_power"] = (total - high) * spec.channels
    out["block_share"] = nan_unless(ok & (high > floor), block, high)
    out["block_reference"] = torch.full_like(high, spec.block_reference)
    kept = torch.where(torch.isnan(block), torch.zeros_like(block), block)
    out["hf_fraction_deblocked"] = nan_unless(
        ok & (total - kept > floor), high - kept, total - kept
    )
    out["centroid"] = nan_unless(ok, sums[:, -1], total)
    out["nondc_power"] = spec.nondc_power
    out["dc_share"] = nan_unless(spec.nondc_power + spec.dc_power > 1e-30, spec.dc_power,
                                 spec.nondc_power + spec.dc_power)  # fmt: skip
    return out


def analyse_maps(
    maps: torch.Tensor,
    *,
    window_size: int | None = None,
    cutoff: float = 0.25,
    boundary: str = "hann",
    cutoffs: tuple[float, ...] = CUTOFFS,
) -> dict[str, torch.Tensor]:
    """Per-image spectral fields of maps (B, H, W, C): each a tensor (B,) on the maps' device,
    NaN where undefined. Keys: hf_fraction, hf_reference, hf_fraction_cNNN, hf_reference_cNNN
    (for each of `cutoffs`), high_power, low_power (channel sums), block_share,
    hf_fraction_deblocked, centroid, nondc_power, dc_share (see hilocli.spectrum.measures)."""
    if not 0.0 < cutoff < 0.5 * 2**0.5:
        raise UsageError(f"cutoff must lie in (0, {0.5 * 2**0.5:.3f}) cycles/token, got {cutoff}")
    spec = spectra(maps, window_size, boundary, cutoff)
    return summarise(spec, cutoff, tuple(cutoffs), boundary)


@lru_cache(maxsize=64)
def white_noise_reference(height: int, width: int, boundary: str, cutoff: float) -> float:
    """The hf fraction of white noise's expected power on this grid under the estimator, exactly:
    the ratio of expected powers (`expected_noise_power`)."""
    expected = expected_noise_power(height, width, boundary)
    high = high_weight(height, width, cutoff, "cpu", torch.float64)
    return float((expected * high).sum() / expected.sum())


@lru_cache(maxsize=16)
def expected_noise_power(height: int, width: int, boundary: str) -> torch.Tensor:
    """(H, W) E|F(f)|^2 of unit white noise under the estimator: the estimator (linear up to the
    square) applied to each of the H W unit impulses, powers summed (cached, read-only)."""
    n = height * width
    eye = torch.eye(n, dtype=torch.float64).reshape(n, height, width)  # (N, H, W) impulses
    expected = torch.zeros(height, width, dtype=torch.float64)
    for start in range(0, n, 1024):
        chunk = eye[start : start + 1024].permute(1, 2, 0)[None]  # (1, H, W, k)
        spec = spectra(chunk, None, boundary)
        expected += spec.power[0] * spec.channels  # channel sums
    return expected


def band_power(
    maps: torch.Tensor, cutoff: float = 0.25, boundary: str = "hann"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) power of maps (B, H, W, C) summed over channels, each (B,): what the map adds
    per band under the estimator, window blocks included."""
    return bands(spectra(maps, None, boundary, cutoff), cutoff)


def bands(spec: Spectra, cutoff: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) band power (B,) of `spec`, summed over its channels (`band_power`)."""
    H, W = spec.power.shape[-2:]
    weight = high_weight(H, W, cutoff, spec.power.device, spec.power.dtype)
    high = (spec.power * weight).sum((-2, -1))
    total = spec.power.sum((-2, -1))
    return (total - high) * spec.channels, high * spec.channels
