"""CPU inference kernels: float32 linear layers and the ConvFFN's depthwise conv + GELU through
oneDNN, the library torch already ships and uses for its convolutions and bfloat16 matmuls.

Why: torch's float32 `F.linear` on the CPU goes to MKL's sgemm. On the AMD EPYC (Zen 4) this
project was measured on, oneDNN's GEMM ran 7-30% faster on every LITv2 shape (10% at 2048^3),
and the GELU applied inside the depthwise conv, while its output is in cache, costs less than a
separate pass (about 0.8 ms of 8.4 per LITv2-S stage-1 block, batch 8). Together: the LITv2-S
CPU forward 1.07-1.13x faster in the same process (docs/benchmarks.md). The results are the same
products and sums in another order: equal within float rounding (tests/test_onednn.py compares
both paths with each other and with float64; the authors' fixture stays green).

In the models hilo loads for its commands (`keep_weights_packed`), a layer's weight is
reordered into oneDNN's blocked layout once and kept (`packed_weight`), not on every call:
1.04-1.09x more on the LITv2-S forward, for one more copy of the linear weights in memory
(99 MiB for LITv2-S; docs/benchmarks.md). Under CPU autocast to bfloat16 such a layer does what
autocast does for a linear layer (input, weight and bias cast to bfloat16, a bfloat16 GEMM, a
bfloat16 output: the same bits, tests/test_onednn.py) with its bfloat16 weight packed once.

Where: CPU tensors, float32 (or CPU autocast to bfloat16, linear layers only), no autograd (these
ops have no backward), not under torch.compile (inductor chooses and fuses its own kernels),
torch built with oneDNN and the ops present. Anywhere else, and on the meta device the FLOP
counter uses, the plain torch ops run. `disabled()` turns them off while torch's own oneDNN
convolutions stay on (`benchmarks/forward.py --torch-kernels` times the model both ways);
`torch.backends.mkldnn.flags(enabled=False)` turns them off together with torch's oneDNN paths.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "Linear",
    "applies",
    "applies_autocast_bf16",
    "conv2d_gelu",
    "disabled",
    "in_use",
    "keep_weights_packed",
    "linear",
    "packed_weight",
    "unpacked",
]

_switches = {"kernels": True, "packing": True}  # `disabled()`, `unpacked()`
# (id(weight), dtype) -> (weakref to the weight, (data_ptr, version, shape), the storage packed,
# the weight in that dtype and oneDNN's layout). An entry goes when its weight does (tensors
# compare elementwise, so no WeakKeyDictionary). It holds the storage it packed, so no other
# tensor can take that address while the entry lives: after `weight.data = other` (which keeps
# the version counter) an equal data pointer means the same memory.
_Pack = tuple[weakref.ref, tuple, torch.UntypedStorage, torch.Tensor]
_packs: dict[tuple[int, torch.dtype], _Pack] = {}


@contextlib.contextmanager
def _switched_off(switch: str) -> Iterator[None]:
    before, _switches[switch] = _switches[switch], False
    try:
        yield
    finally:
        _switches[switch] = before


def disabled() -> contextlib.AbstractContextManager[None]:
    """Within: torch's plain ops everywhere (for comparisons), restored on exit."""
    return _switched_off("kernels")


def keep_weights_packed(module: nn.Module) -> nn.Module:
    """`module` with every `Linear` in it keeping its weight packed (`packed_weight`); returned.

    For models whose weights their owner does not change behind the version counter: the models
    hilo loads for its commands (`WeightsRequest.load`, the control's random twins, the
    benchmarks). A pack follows any change made through the weight itself (in place,
    `load_state_dict`, `weight.data = ...`), but not one made in place through `weight.data`
    (`weight.data.mul_(2)` moves no version counter), so a model built or loaded through the
    Python API (`create_model`, `load_model`) re-reads its weights on every call unless asked."""
    for layer in module.modules():
        if isinstance(layer, Linear):
            layer.keep_packed = True
    return module


def unpacked() -> contextlib.AbstractContextManager[None]:
    """Within: oneDNN's float32 GEMM given the plain weights, reordered on every call, and
    under bfloat16 autocast torch's own F.linear, as before `packed_weight` (for comparisons);
    restored on exit."""
    return _switched_off("packing")


def applies(x: torch.Tensor) -> bool:
    """Do the float32 oneDNN kernels take this input here and now?"""
    return (
        x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")  # they would bypass its casts
        and _usable(x)
    )


def applies_autocast_bf16(x: torch.Tensor) -> bool:
    """Does a linear layer run autocast's bfloat16 GEMM itself (packed weight) here and now?"""
    return (
        x.dtype in (torch.float32, torch.bfloat16)  # what autocast casts (not float64)
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and _usable(x)
        and _bf16_present()
    )


def _usable(x: torch.Tensor) -> bool:
    return (
        _switches["kernels"]
        and x.device.type == "cpu"
        and not torch.is_grad_enabled()
        and torch.backends.mkldnn.enabled
        and not torch.compiler.is_compiling()  # inductor picks and fuses its own kernels
        and _ops_present()
    )


@functools.cache
def _bf16_present() -> bool:
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return check is not None and bool(check())


@functools.cache
def _ops_present() -> bool:
    return torch.backends.mkldnn.is_available() and all(
        hasattr(torch.ops.mkldnn, op) for op in ("_linear_pointwise", "_reorder_linear_weight")
    )


def in_use() -> str:
    """For the environment record: what CPU inference (float32, bfloat16 autocast) runs on."""
    if _switches["kernels"] and torch.backends.mkldnn.enabled and _ops_present():
        packed = _switches["packing"]
        weights = "loaded models keep weights packed" if packed else "weights reordered per call"
        return (
            f"oneDNN: float32 and autocast-bfloat16 linear layers ({weights}), depthwise conv +"
            " GELU fused (CPU)"
        )
    return "torch defaults"


def packed_weight(weight: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A (out, in) weight, cast to `dtype` if given, in oneDNN's blocked GEMM layout, packed
    once and kept while the weight lives and is unchanged; given a plain weight the GEMM repacks
    it on every call (4-8% of the LITv2-S float32 forward, docs/benchmarks.md). A change in place
    (`copy_`, `load_state_dict`) moves the weight's version counter and a new tensor
    (`weight.data = ...`) its data pointer: either repacks. Inference tensors (no version
    counter) and non-contiguous weights are not kept: returned as they are (cast to `dtype`)."""
    dtype = dtype or weight.dtype
    if weight.is_inference() or not weight.is_contiguous():
        return weight.to(dtype)
    ident = (id(weight), dtype)
    key = (weight.data_ptr(), weight._version, weight.shape)
    kept = _packs.get(ident)
    if kept is None or kept[0]() is not weight or kept[1] != key:
        alive = weakref.ref(weight, lambda _, ident=ident: _packs.pop(ident, None))
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().to(dtype))
        kept = _packs[ident] = (alive, key, weight.untyped_storage(), packed)
    return kept[3]


def linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, keep_packed: bool = False
) -> torch.Tensor:
    """x @ weight.T + bias, (..., in) -> (..., out): oneDNN's float32 GEMM where `applies`; with
    `keep_packed` (a long-lived weight, kept packed: `packed_weight`) also under bfloat16 autocast
    where `applies_autocast_bf16`, autocast's bfloat16 GEMM; else F.linear."""
    if applies(x):
        w = packed_weight(weight) if keep_packed and _switches["packing"] else weight
        return torch.ops.mkldnn._linear_pointwise(x, w, bias, "none", [], "")
    if (
        keep_packed
        and _switches["packing"]
        and weight.dtype in (torch.float32, torch.bfloat16)  # autocast leaves float64 alone
        and applies_autocast_bf16(x)
    ):
        bf16 = torch.bfloat16  # autocast's casts for a linear layer, then its bfloat16 GEMM
        b = None if bias is None else bias.to(bf16)
        w = packed_weight(weight, bf16)
        return torch.ops.mkldnn._linear_pointwise(x.to(bf16), w, b, "none", [], "")
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
    """nn.Linear (same parameters, same state-dict names) whose forward is `linear`; with
    `keep_packed` (`keep_weights_packed`) its weight is kept packed for oneDNN (one more copy of
    the weight in memory, on the CPU)."""

    keep_packed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias, keep_packed=self.keep_packed)
