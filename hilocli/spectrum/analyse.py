"""`analyse_maps`: per-image spectral measures of (B, H, W, C) maps that smooth edges and the
window grid cannot fool. Definitions are listed at the top of `hilocli.spectrum.measures`.

Pipeline per image and channel (float64 for float64 input, else float32; on the input's device):
1. remove the channel mean (its square is the DC power; `dc_share`);
2. FFT U; the window-grid part G is fitted on U (grid.py: exact there, since a period-s
   pattern times any content shifts the content's DFT exactly onto the aliases when s divides
   the axis); content c = u - g (spatial);
3. boundary on the content: "smooth" the periodic component of c (Moisan, boundary.py),
   "hann" FFT(hann * c) rescaled by sqrt(H W / sum w^2), "none" FFT(c);
4. power |.|^2 / (H W)^2 (Parseval: the non-DC sum is the spatial variance), channel mean;
   under "smooth" the smooth component's energy counts at the lowest non-zero radius 1/max(H, W)
   (it is a discrete harmonic function: its FFT's high frequencies are the wrap-around).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from hilocli.errors import UsageError
from hilocli.spectrum.boundary import BOUNDARIES, hann_window, smooth_component_fft
from hilocli.spectrum.grid import grid_spectrum

CUTOFFS = (0.125, 0.25, 0.375)  # cycles per token; the fields hf_fraction_c125 ...
ZERO_ENERGY = 1e-10  # non-DC power below this share of the map's total power counts as none


def cutoff_key(cutoff: float) -> str:
    return f"c{round(cutoff * 1000):03d}"


def power2(z: torch.Tensor) -> torch.Tensor:
    """|z|^2 of a complex tensor without the square root."""
    return z.real.square() + z.imag.square()


@dataclass
class ContentSpectra:
    """Channel-resolved spectra of one batch of maps (torch.fft order)."""

    content_power: torch.Tensor  # (B, C, H, W) content power per channel, DC zero
    smooth_power: torch.Tensor  # (B, C) smooth component's non-DC power (0 unless "smooth")
    grid_power: torch.Tensor  # (B, C) the fitted window-grid part's power
    nondc_power: torch.Tensor  # (B, C) spatial variance of the raw map
    dc_power: torch.Tensor  # (B, C) squared channel mean
    grid_axes: int
    radius: torch.Tensor  # (H, W) cycles per token
    r_min: float  # 1 / max(H, W): where the smooth component's energy is counted
    raw_hat: torch.Tensor  # (B, C, H, W) FFT of the map WITHOUT mean removal (Park & Kim)
    bands: tuple[torch.Tensor, torch.Tensor] | None = None  # (low, high) (B,) see band_power


def radius_grid(height: int, width: int, device, dtype) -> torch.Tensor:
    fy = torch.fft.fftfreq(height, device=device, dtype=torch.float64)  # (H,)
    fx = torch.fft.fftfreq(width, device=device, dtype=torch.float64)  # (W,)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2).to(dtype)  # (H, W)


def check_boundary(boundary: str) -> None:
    if boundary not in BOUNDARIES:
        raise UsageError(f"boundary must be one of {', '.join(BOUNDARIES)}, got {boundary!r}")


def content_spectra(
    maps: torch.Tensor,
    window_size: int | None = None,
    boundary: str = "smooth",
    band_cutoff: float | None = None,
) -> ContentSpectra:
    """The pipeline above on (B, H, W, C) maps; with band_cutoff also `bands`, the whole map's
    (grid included) power under the boundary, summed over channels, at r <= / > band_cutoff."""
    check_boundary(boundary)
    if maps.ndim != 4:
        raise ValueError(f"maps must be (B, H, W, C), got shape {tuple(maps.shape)}")
    dtype = torch.float64 if maps.dtype == torch.float64 else torch.float32
    x = maps.permute(0, 3, 1, 2).to(dtype)  # (B, C, H, W)
    B, C, H, W = x.shape
    norm = float(H * W) ** 2
    mean = x.mean((-2, -1), keepdim=True)  # (B, C, 1, 1)
    xc = x - mean  # (B, C, H, W)
    u_hat = torch.fft.fft2(xc)  # (B, C, H, W)
    g_hat, axes = grid_spectrum(u_hat, window_size)  # exact on the raw DFT (see grid.py)
    radius = radius_grid(H, W, x.device, dtype)

    def apply_boundary(spatial, spectrum):
        """(power (B, C, H, W) DC zeroed, smooth power (B, C)) of one map under the boundary."""
        smooth = torch.zeros(B, C, device=x.device, dtype=dtype)
        if boundary == "smooth":
            s_hat = smooth_component_fft(spatial)  # (B, C, H, W)
            spectrum = spectrum - s_hat  # the periodic component
            smooth = power2(s_hat).sum((-2, -1)) / norm  # (B, C)
        elif boundary == "hann":
            win = hann_window(H, W, device=x.device, dtype=dtype)  # (H, W)
            spectrum = torch.fft.fft2(spatial * win) * ((H * W) / win.square().sum()).sqrt()
        power = power2(spectrum) / norm
        power[..., 0, 0] = 0
        return power, smooth

    content = xc - torch.fft.ifft2(g_hat).real if axes else xc  # (B, C, H, W)
    power, smooth_power = apply_boundary(content, u_hat - g_hat)
    bands = None
    if band_cutoff is not None:
        full, full_smooth = (power, smooth_power) if not axes else apply_boundary(xc, u_hat)
        high = (radius > band_cutoff).to(dtype)  # (H, W)
        p = full.sum(1)  # (B, H, W)
        hi = (p * high).sum((-2, -1))
        bands = ((p * (1 - high)).sum((-2, -1)) + full_smooth.sum(1), hi)
    raw_hat = u_hat.clone()
    raw_hat[..., 0, 0] = mean[..., 0, 0] * (H * W)
    return ContentSpectra(
        content_power=power,
        smooth_power=smooth_power,
        grid_power=power2(g_hat).sum((-2, -1)) / norm,
        nondc_power=xc.square().mean((-2, -1)),
        dc_power=mean.square()[..., 0, 0],
        grid_axes=axes,
        radius=radius,
        r_min=1.0 / max(H, W),
        raw_hat=raw_hat,
        bands=bands,
    )


def nan_unless(ok: torch.Tensor, num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den where ok, NaN elsewhere (0/0 is undefined, never 0)."""
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.nan)


def summarise(
    spec: ContentSpectra,
    cutoff: float,
    cutoffs: tuple[float, ...],
    window_size: int | None,
    boundary: str,
) -> dict[str, torch.Tensor]:
    """Per-image fields (B,) from content spectra; channel means throughout."""
    p = spec.content_power.mean(1)  # (B, H, W)
    smooth = spec.smooth_power.mean(1)  # (B,)
    nondc = spec.nondc_power.mean(1)  # (B,)
    dc = spec.dc_power.mean(1)  # (B,)
    grid = spec.grid_power.mean(1)  # (B,)
    floor = ZERO_ENERGY * (nondc + dc) + 1e-30
    total = p.sum((-2, -1)) + smooth  # (B,) content non-DC power
    ok = (total > floor) & (nondc > floor)
    H, W = p.shape[-2:]
    out: dict[str, torch.Tensor] = {}
    for c in sorted({cutoff, *cutoffs}):
        high = (spec.radius > c).to(p.dtype)  # (H, W)
        hf = nan_unless(ok, (p * high).sum((-2, -1)), total)
        ref = torch.full_like(hf, white_noise_reference(H, W, boundary, c))
        if c == cutoff:
            out["hf_fraction"], out["hf_reference"] = hf, ref
        if c in cutoffs:
            out[f"hf_fraction_{cutoff_key(c)}"] = hf
            out[f"hf_reference_{cutoff_key(c)}"] = ref
    weighted = (p * spec.radius).sum((-2, -1)) + spec.r_min * smooth
    out["centroid"] = nan_unless(ok, weighted, total)
    separable = spec.grid_axes > 0 or (window_size or 1) < 2
    gf = nan_unless(nondc > floor, grid, nondc)
    out["grid_fraction"] = gf if separable else torch.full_like(gf, torch.nan)
    out["grid_axes"] = torch.full_like(gf, float(spec.grid_axes))
    out["nondc_power"] = nondc
    out["dc_share"] = nan_unless(nondc + dc > 1e-30, dc, nondc + dc)
    return out


def analyse_maps(
    maps: torch.Tensor,
    *,
    window_size: int | None = None,
    cutoff: float = 0.25,
    boundary: str = "smooth",
    cutoffs: tuple[float, ...] = CUTOFFS,
) -> dict[str, torch.Tensor]:
    """Per-image spectral fields of maps (B, H, W, C): each a tensor (B,) on the maps' device,
    NaN where undefined. Keys: hf_fraction, hf_reference, hf_fraction_cNNN, hf_reference_cNNN
    (for each of `cutoffs`), centroid, grid_fraction, grid_axes, nondc_power, dc_share."""
    if not 0.0 < cutoff < 0.5 * 2**0.5:
        raise UsageError(f"cutoff must lie in (0, {0.5 * 2**0.5:.3f}) cycles/token, got {cutoff}")
    spec = content_spectra(maps, window_size, boundary)
    return summarise(spec, cutoff, tuple(cutoffs), window_size, boundary)


@lru_cache(maxsize=64)
def white_noise_reference(height: int, width: int, boundary: str, cutoff: float) -> float:
    """The hf fraction of white noise's expected content power on this grid, exactly: the
    boundary operator (linear) applied to each of the H*W unit impulses, powers summed (that is
    E|F(f)|^2 for unit white noise); the ratio of expected powers. Grid separation is left out
    (it is not linear); it removes about 1/|base band| of each alias band from noise."""
    n = height * width
    eye = torch.eye(n, dtype=torch.float64).reshape(n, height, width)  # (N, H, W) impulses
    expected = torch.zeros(height, width, dtype=torch.float64)
    smooth = 0.0
    for start in range(0, n, 1024):
        chunk = eye[start : start + 1024].permute(1, 2, 0)[None]  # (1, H, W, k)
        spec = content_spectra(chunk, None, boundary)
        expected += spec.content_power[0].sum(0)
        smooth += float(spec.smooth_power.sum())
    radius = radius_grid(height, width, "cpu", torch.float64)
    total = float(expected.sum()) + smooth
    return float(expected[radius > cutoff].sum()) / total


def band_power(
    maps: torch.Tensor, cutoff: float = 0.25, boundary: str = "smooth"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Power of maps (B, H, W, C) summed over channels in the low band (0 < r <= cutoff, plus the
    smooth component under "smooth") and the high band (r > cutoff): each (B,). No grid
    separation: this is what the map adds, artifact included."""
    return content_spectra(maps, None, boundary, band_cutoff=cutoff).bands
