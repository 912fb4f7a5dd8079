"""CPU inference kernels: float32 linear layers and the ConvFFN's depthwise conv + GELU through
oneDNN, the library torch already ships and uses for its convolutions and bfloat16 matmuls.

Why: torch's float32 `F.linear` on the CPU goes to MKL's sgemm. On the AMD EPYC (Zen 4) this
project was measured on, oneDNN's GEMM ran 7-30% faster on every LITv2 shape (10% at 2048^3),
and the GELU applied inside the depthwise conv, while its output is in cache, costs less than a
separate pass (about 0.8 ms of 8.4 per LITv2-S stage-1 block, batch 8). Together: the LITv2-S
CPU forward 1.07-1.13x faster in the same process (docs/benchmarks.md). The results are the same
products and sums in another order: equal within float rounding (tests/test_onednn.py compares
both paths with each other and with float64; the authors' fixture stays green).

Where: CPU tensors, float32, no autograd (these ops have no backward), no CPU autocast (they
would bypass its casts), not under torch.compile (inductor chooses and fuses its own kernels),
torch built with oneDNN and the ops present. Anywhere else, and on the meta device the FLOP
counter uses, the plain torch ops run. `disabled()` turns them off while torch's own oneDNN
convolutions stay on (`benchmarks/forward.py --torch-kernels` times the model both ways);
`torch.backends.mkldnn.flags(enabled=False)` turns them off together with torch's oneDNN paths.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Linear", "applies", "conv2d_gelu", "disabled", "in_use", "linear"]

_enabled = True


@contextmanager
def disabled() -> Iterator[None]:
    """Within: torch's plain ops everywhere (for comparisons), restored on exit."""
    global _enabled
    before, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = before


def applies(x: torch.Tensor) -> bool:
    """Do the oneDNN kernels take this input here and now?"""
    return (
        _enabled
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and torch.backends.mkldnn.enabled
        and not torch.compiler.is_compiling()  # inductor picks and fuses its own kernels
        and _ops_present()
    )


@functools.cache
def _ops_present() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def in_use() -> str:
    """For the environment record: what float32 CPU inference runs on here."""
    if _enabled and torch.backends.mkldnn.enabled and _ops_present():
        return "oneDNN: float32 linear layers, depthwise conv + GELU fused (CPU inference)"
    return "torch defaults"


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight.T + bias, (..., in) -> (..., out): oneDNN GEMM where `applies`, else F.linear."""
    if applies(x):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def conv2d_gelu(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """GELU(conv(x)), the exact (erf) GELU: one oneDNN convolution with a GELU post-op where
    `applies` (the activation is applied while the output is in cache), else the two ops."""
    if applies(x) and conv.padding_mode == "zeros" and not isinstance(conv.padding, str):
        return torch.ops.mkldnn._convolution_pointwise(
            x,
            conv.weight,
            conv.bias,
            list(conv.padding),
            list(conv.stride),
            list(conv.dilation),
            conv.groups,
            "gelu",
            [],
            "none",
        )
    return F.gelu(conv(x))


class Linear(nn.Linear):
    """nn.Linear (same parameters, same state-dict names) whose forward is `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
