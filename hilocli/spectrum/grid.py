"""Separating the window-grid artifact from content (polyphase alias regression).

Hi-Fi attends inside s x s windows anchored at token (0, 0), so its output may carry a pattern
that depends on the position (i mod s, j mod s) inside the window, possibly multiplied by the
content: g(i, j) = a(i mod s, j mod s) + b(i mod s, j mod s) * m(i, j), m smooth. Written with
the s^2 characters e_k(i, j) = exp(2 pi i (ky i + kx j) / s), the phase-dependent part is
sum_{k != 0} e_k (alpha_k + beta_k m): in the DFT of an axis whose length is a multiple of s it
is the content's base band X(f0) copied to each alias f0 + k/s with ONE complex gain beta_k per
alias and channel, plus the exact grid bin k/s itself (alpha_k). The phase average (k = 0) is
content by definition.

Method, per channel: the base band B = {f : |fy| < 1/(2 s), |fx| < 1/(2 s), f != 0} (strictly
inside the alias cell, so the cells' border frequencies are never fitted); for each alias k != 0,
beta_k = sum_B conj(X(f0)) X(f0 + k) / sum_B |X(f0)|^2 (least squares), the grid spectrum
G(f0 + k) = beta_k X(f0) on B and G(k) = X(k). Content = X - G. Energy at an alias that is not
coherent with the base band (real detail) stays content; only one complex gain per alias and
channel is removed (for white noise about 1/|B| of each alias band: the bias is stated).

An axis whose length is not a multiple of s has no alias structure in its DFT: a period-s pattern
is not periodic there and overlaps real frequencies (3/7 cycles/token on a 7-token axis is the
nearest to 1/2). Such an axis is not separated (no real frequency is ever labelled grid); the
number of separated axes is reported (`grid_axes`), and with none `grid_fraction` is NaN.
"""

from __future__ import annotations

from functools import lru_cache

import torch


def separable_axes(height: int, width: int, window_size: int | None) -> tuple[int, int]:
    """Per axis the period to separate: s where the axis length is a multiple of s (and at least
    2 s, so a base band exists), else 1 (that axis is not separated)."""
    s = window_size or 1
    if s < 2:
        return 1, 1
    sy = s if height % s == 0 and height >= 2 * s else 1
    sx = s if width % s == 0 and width >= 2 * s else 1
    return sy, sx


@lru_cache(maxsize=64)
def base_axis(n: int, s: int, device) -> torch.Tensor:
    """Indices of an axis of length n strictly inside the alias cell |f| < 1/(2 s) (all for s 1).
    Cached (read-only): nonzero() waits for the device, and every batch of every branch asks."""
    f = torch.fft.fftfreq(n, device=device, dtype=torch.float64).abs()  # (n,)
    return torch.arange(n, device=device) if s == 1 else (f < 0.5 / s).nonzero().flatten()


def grid_spectrum(spec: torch.Tensor, window_size: int | None) -> tuple[torch.Tensor, int]:
    """The window-grid part G of complex spectra (..., H, W) (torch.fft order), and the number of
    separated axes. Content is spec - G. Works on the base band's rows x columns only."""
    H, W = spec.shape[-2:]
    sy, sx = separable_axes(H, W, window_size)
    axes = int(sy > 1) + int(sx > 1)
    grid = torch.zeros_like(spec)
    if axes == 0:
        return grid, 0
    rows, cols = base_axis(H, sy, spec.device), base_axis(W, sx, spec.device)
    flat = spec.flatten(-2)  # (..., H*W): gathers and scatters on one axis are fast
    grid_flat = grid.flatten(-2)  # a view: writing into it writes into grid

    def cell(dy: int, dx: int) -> torch.Tensor:
        """Flat indices (ny*nx,) of the base band's rectangle shifted by (dy, dx) bins."""
        return (((rows + dy) % H)[:, None] * W + ((cols + dx) % W)[None, :]).flatten()

    base = flat.index_select(-1, cell(0, 0))  # (..., ny*nx) the base band's rectangle
    base[..., 0] = 0  # DC is not part of the base band (index 0 is always first)
    base_energy = base.real.square().sum(-1) + base.imag.square().sum(-1)  # (...)
    ok = base_energy > 0
    for ky in range(sy):
        for kx in range(sx):
            if ky == 0 and kx == 0:
                continue
            where = cell(ky * H // sy, kx * W // sx)
            alias = flat.index_select(-1, where)  # (..., ny*nx) X(f0 + k)
            cross = (base.conj() * alias).sum(-1)  # (...)
            beta = torch.where(ok, cross / torch.where(ok, base_energy, 1.0), 0.0)
            fitted = beta[..., None] * base  # (..., ny*nx)
            fitted[..., 0] = alias[..., 0]  # the exact grid bin k / s itself
            grid_flat.index_copy_(-1, where, fitted)
    return grid, axes
