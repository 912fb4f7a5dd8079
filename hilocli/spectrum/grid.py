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
The fit reads the half-plane spectrum of `torch.fft.rfft2` (a frequency whose column is not
stored is the conjugate of its mirror image, `halfplane.py`), fits every alias at once and
returns G at the alias cells only (`GridFit`); content is written back on the half-plane.

An axis whose length is not a multiple of s has no alias structure in its DFT: a period-s pattern
is not periodic there and overlaps real frequencies (3/7 cycles/token on a 7-token axis is the
nearest to 1/2). Such an axis is not separated (no real frequency is ever labelled grid); the
number of separated axes is reported (`grid_axes`), and with none `grid_fraction` is NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from hilocli.spectrum.halfplane import half_plane


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


@dataclass(frozen=True)
class GridCells:
    """Flat full-plane indices of the base band and of the alias cells of one grid (cached)."""

    axes: int  # separated axes (1 or 2)
    base: torch.Tensor  # (K,) the base band's rectangle; index 0 is DC (not part of the band)
    aliases: torch.Tensor  # (A*K,) the rectangle shifted by each alias k != 0, in that order
    stored: torch.Tensor  # (S,) positions in `aliases` whose frequency is on the half-plane
    stored_at: torch.Tensor  # (S,) their flat half-plane indices


@lru_cache(maxsize=64)
def grid_cells(height: int, width: int, window_size: int | None, device) -> GridCells | None:
    """The cells of the window-grid fit on an H x W grid; None when no axis is separable."""
    sy, sx = separable_axes(height, width, window_size)
    axes = int(sy > 1) + int(sx > 1)
    if axes == 0:
        return None
    rows, cols = base_axis(height, sy, "cpu"), base_axis(width, sx, "cpu")

    def cell(dy: int, dx: int) -> torch.Tensor:
        """Flat indices (ny*nx,) of the base band's rectangle shifted by (dy, dx) bins."""
        return (((rows + dy) % height)[:, None] * width + ((cols + dx) % width)[None, :]).flatten()

    shifts = [(ky, kx) for ky in range(sy) for kx in range(sx) if (ky, kx) != (0, 0)]
    aliases = torch.cat([cell(ky * height // sy, kx * width // sx) for ky, kx in shifts])
    half = half_plane(height, width, "cpu")
    stored = (~half.mirrored[aliases]).nonzero().flatten()
    return GridCells(
        axes=axes,
        base=cell(0, 0).to(device),
        aliases=aliases.to(device),
        stored=stored.to(device),
        stored_at=half.source[aliases[stored]].to(device),
    )


@dataclass
class GridFit:
    """The fitted window-grid part G of a batch of real maps, at the alias cells."""

    cells: GridCells
    alias_values: torch.Tensor  # (..., A*K) the map's spectrum X at the alias cells
    fitted: torch.Tensor  # (..., A*K) G there (zero elsewhere)

    @property
    def axes(self) -> int:
        return self.cells.axes

    @property
    def power(self) -> torch.Tensor:
        """sum |G|^2 over the full plane (...) (not normalised)."""
        return (self.fitted.real.square() + self.fitted.imag.square()).sum(-1)

    def content(self, spectrum: torch.Tensor) -> torch.Tensor:
        """X - G on the half-plane (..., H, W//2+1)."""
        where = self.cells.stored
        kept = (self.alias_values - self.fitted).index_select(-1, where)
        flat = spectrum.flatten(-2).index_copy(-1, self.cells.stored_at, kept)
        return flat.view(spectrum.shape)

    def dense(self, spectrum: torch.Tensor) -> torch.Tensor:
        """G on the half-plane (..., H, W//2+1), zero off the alias cells."""
        flat = torch.zeros_like(spectrum).flatten(-2)
        kept = self.fitted.index_select(-1, self.cells.stored)
        return flat.index_copy(-1, self.cells.stored_at, kept).view(spectrum.shape)


def grid_fit(
    spectrum: torch.Tensor, height: int, width: int, window_size: int | None
) -> GridFit | None:
    """The window-grid part of real maps from their half-plane spectra (..., H, W//2+1)
    (`torch.fft.rfft2`); None when no axis is separable. Content is X - G (`GridFit.content`).
    Works on the base band and the alias cells only: all aliases at once."""
    cells = grid_cells(height, width, window_size, spectrum.device)
    if cells is None:
        return None
    half = half_plane(height, width, spectrum.device)
    base = half.gather(spectrum, cells.base)  # (..., K) X on the base band's rectangle
    base[..., 0] = 0  # DC is not part of the base band (index 0 is always first)
    alias = half.gather(spectrum, cells.aliases)  # (..., A*K) X(f0 + k)
    k = base.shape[-1]
    cells_view = alias.view(*alias.shape[:-1], -1, k)  # (..., A, K)
    energy = (base.real.square() + base.imag.square()).sum(-1, keepdim=True)  # (..., 1)
    cross = (base.conj()[..., None, :] * cells_view).sum(-1)  # (..., A)
    ok = energy > 0
    beta = torch.where(ok, cross / torch.where(ok, energy, 1.0), 0.0)  # (..., A)
    fitted = beta[..., :, None] * base[..., None, :]  # (..., A, K)
    fitted[..., 0] = cells_view[..., 0]  # the exact grid bin k / s itself
    return GridFit(cells=cells, alias_values=alias, fitted=fitted.flatten(-2))
