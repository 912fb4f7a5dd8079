"""Tokens and grids: the one home for laying (B, H*W, C) tokens on their H x W grid.

The model keeps tokens (B, N, C) row-major; convolutions, pooling and BatchNorm take (B, C, H, W).
`grid_view` gives that shape as a channels-last view of the same memory, never a copy.
"""

from __future__ import annotations

import torch

__all__ = ["grid_view"]


def grid_view(tokens: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Row-major tokens (B, H*W, C) as a (B, C, H, W) channels-last view, no copy.

    Every stride is the channels-last one, the batch's too: `tokens.transpose(1, 2).reshape(B, C,
    H, W)` gives the same view but, for a batch of 1, a batch stride of C, which torch's and
    oneDNN's layout checks read as "not channels-last": a convolution then runs in NCHW and
    returns NCHW, and the tokens after it are copied back (the cost: docs/benchmarks.md)."""
    B, N, C = tokens.shape
    assert N == H * W, f"{N} tokens on a {H} x {W} grid"
    return tokens.reshape(B, H, W, C).permute(0, 3, 1, 2)  # (B, C, H, W), channels-last
