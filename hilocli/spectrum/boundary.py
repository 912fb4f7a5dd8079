"""Boundary handling before an FFT of a non-periodic map: the FFT treats an H x W map as one
period of a periodic image, so the jump between the last and the first row (column) shows up as
spurious high frequency. Three options:

- "smooth" (default): the periodic-plus-smooth decomposition of Moisan (2011), u = p + s. The
  boundary image v holds the jumps across the wrap, v1(0, j) = u(H-1, j) - u(0, j),
  v1(H-1, j) = -v1(0, j), v2(i, 0) = u(i, W-1) - u(i, 0), v2(i, W-1) = -v2(i, 0); the smooth
  component solves the periodic discrete Poisson equation  Lap s = v1 + v2, i.e. in Fourier
  s^(q, r) = v^(q, r) / (2 cos(2 pi q / H) + 2 cos(2 pi r / W) - 4), s^(0, 0) = 0, and
  p = u - s is periodic in Moisan's sense (Lap_periodic p = Lap_interior u). v^ is computed
  from 1D FFTs of the two jump profiles (v is zero off the border).
- "hann": multiply by a separable Hann window sampled at pixel centres (no zero row).
- "none": the plain FFT of the mean-removed map (the authors' picture).
"""

from __future__ import annotations

import math

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


def smooth_component_fft(u: torch.Tensor) -> torch.Tensor:
    """Moisan's smooth component s of real maps u (..., H, W), returned as its 2D FFT (complex,
    torch.fft order; s^(0, 0) = 0). The periodic component's FFT is fft2(u) - this."""
    H, W = u.shape[-2:]
    cdtype = torch.complex128 if u.dtype == torch.float64 else torch.complex64
    q = torch.arange(H, device=u.device, dtype=u.dtype)
    r = torch.arange(W, device=u.device, dtype=u.dtype)
    row_jump = u[..., H - 1, :] - u[..., 0, :]  # (..., W) v1 on row 0; minus it on row H-1
    col_jump = u[..., :, W - 1] - u[..., :, 0]  # (..., H) v2 on column 0; minus on column W-1
    # FFT of a row profile a(j) placed at row 0 and -a(j) at row H-1: a^(r) (1 - e^{2 pi i q/H})
    fy = 1 - torch.exp(2j * math.pi * q / H).to(cdtype)  # (H,)
    fx = 1 - torch.exp(2j * math.pi * r / W).to(cdtype)  # (W,)
    v_hat = torch.fft.fft(row_jump, dim=-1)[..., None, :] * fy[:, None]  # (..., H, W)
    v_hat = v_hat + torch.fft.fft(col_jump, dim=-1)[..., :, None] * fx[None, :]
    denom = 2 * torch.cos(2 * math.pi * q / H)[:, None] + 2 * torch.cos(2 * math.pi * r / W)
    denom = denom - 4  # (H, W), zero only at (0, 0)
    denom[0, 0] = 1.0
    s_hat = v_hat / denom
    s_hat[..., 0, 0] = 0
    return s_hat


def periodic_smooth(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial (p, s) of Moisan's decomposition of real maps (..., H, W); u = p + s."""
    s = torch.fft.ifft2(smooth_component_fft(u)).real
    return u - s, s
