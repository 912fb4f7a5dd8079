"""Spectral measures of (B, H, W, C) maps: settings, the per-image fields, frequency axes, the
radial profile and the channels of the authors' figure. The per-image analysis itself is
`hilocli.spectrum.analyse.analyse_maps` (the estimator: `estimator.py`; window blocks: `blocks.py`).

Frequencies are in cycles per token, per axis from `torch.fft.fftfreq(n)`: an H x W map has
fy in {k/H}, fx in {k/W}, Nyquist 0.5 (reached only on an even axis); radius r = |(fy, fx)|.
Power per channel is the Hann-windowed periodogram scaled so that the non-DC sum is the map's
spatial variance (activation^2 per token); low band 0 < r <= cutoff, high band r > cutoff (a
frequency on the cutoff counts half to each).

Per-image fields (BranchSpectrum.per_image[name], one value per distinct image, NaN undefined):
- hf_fraction: the share of the branch's non-DC power in the high band. Unitless.
- hf_fraction_c125 / _c250 / _c375: the same at cutoffs 0.125, 0.25, 0.375 cycles/token.
- hf_reference, hf_reference_c125 / _c250 / _c375: the share white noise has on this grid,
  cutoff and estimator: exact ratio of expected powers, no sampling. Unitless.
- low_power, high_power: the branch's power in each band, summed over its channels (absolute
  amounts, activation^2 per token: the shares' numerators and denominators).
- block_share: the share of the high-band power that s x s window blocks explain (blocks.py);
  block_reference: the same for white noise (exact). NaN without a window.
- hf_fraction_deblocked: the high-band share with the block part taken out of the high band
  (high - block) / (total - block). The verdict metric (`hf_fraction` gives its sensitivity).
- centroid: power-weighted mean radius over non-DC frequencies; cycles/token.
- nondc_power: non-DC power per channel (channel mean of the spatial variance); activation^2.
- dc_share: sum_c mean_c^2 / sum_c (mean_c^2 + var_c); unitless.
- parkkim_hf: Park & Kim's quantity on THIS BRANCH'S OUTPUT (they measured block outputs, see
  depth.py): log(|F| + EPS) of the map without mean removal, channel mean, at the last point of
  their diagonal (k = ceil(L/2) - 1) minus its value at zero frequency; log amplitude. NaN for
  an all-zero map.
- residual_ratio_low / residual_ratio_high (collector, settings.residual): band power of this
  branch's slice of the attention output, summed over its channels, over the band power of the
  residual stream x entering the block (summed over all channels). HiLo's output is added to x
  without a further projection (x + attn(norm1(x))), so this is the branch's share of what the
  layer adds per band. NaN for the control branch.
- matched_ratio_low / matched_ratio_high (collector, settings.matched): band power of the branch
  output / band power of its matched input: the same branch with identity attention over its
  own values through its own projection (Hi-Fi: h_proj(v_self); Lo-Fi: l_proj of the pooled value
  of the query's own window), whole maps. What the attention itself changes per band. NaN for
  the control branch.
Undefined (0/0: constant or dead maps) is NaN, never 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from hilocli.errors import UsageError
from hilocli.spectrum.analyse import CUTOFFS, EPS, cutoff_key
from hilocli.spectrum.depth import parkkim_diagonal
from hilocli.spectrum.estimator import BOUNDARIES

BRANCHES = ("hifi", "lofi", "control")
BRANCH_LABELS = {"hifi": "Hi-Fi", "lofi": "Lo-Fi", "control": "control (norm1 input)"}


PER_IMAGE_FIELDS = (
    "hf_fraction",
    "hf_reference",
    *(f"hf_fraction_{cutoff_key(c)}" for c in CUTOFFS),
    *(f"hf_reference_{cutoff_key(c)}" for c in CUTOFFS),
    "low_power",
    "high_power",
    "block_share",
    "block_reference",
    "hf_fraction_deblocked",
    "centroid",
    "nondc_power",
    "dc_share",
    "parkkim_hf",
    "residual_ratio_low",
    "residual_ratio_high",
    "matched_ratio_low",
    "matched_ratio_high",
)
VERDICT_METRIC = "hf_fraction_deblocked"
SENSITIVITY_METRIC = "hf_fraction"  # the verdict again with the window blocks left in


@dataclass(frozen=True)
class SpectrumSettings:
    cutoff: float = 0.25  # cycles per token; default half of Nyquist
    boundary: str = "hann"  # "hann" (Hann-windowed periodogram) | "none" (plain periodogram)
    significance: float = 0.05  # level of the paired test (after Holm over layers)
    margin: float = 0.05  # one image: |hf(Hi-Fi) - hf(Lo-Fi)| needed for a verdict
    paper_channels: int = 8
    residual: bool = True  # residual_ratio_* (a pre-hook on each measured block)
    depth: bool = False  # Park & Kim's depth curve over every block (collector.depth_curve())
    matched: bool = False  # matched_ratio_* (each branch with identity attention, transfer.py)
    transfer: bool = False  # per-head transfer curves (collector.transfer_curves())

    def __post_init__(self) -> None:
        if not 0.0 < self.cutoff < 0.5:
            raise UsageError(
                f"--cutoff must lie strictly between 0 and 0.5 cycles per token "
                f"(Nyquist), got {self.cutoff}"
            )
        if self.boundary not in BOUNDARIES:
            raise UsageError(
                f"--boundary must be one of {', '.join(BOUNDARIES)}, got {self.boundary!r}"
            )
        if not 0.0 < self.significance < 1.0:
            raise UsageError(f"significance must lie in (0, 1), got {self.significance}")
        if self.margin < 0:
            raise UsageError(f"margin must be >= 0, got {self.margin}")
        if self.paper_channels < 1:
            raise UsageError("paper_channels must be >= 1")

    @property
    def hann(self) -> bool:  # the old flag, read-only
        return self.boundary == "hann"

    def to_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff,
            "cutoffs": list(CUTOFFS),
            "boundary": self.boundary,
            "significance": self.significance,
            "margin": self.margin,
            "paper_channels": self.paper_channels,
            "residual": self.residual,
            "depth": self.depth,
            "matched": self.matched,
            "transfer": self.transfer,
            "eps": EPS,
            "frequency_unit": "cycles per token",
        }


# ----------------------------------------------------------------------------------------------
# Frequency geometry of an H x W map
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrequencyAxes:
    """Frequencies of an H x W FFT in torch.fft order (not shifted), on one device."""

    height: int
    width: int
    fy: torch.Tensor  # (H,) cycles per token
    fx: torch.Tensor  # (W,)
    radius: torch.Tensor  # (H, W)
    dc: torch.Tensor  # (H, W) bool, only (0, 0)
    high: torch.Tensor  # (H, W) bool, radius > cutoff
    grid: torch.Tensor  # (H, W) bool, window-grid frequencies (never DC)
    bin_index: torch.Tensor  # (H, W) long, radial bin: nearest k / max(H, W)
    bin_weights: torch.Tensor  # (nbins, H*W): row k averages the frequencies in bin k
    bin_centers: torch.Tensor  # (nbins,) k / max(H, W)
    diag: tuple[torch.Tensor, torch.Tensor]  # (K,) row and column indices along fy = fx
    diag_freq: torch.Tensor  # (K,) cycles per token of the diagonal points (per axis)


def axis_grid_marks(n: int, window_size: int) -> torch.Tensor:
    """(n,) bool: the FFT samples of an axis of length n nearest to m / s, m = 1 .. floor(s / 2).

    A period-s pattern (s x s windows) puts its energy there; when n is not a multiple of s the
    nearest sample (within half a bin) stands in. Zero frequency is never marked.
    """
    f = torch.fft.fftfreq(n, dtype=torch.float64).abs()  # (n,)
    marks = torch.zeros(n, dtype=torch.bool)
    if window_size is None or window_size < 2:
        return marks
    for m in range(1, window_size // 2 + 1):
        dist = (f - m / window_size).abs()
        dist[f == 0] = math.inf
        best = dist.min()
        if best <= 0.5 / n + 1e-12:
            marks |= dist <= best + 1e-12
    return marks


def frequency_axes(
    height: int,
    width: int,
    cutoff: float = 0.25,
    window_size: int | None = None,
    device: torch.device | str = "cpu",
) -> FrequencyAxes:
    """Frequency geometry of an H x W map; correct for even and odd sizes and non-square maps."""
    if height < 1 or width < 1:
        raise ValueError(f"map must be at least 1 x 1, got {height} x {width}")
    fy = torch.fft.fftfreq(height, dtype=torch.float64)  # (H,)
    fx = torch.fft.fftfreq(width, dtype=torch.float64)  # (W,)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)  # (H, W)
    dc = radius == 0
    length = max(height, width)
    index = torch.floor(radius * length + 0.5).long()  # (H, W) nearest k / L
    nbins = int(index.max()) + 1
    onehot = torch.zeros(nbins, height * width, dtype=torch.float64)
    onehot[index.flatten(), torch.arange(height * width)] = 1.0
    counts = onehot.sum(1, keepdim=True)
    weights = onehot / counts.clamp(min=1.0)  # (nbins, H*W); empty bins stay 0
    grid = (
        axis_grid_marks(height, window_size or 1)[:, None]
        | axis_grid_marks(width, window_size or 1)[None, :]
    )  # (H, W)
    # Park & Kim's diagonal: k = 0 .. ceil(L/2) - 1 on the shorter axis L (their roll by L/2 and
    # diag()[L/2:]: no Nyquist point on even L); on the longer axis the nearest sample of the
    # same frequency (exact when the map is square)
    diag_freq, rows, cols = (torch.as_tensor(a) for a in parkkim_diagonal(height, width))
    f32 = torch.float32
    return FrequencyAxes(
        height=height,
        width=width,
        fy=fy.to(device, f32),
        fx=fx.to(device, f32),
        radius=radius.to(device, f32),
        dc=dc.to(device),
        high=(radius > cutoff).to(device),
        grid=grid.to(device),
        bin_index=index.to(device),
        bin_weights=weights.to(device, f32),
        bin_centers=(torch.arange(nbins, dtype=torch.float64) / length).to(device, f32),
        diag=(rows.to(device), cols.to(device)),
        diag_freq=diag_freq.to(device, f32),
    )


# ----------------------------------------------------------------------------------------------
# Spectra of (B, H, W, C) maps
# ----------------------------------------------------------------------------------------------


def radial_profile(mean_power: torch.Tensor, axes: FrequencyAxes) -> torch.Tensor:
    """Radially averaged power: (B, H, W) -> (B, nbins), bins at axes.bin_centers."""
    return mean_power.flatten(1) @ axes.bin_weights.T  # (B, nbins)


def paper_channel_range(channels: int, count: int = 8) -> list[int]:
    """Channels C/2 .. C/2 + count - 1 (what the authors' all-axes fftshift effectively showed),
    moved down to fit when a branch has fewer than C/2 + count channels."""
    count = min(count, channels)
    start = max(0, min(channels // 2, channels - count))
    return list(range(start, start + count))
