"""Boundary handling before an FFT of a non-periodic map: the FFT treats an H x W map as one
period of a periodic image, so the jump between the last and the first row (column) shows up as
spurious high frequency. Three options:

- "smooth" (default): the periodic-plus-smooth decomposition of Moisan (2011), u = p + s. The
  boundary image v holds the jumps across the wrap, v1(0, j) = u(H-1, j) - u(0, j),
  v1(H-1, j) = -v1(0, j), v2(i, 0) = u(i, W-1) - u(i, 0), v2(i, W-1) = -v2(i, 0); the smooth
  component solves the periodic discrete Poisson equation  Lap s = v1 + v2, i.e. in Fourier
  s^(q, r) = v^(q, r) / (2 cos(2 pi q / H) + 2 cos(2 pi r / W) - 4), s^(0, 0) = 0, and
  p = u - s is periodic in Moisan's sense (Lap_periodic p = Lap_interior u). v^ is computed
  from 1D FFTs of the two jump profiles (v is zero off the border); those are taken in space
  (`space_jumps`) or read off the map's spectrum (`spectrum_jumps`: after the window grid was
  removed in Fourier space, no inverse FFT is needed).
- "hann": multiply by a separable Hann window sampled at pixel centres (no zero row).
- "none": the plain FFT of the mean-removed map (the authors' picture).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

BOUNDARIES = ("smooth", "hann", "none")


def hann_window(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(H, W) separable Hann window sampled at pixel centres: w[k] = sin^2(pi (k + 1/2) / n).

    Unlike torch.hann_window it zeroes no row or column, which matters on 7 x 7 or 14 x 14 grids.
    """

    def one(n: int) -> torch.Tensor:
        k = torch.arange(n, device=device, dtype=torch.float64)
        return torch.sin(math.pi * (k + 0.5) / n) ** 2  # (n,)

    return (one(height)[:, None] * one(width)[None, :]).to(dtype)  # (H, W)


@lru_cache(maxsize=64)
def _moisan_factors(height: int, width: int, device, dtype) -> tuple[torch.Tensor, ...]:
    """(row factor (H, W), column factor (H, W), row contraction (H,), column contraction (W,)):
    s^(q, r) = a^(r) * row[q, r] + b^(q) * col[q, r] with a^, b^ the FFTs of the row and column
    jump profiles; the contractions read those FFTs off a map's spectrum (cached, read-only)."""
    H, W = height, width
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    q = torch.arange(H, dtype=torch.float64)
    r = torch.arange(W, dtype=torch.float64)
    # FFT of a row profile a(j) placed at row 0 and -a(j) at row H-1: a^(r) (1 - e^{2 pi i q/H})
    fy = 1 - torch.exp(2j * math.pi * q / H)  # (H,)
    fx = 1 - torch.exp(2j * math.pi * r / W)  # (W,)
    denom = 2 * torch.cos(2 * math.pi * q / H)[:, None] + 2 * torch.cos(2 * math.pi * r / W)
    denom = denom - 4  # (H, W), zero only at (0, 0)
    denom[0, 0] = 1.0
    row = fy[:, None] / denom  # (H, W)
    col = fx[None, :] / denom
    row[0, 0] = col[0, 0] = 0  # s^(0, 0) = 0
    # u(H-1, j) - u(0, j) from the spectrum X: its FFT over j is
    # (1/H) sum_q X(q, r) (e^{-2 pi i q/H} - 1); likewise over i for the columns
    to_row = (torch.exp(-2j * math.pi * q / H) - 1) / H  # (H,)
    to_col = (torch.exp(-2j * math.pi * r / W) - 1) / W  # (W,)
    return tuple(t.to(device, cdtype) for t in (row, col, to_row, to_col))


def space_jumps(u: torch.Tensor, full: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """FFTs of the wrap-around jumps of real maps u (..., H, W): the row profile
    u(H-1, j) - u(0, j) over j (..., W//2+1; all W with full) and the column profile
    u(i, W-1) - u(i, 0) over i (..., H)."""
    row_jump = u[..., -1, :] - u[..., 0, :]  # (..., W) v1 on row 0; minus it on row H-1
    col_jump = u[..., :, -1] - u[..., :, 0]  # (..., H) v2 on column 0; minus on column W-1
    row_hat = torch.fft.fft(row_jump, dim=-1) if full else torch.fft.rfft(row_jump, dim=-1)
    return row_hat, torch.fft.fft(col_jump, dim=-1)


def spectrum_jumps(spectrum: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`space_jumps` read off a real map's half-plane spectrum (..., H, W//2+1) (rfft2), without
    going back to space: a contraction over each axis (the columns not stored are the conjugates
    of stored ones at -q)."""
    H, cols = spectrum.shape[-2:]
    _, _, to_row, to_col = _moisan_factors(H, width, spectrum.device, spectrum.real.dtype)
    row_hat = (spectrum * to_row[:, None]).sum(-2)  # (..., cols)
    weighted = spectrum * to_col[:cols]  # (..., H, cols)
    stored = weighted.sum(-1)  # (..., H) the columns 0 .. W//2
    mirror = weighted[..., 1 : (width - 1) // 2 + 1].sum(-1)  # (..., H) those with a mirror
    col_hat = stored + mirror.conj().roll(-1, -1).flip(-1)  # + conj(mirror(-q))
    return row_hat, col_hat


def smooth_from_jumps(row_hat: torch.Tensor, col_hat: torch.Tensor, width: int) -> torch.Tensor:
    """Moisan's smooth component's FFT (..., H, cols) from the jump FFTs row_hat (..., cols) and
    col_hat (..., H); cols = W//2+1 (half-plane) or W (full plane)."""
    H, cols = col_hat.shape[-1], row_hat.shape[-1]
    row, col, _, _ = _moisan_factors(H, width, row_hat.device, row_hat.real.dtype)
    return row_hat[..., None, :] * row[:, :cols] + col_hat[..., :, None] * col[:, :cols]


def smooth_component_fft(u: torch.Tensor) -> torch.Tensor:
    """Moisan's smooth component s of real maps u (..., H, W), returned as its 2D FFT (complex,
    torch.fft order, full plane; s^(0, 0) = 0). The periodic component's FFT is fft2(u) - this."""
    return smooth_from_jumps(*space_jumps(u, full=True), u.shape[-1])


def periodic_smooth(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial (p, s) of Moisan's decomposition of real maps (..., H, W); u = p + s."""
    s = torch.fft.ifft2(smooth_component_fft(u)).real
    return u - s, s
