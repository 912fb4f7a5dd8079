"""`analyse_maps`: per-image spectral measures of (B, H, W, C) maps that smooth edges and the
window grid cannot fool. Definitions are listed at the top of `hilocli.spectrum.measures`.

Pipeline per image and channel (float64 for float64 input, else float32; on the input's device):
1. remove the channel mean (its square is the DC power; `dc_share`);
2. real FFT U (`rfft2`: the maps are real, so U(-f) = conj U(f) and only the half-plane of
   columns 0 .. W/2 is computed); the window-grid part G is fitted on U (grid.py: exact there,
   since a period-s pattern times any content shifts the content's DFT exactly onto the aliases
   when s divides the axis); content C = U - G;
3. boundary on the content: "smooth" the periodic component C - S (Moisan, boundary.py; S needs
   only the content's wrap-around jumps, which are read off the spectrum), "hann"
   FFT(hann * c) rescaled by sqrt(H W / sum w^2) (c = u - g in space), "none" C;
4. power |.|^2 / (H W)^2 (Parseval: the non-DC sum is the spatial variance), channel mean, then
   mirrored onto the full plane (power and |F| are even in f); sums over the half-plane weigh
   columns 1 .. ceil(W/2) - 1 twice (their mirror images are not stored). Under "smooth" the
   smooth component's energy counts at the lowest non-zero radius 1/max(H, W) (it is a discrete
   harmonic function: its FFT's high frequencies are the wrap-around).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from hilocli.errors import UsageError
from hilocli.spectrum.boundary import (
    BOUNDARIES,
    hann_window,
    smooth_from_jumps,
    space_jumps,
    spectrum_jumps,
)
from hilocli.spectrum.grid import grid_fit
from hilocli.spectrum.halfplane import half_plane

CUTOFFS = (0.125, 0.25, 0.375)  # cycles per token; the fields hf_fraction_c125 ...
ZERO_ENERGY = 1e-10  # non-DC power below this share of the map's total power counts as none
EPS = 1e-6  # log(|F| + EPS): absolute guard against log(0)


def cutoff_key(cutoff: float) -> str:
    return f"c{round(cutoff * 1000):03d}"


def power2(z: torch.Tensor) -> torch.Tensor:
    """|z|^2 of a complex tensor without the square root (one contiguous square, one add)."""
    squares = torch.view_as_real(z).square()  # (..., 2)
    return squares[..., 0] + squares[..., 1]


@dataclass
class ContentSpectra:
    """Channel means of one batch of maps' spectra (full plane, torch.fft order)."""

    content_power: torch.Tensor  # (B, H, W) content power, channel mean, DC zero
    smooth_power: torch.Tensor  # (B,) smooth component's non-DC power (0 unless "smooth")
    grid_power: torch.Tensor  # (B,) the fitted window-grid part's power
    nondc_power: torch.Tensor  # (B,) spatial variance of the raw map
    dc_power: torch.Tensor  # (B,) squared channel mean
    grid_axes: int
    radius: torch.Tensor  # (H, W) cycles per token
    r_min: float  # 1 / max(H, W): where the smooth component's energy is counted
    channels: int  # C, the number of channels averaged
    log_amplitude: torch.Tensor | None = None  # (B, H, W) log(|content F| + EPS), channel mean
    raw_log_amplitude: torch.Tensor | None = None  # (B, H, W) log(|F| + EPS) WITHOUT mean
    # removal (Park & Kim), channel mean
    paper_log_amplitude: torch.Tensor | None = None  # (B, k, H, W) the same for paper_channels
    bands: tuple[torch.Tensor, torch.Tensor] | None = None  # (low, high) (B,) see band_power


@lru_cache(maxsize=64)
def radius_grid(height: int, width: int, device, dtype) -> torch.Tensor:
    """(H, W) radius in cycles per token (cached, read-only)."""
    fy = torch.fft.fftfreq(height, device=device, dtype=torch.float64)  # (H,)
    fx = torch.fft.fftfreq(width, device=device, dtype=torch.float64)  # (W,)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2).to(dtype)  # (H, W)


@lru_cache(maxsize=64)
def band_weights(height: int, width: int, cutoff: float, device, dtype) -> torch.Tensor:
    """(H * (W//2 + 1), 2): half-plane weights (columns with a stored mirror image count twice)
    of the low (0 < r <= cutoff, DC excluded) and the high band (r > cutoff)."""
    cols = width // 2 + 1
    radius = radius_grid(height, width, device, torch.float64)[:, :cols]  # (H, Wh)
    weight = half_plane(height, width, device).weights.to(torch.float64)  # (Wh,)
    high = (radius > cutoff).to(torch.float64) * weight  # (H, Wh)
    low = (radius <= cutoff).to(torch.float64) * weight
    low[0, 0] = 0.0
    return torch.stack([low.flatten(), high.flatten()], -1).to(dtype)  # (H*Wh, 2)


def check_boundary(boundary: str) -> None:
    if boundary not in BOUNDARIES:
        raise UsageError(f"boundary must be one of {', '.join(BOUNDARIES)}, got {boundary!r}")


def centred_maps(*maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, W, C_k) maps -> (mean-removed maps (B, sum C_k, H, W) contiguous, their channels
    one after the other, and the channel means (B, sum C_k))."""
    for m in maps:
        if m.ndim != 4:
            raise ValueError(f"maps must be (B, H, W, C), got shape {tuple(m.shape)}")
    dtype = torch.float64 if maps[0].dtype == torch.float64 else torch.float32
    B, H, W, _ = maps[0].shape
    xc = torch.empty(B, sum(m.shape[-1] for m in maps), H, W, device=maps[0].device, dtype=dtype)
    means, start = [], 0
    for m in maps:
        x = m.to(dtype)
        mean = x.mean((1, 2))  # (B, C)
        stop = start + x.shape[-1]
        torch.sub(x.permute(0, 3, 1, 2), mean[:, :, None, None], out=xc[:, start:stop])
        means.append(mean)
        start = stop
    return xc, torch.cat(means, 1)  # one pass each, written in place


def periodic_half(
    spectrum: torch.Tensor | None,
    boundary: str,
    space: torch.Tensor,
    jumps: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A map's half-plane spectrum (..., H, W//2+1) under the boundary option, and the smooth
    component's non-DC power per channel (...) (zero unless "smooth"; not normalised).
    `spectrum`: the map's rfft2 (unused by "hann"); `space`: the map in space (..., H, W) (only
    its shape unless "hann"); `jumps`: its wrap-around jump FFTs (`space_jumps`; else read off
    `spectrum`)."""
    H, W = space.shape[-2:]
    zero = torch.zeros(space.shape[:-2], device=space.device, dtype=space.dtype)
    if boundary == "hann":
        win = hann_window(H, W, device=space.device, dtype=space.dtype)  # (H, W)
        scale = ((H * W) / win.square().sum()).sqrt()
        return torch.fft.rfft2(space * win) * scale, zero
    if boundary != "smooth":
        return spectrum, zero
    s_hat = smooth_from_jumps(*(jumps or spectrum_jumps(spectrum, W)), W)  # (..., H, Wh)
    weight = half_plane(H, W, space.device).weights.to(space.dtype)  # (Wh,)
    return spectrum - s_hat, (power2(s_hat) * weight).sum((-2, -1))


def content_spectra(
    maps: torch.Tensor,
    window_size: int | None = None,
    boundary: str = "smooth",
    band_cutoff: float | None = None,
    amplitudes: bool = False,
    paper_channels: list[int] | None = None,
) -> ContentSpectra:
    """The pipeline above on (B, H, W, C) maps. With band_cutoff also `bands`, the whole map's
    (grid included) power under the boundary, summed over channels, at r <= / > band_cutoff;
    with `amplitudes` the log-amplitude maps, with `paper_channels` those channels' raw ones."""
    bands = [band_cutoff is not None]
    cutoff = 0.25 if band_cutoff is None else band_cutoff
    return joint_spectra([maps], window_size, boundary, cutoff, bands, amplitudes,
                         [paper_channels])[0]  # fmt: skip


def joint_spectra(
    maps: list[torch.Tensor],
    window_size: int | None,
    boundary: str,
    band_cutoff: float,
    bands: list[bool],
    amplitudes: bool = False,
    paper_channels: list[list[int] | None] | None = None,
) -> list[ContentSpectra]:
    """`content_spectra` of several sets of maps (B, H, W, C_k) on one grid (the branches of one
    layer), computed together: one FFT, one grid fit, ... over all their channels; the channel
    means are taken per set. `bands[k]`: set k's band powers at band_cutoff."""
    check_boundary(boundary)
    xc, mean = centred_maps(*maps)  # (B, C, H, W), (B, C): the sets' channels one after another
    B, C, H, W = xc.shape
    norm = float(H * W) ** 2
    half = half_plane(H, W, xc.device)
    ends = torch.tensor([m.shape[-1] for m in maps]).cumsum(0).tolist()
    slices = [slice(a, b) for a, b in zip([0, *ends[:-1]], ends, strict=True)]
    u_hat = torch.fft.rfft2(xc)  # (B, C, H, Wh)
    fit = grid_fit(u_hat, H, W, window_size)  # the window-grid part, exact on the raw DFT
    if fit is None:
        content, smooth = periodic_half(u_hat, boundary, xc, space_jumps(xc))
    elif boundary == "hann":
        grid_space = torch.fft.irfft2(fit.dense(u_hat), s=(H, W))  # (B, C, H, W)
        content, smooth = periodic_half(None, boundary, xc - grid_space)
    else:  # the content's jumps read off its spectrum: no inverse FFT
        content, smooth = periodic_half(fit.content(u_hat), boundary, xc)
    power = power2(content)  # (B, C, H, Wh) |F|^2
    power[..., 0, 0] = 0
    grid = torch.zeros(B, C, device=xc.device, dtype=xc.dtype) if fit is None else fit.power
    nondc = xc.square().mean((-2, -1))  # (B, C)
    out = [
        ContentSpectra(
            content_power=half.expand(power[:, k].mean(1) / norm),  # (B, H, W)
            smooth_power=smooth[:, k].mean(1) / norm,
            grid_power=grid[:, k].mean(1) / norm,
            nondc_power=nondc[:, k].mean(1),
            dc_power=mean[:, k].square().mean(1),
            grid_axes=0 if fit is None else fit.axes,
            radius=radius_grid(H, W, xc.device, xc.dtype),
            r_min=1.0 / max(H, W),
            channels=k.stop - k.start,
        )
        for k in slices
    ]
    if any(bands):
        wanted = [k for k, b in zip(slices, bands, strict=True) if b]
        span = slice(wanted[0].start, wanted[-1].stop)  # the channels of every set that wants them
        if fit is None:
            full, full_smooth = power[:, span], smooth[:, span]  # content is the whole map
        else:
            sub = xc[:, span]
            spectrum, full_smooth = periodic_half(u_hat[:, span], boundary, sub, space_jumps(sub))
            full = power2(spectrum)  # (B, C', H, Wh)
        for k, spec in zip(slices, out, strict=True):
            if k in wanted:
                part = slice(k.start - span.start, k.stop - span.start)
                spec.bands = band_sums(full[:, part], full_smooth[:, part], W, band_cutoff)
    if amplitudes:  # in place: power is not used below
        log_amp = power.sqrt_().add_(EPS).log_()  # (B, C, H, Wh) log(|content F| + EPS)
        raw = power2(u_hat)  # (B, C, H, Wh) |F|^2 without mean removal: DC from the mean
        raw[..., 0, 0] = (mean * (H * W)).square()
        raw_log = raw.sqrt_().add_(EPS).log_()  # (B, C, H, Wh) log(|F| + EPS)
        for k, spec, chans in zip(slices, out, paper_channels or [None] * len(out), strict=True):
            spec.log_amplitude = half.expand(log_amp[:, k].mean(1))  # (B, H, W)
            spec.raw_log_amplitude = half.expand(raw_log[:, k].mean(1))
            if chans:
                picked = raw_log[:, k.start + chans[0] : k.start + chans[-1] + 1]  # (B, n, H, Wh)
                spec.paper_log_amplitude = half.expand(picked)
    return out


def band_sums(
    power: torch.Tensor, smooth: torch.Tensor, width: int, cutoff: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) (B,): half-plane |F|^2 (B, C, H, W//2+1) of maps of width W summed over the
    channels and the band, DC left out, / (H W)^2; the smooth power (B, C) counts as low."""
    B, _, H, _ = power.shape
    norm = float(H * width) ** 2
    weights = band_weights(H, width, cutoff, power.device, power.dtype)  # (H*Wh, 2)
    low, high = (power.sum(1).reshape(B, -1) @ weights / norm).unbind(-1)  # (B,) each
    return low + smooth.sum(1) / norm, high


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
    p = spec.content_power  # (B, H, W)
    smooth, nondc, dc, grid = spec.smooth_power, spec.nondc_power, spec.dc_power, spec.grid_power
    floor = ZERO_ENERGY * (nondc + dc) + 1e-30
    total = p.sum((-2, -1)) + smooth  # (B,) content non-DC power
    ok = (total > floor) & (nondc > floor)
    H, W = p.shape[-2:]
    out: dict[str, torch.Tensor] = {}
    levels = sorted({cutoff, *cutoffs})
    masks = torch.stack([(spec.radius > c) for c in levels] + [spec.radius], -1)  # (H, W, L+1)
    sums = p.flatten(1) @ masks.to(p.dtype).flatten(0, 1)  # (B, L+1): one pass over p
    for k, c in enumerate(levels):
        hf = nan_unless(ok, sums[:, k], total)
        ref = torch.full_like(hf, white_noise_reference(H, W, boundary, c))
        if c == cutoff:
            out["hf_fraction"], out["hf_reference"] = hf, ref
        if c in cutoffs:
            out[f"hf_fraction_{cutoff_key(c)}"] = hf
            out[f"hf_reference_{cutoff_key(c)}"] = ref
    weighted = sums[:, -1] + spec.r_min * smooth
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
        expected += spec.content_power[0] * spec.channels  # channel sums
        smooth += float(spec.smooth_power[0]) * spec.channels
    radius = radius_grid(height, width, "cpu", torch.float64)
    total = float(expected.sum()) + smooth
    return float(expected[radius > cutoff].sum()) / total


def band_power(
    maps: torch.Tensor, cutoff: float = 0.25, boundary: str = "smooth"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Power of maps (B, H, W, C) summed over channels in the low band (0 < r <= cutoff, plus the
    smooth component under "smooth") and the high band (r > cutoff): each (B,). No grid
    separation: this is what the map adds, artifact included."""
    check_boundary(boundary)
    xc, _ = centred_maps(maps)  # (B, C, H, W)
    spectrum = None if boundary == "hann" else torch.fft.rfft2(xc)
    jumps = space_jumps(xc) if boundary == "smooth" else None
    periodic, smooth = periodic_half(spectrum, boundary, xc, jumps)
    return band_sums(power2(periodic), smooth, xc.shape[-1], cutoff)
