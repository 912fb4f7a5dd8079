"""The half-plane of a real map's 2D FFT: `torch.fft.rfft2` keeps columns 0 .. W//2 of the
spectrum (W//2 + 1 of them); the others follow from U(-f) = conj U(f). Everything even in f
(power, |F|, log|F|) is computed on the half-plane and mirrored back (`expand`); sums over the
full plane are half-plane sums with `weights` (a column whose mirror image is not stored counts
twice: columns 1 .. ceil(W/2) - 1)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch


@dataclass(frozen=True)
class HalfPlane:
    height: int
    width: int
    columns: int  # W // 2 + 1
    weights: torch.Tensor  # (columns,) 1 or 2: how many full-plane columns each one stands for
    source: torch.Tensor  # (H*W,) long: flat half-plane index of each full-plane frequency
    mirrored: torch.Tensor  # (H*W,) bool: that frequency is the conjugate of its source

    def expand(self, even: torch.Tensor) -> torch.Tensor:
        """A quantity even in f on the half-plane (..., H, columns) -> full plane (..., H, W)."""
        flat = even.flatten(-2).index_select(-1, self.source)  # (..., H*W)
        return flat.view(*even.shape[:-2], self.height, self.width)

    def gather(self, spectrum: torch.Tensor, flat_index: torch.Tensor) -> torch.Tensor:
        """Values of a real map's spectrum (..., H, columns) at full-plane flat indices (K,)."""
        values = spectrum.flatten(-2).index_select(-1, self.source[flat_index])  # (..., K)
        sign = torch.ones(len(flat_index), 2, device=values.device, dtype=values.real.dtype)
        sign[:, 1] = 1 - 2 * self.mirrored[flat_index].to(sign.dtype)  # conjugate the mirrored
        return torch.view_as_complex(torch.view_as_real(values) * sign)  # (where() is slower)


@lru_cache(maxsize=64)
def half_plane(height: int, width: int, device) -> HalfPlane:
    """The half-plane geometry of an H x W FFT (cached, read-only)."""
    cols = width // 2 + 1
    r = torch.arange(width)
    weights = torch.where((r[:cols] == 0) | (2 * r[:cols] == width), 1, 2)  # (cols,)
    q = torch.arange(height)[:, None]  # (H, 1)
    mirrored = (r >= cols)[None, :].expand(height, width)  # (H, W)
    row = torch.where(mirrored, (-q) % height, q)
    col = torch.where(mirrored, width - r, r)
    return HalfPlane(
        height=height,
        width=width,
        columns=cols,
        weights=weights.to(device),
        source=(row * cols + col).flatten().to(device),
        mirrored=mirrored.flatten().to(device),
    )
