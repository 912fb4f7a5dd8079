"""Deformable Token Merging's convolution (DCNv1) in plain PyTorch: no compiled extension, no
torchvision. The token-layout kernel `deform_conv2d_tokens` is what the model runs; the NCHW
`deform_conv2d` wrapper is the reference-shaped API the tests compare with an independent DCN.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from hilocli.models.layout import grid_view

__all__ = ["DeformConv2d", "DeformTokenMerge", "deform_conv2d", "deform_conv2d_tokens"]

# ----------------------------------------------------------------------------------------------
# Deformable convolution (DCNv1) in plain PyTorch
# ----------------------------------------------------------------------------------------------


def _corner_table(
    y: torch.Tensor, xs: torch.Tensor, H: int, W: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear corners of float positions y, xs (any shape S) on an H x W map, DCNv1 rules.

    Returns row indices into the flattened map (S, 4) and their weights (S, 4); corners that
    fall outside the map (or points with y <= -1, y >= H, x <= -1, x >= W) get weight 0.
    """
    y0, x0 = torch.floor(y), torch.floor(xs)
    ly, lx = y - y0, xs - x0  # fractional parts
    hy, hx = 1.0 - ly, 1.0 - lx
    live = (y > -1) & (y < H) & (xs > -1) & (xs < W)
    y0l, x0l = y0.long(), x0.long()
    rows, weights = [], []
    for dy, dx, wgt in ((0, 0, hy * hx), (0, 1, hy * lx), (1, 0, ly * hx), (1, 1, ly * lx)):
        yy, xx = y0l + dy, x0l + dx
        inside = live & (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
        rows.append(yy.clamp(0, H - 1) * W + xx.clamp(0, W - 1))
        weights.append(torch.where(inside, wgt, torch.zeros_like(wgt)))
    return torch.stack(rows, -1), torch.stack(weights, -1)  # (S, 4) each


def deform_conv2d_tokens(
    x: torch.Tensor,
    H: int,
    W: int,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
) -> torch.Tensor:
    """DCNv1 on tokens: x (B, H*W, C) row-major grid -> (B, Ho*Wo, Cout), no layout change.

    Each sample is a weighted sum of 4 rows of the (B*H*W, C) token table: one fused
    `embedding_bag` (gather + weighted sum) per call, then one matmul with the kernel.
    offset: (B, 2*kh*kw, Ho, Wo) as (dy, dx) pairs per kernel position, row-major.
    """
    B, N, C = x.shape
    c_out, c_in, kh, kw = weight.shape
    assert c_in == C and N == H * W, "weight, input channels and grid differ"
    Ho = (H + 2 * padding - kh) // stride + 1
    Wo = (W + 2 * padding - kw) // stride + 1
    K = kh * kw
    assert offset.shape == (B, 2 * K, Ho, Wo), f"offset shape {tuple(offset.shape)}"
    off = offset.reshape(B, K, 2, Ho, Wo).permute(0, 3, 4, 1, 2)  # (B, Ho, Wo, K, 2)
    ar_y = torch.arange(Ho, device=x.device, dtype=offset.dtype) * stride - padding
    ar_x = torch.arange(Wo, device=x.device, dtype=offset.dtype) * stride - padding
    k_y = torch.arange(kh, device=x.device, dtype=offset.dtype).repeat_interleave(kw)  # (K,)
    k_x = torch.arange(kw, device=x.device, dtype=offset.dtype).repeat(kh)  # (K,)
    ys = ar_y.view(1, Ho, 1, 1) + k_y + off[..., 0]  # (B, Ho, Wo, K)
    xs = ar_x.view(1, 1, Wo, 1) + k_x + off[..., 1]  # (B, Ho, Wo, K)
    rows, wgts = _corner_table(ys, xs, H, W)  # (B, Ho, Wo, K, 4)
    rows = rows + (torch.arange(B, device=x.device) * N).view(B, 1, 1, 1, 1)
    col = F.embedding_bag(
        rows.reshape(-1, 4),
        x.reshape(B * N, C),
        per_sample_weights=wgts.reshape(-1, 4).to(x.dtype),
        mode="sum",
    )  # (B*Ho*Wo*K, C)
    col = col.reshape(B, Ho * Wo, K * C)  # (B, No, K*C), kernel position major
    w = weight.permute(0, 2, 3, 1).reshape(c_out, K * C)  # (Cout, K*C) same order
    return F.linear(col, w, bias)  # (B, No, Cout)


def deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
) -> torch.Tensor:
    """DCNv1 (offsets only, one offset group, dilation 1), the semantics of torchvision's op.

    x: (B, C, H, W); offset: (B, 2*kh*kw, Ho, Wo) as (dy, dx) pairs per kernel position, row-major;
    weight: (Cout, C, kh, kw). Returns (B, Cout, Ho, Wo).
    """
    B, C, H, W = x.shape
    tokens = x.permute(0, 2, 3, 1).reshape(B, H * W, C)  # (B, H*W, C)
    out = deform_conv2d_tokens(tokens, H, W, offset, weight, bias, stride, padding)
    Ho, Wo = offset.shape[-2:]
    return grid_view(out, Ho, Wo)  # (B, Cout, Ho, Wo)


class DeformConv2d(nn.Module):
    """A deformable convolution whose offsets come from a plain conv on the same input."""

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int = 2, stride: int = 2):
        super().__init__()
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(out_chans, in_chans, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_chans))
        self.conv_offset = nn.Conv2d(in_chans, 2 * kernel_size * kernel_size, kernel_size, stride)
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        nn.init.zeros_(self.conv_offset.weight)  # start as a plain strided conv
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: torch.Tensor, H: int | None = None, W: int | None = None) -> torch.Tensor:
        """(B, C, H, W) -> (B, Cout, Ho, Wo); or tokens (B, H*W, C) with H, W given ->
        (B, Ho*Wo, Cout), the same op without NCHW copies."""
        if H is None or W is None:
            offset = self.conv_offset(x)  # (B, 2*k*k, Ho, Wo)
            return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride)
        offset = self.conv_offset(grid_view(x, H, W))  # (B, 2*k*k, Ho, Wo)
        return deform_conv2d_tokens(x, H, W, offset, self.weight, self.bias, stride=self.stride)


class DeformTokenMerge(nn.Module):
    """Deformable Token Merging: halves the grid and doubles the channels."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.dconv = DeformConv2d(dim, out_dim, kernel_size=2, stride=2)
        self.norm_layer = nn.BatchNorm2d(out_dim)
        self.act_layer = nn.GELU()

    def forward(self, x: torch.Tensor, H: int, W: int) -> tuple[torch.Tensor, int, int]:
        Ho, Wo = (H - 2) // 2 + 1, (W - 2) // 2 + 1
        x = self.dconv(x, H, W)  # (B, Ho*Wo, 2C)
        x = self.act_layer(self.norm_layer(grid_view(x, Ho, Wo)))  # (B, 2C, Ho, Wo)
        return x.flatten(2).transpose(1, 2), Ho, Wo  # (B, Ho*Wo, 2C)
