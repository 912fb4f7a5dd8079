"""One view of a HiLo layer in any model: `HiLoLayer`.

A HiLoLayer is a module found by structure (`hilocli.hilo.discover`) together with what is known
of it: its identity and head split (`HiLoLayerInfo`), the channels its projections read, its
softmax scale, and (LITv2, from its config) its token stride. It reads the module's input whatever
its forward signature, places branch outputs on the token grid, and recomputes queries, keys and
attention through the module's own projections under either pooling rule (`hilocli.hilo.core`).
Which rule a module follows is learnt from what it really output (`pooling_rule`): a recomputation
that reproduces neither branch output is an error, never analysed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from hilocli.errors import HiloError
from hilocli.hilo.core import (
    POOLING_RULES,
    attend,
    attention_probs,
    lofi_query_grid,
    merge_windows,
    pad_grid,
    pooled_qkv,
    window_qkv,
)
from hilocli.hilo.signature import branch_grid, input_grid
from hilocli.models.geometry import HiLoLayerInfo, LayerGeometry, padded_grid


@dataclass
class Recomputed:
    """Both branches recomputed with explicit softmax; absent branches are None."""

    hifi_out: torch.Tensor | None  # (B, H, W, h_dim)
    lofi_out: torch.Tensor | None  # (B, H, W, l_dim)
    hifi_attn: torch.Tensor | None  # (B, G, h, s*s, s*s)
    lofi_attn: torch.Tensor | None  # (B, h, Nq, M): Nq = Hp*Wp ("pad") or H*W ("floor")


@dataclass(frozen=True, eq=False)
class HiLoLayer:
    info: HiLoLayerInfo  # index (what --layer takes), name, path, stage, window, heads
    module: nn.Module
    channels: int  # C, what the q/k/v projections read
    scale: float  # softmax scale: the module's own `scale`, else head_dim ** -0.5
    stride: int | None = None  # input pixels per token side, where a config says (LITv2)

    @property
    def index(self) -> int:
        return self.info.index

    @property
    def window_size(self) -> int:
        return self.info.window_size

    # -- reading what the module sees and emits ---------------------------------------------
    def read_input(self, args: tuple, kwargs: dict) -> tuple[torch.Tensor, str]:
        """(grid (B, H, W, C), signature label) from the arguments the module was called with."""
        return input_grid(self.info, self.channels, args, kwargs)

    def place_output(self, out: torch.Tensor, batch: int, grid: tuple[int, int], branch: str):
        """A branch projection's output as (B, H, W, d): padding cropped, windows merged."""
        what = f"layer {self.index} ({self.info.path}) {branch}"
        return branch_grid(out, batch, grid, self.window_size, what)

    def geometry(self, grid: tuple[int, int], input_size: tuple[int, int], pooling: str = "pad"):
        """LayerGeometry of the grid (H, W) that ran on a (w, h) px input: the configured stride,
        else input height / grid height, rounded (the grid is what ran)."""
        stride = self.stride or max(1, round(input_size[1] / grid[0]))
        return LayerGeometry(self.info, tuple(grid), stride, tuple(input_size), pooling)

    # -- recomputing through the module's own projections ------------------------------------
    def hifi_qkv(self, grid: torch.Tensor):
        """Grid (B, H, W, C) -> q, k, v each (B, G, h, s*s, d), windows of the padded grid."""
        s, info = self.window_size, self.info
        return window_qkv(self.module.h_qkv, pad_grid(grid, s), s, info.hifi_heads, info.head_dim)

    def lofi_qkv(self, grid: torch.Tensor, pooling: str = "pad"):
        """Grid (B, H, W, C) -> q (B, h, Nq, d), k and v (B, h, M, d) under `pooling`."""
        s, info, m = self.window_size, self.info, self.module
        x = lofi_query_grid(grid, s, pooling)  # (B, Hq, Wq, C)
        return pooled_qkv(m.l_q, m.l_kv, x, s, info.lofi_heads, info.head_dim)

    def recompute(self, grid: torch.Tensor, pooling: str = "pad", keep_attn: bool = True):
        """Both branches from the input grid (B, H, W, C): a `Recomputed`. With keep_attn the
        softmax weights are computed explicitly and kept; without, the outputs come from fused
        attention (SDPA), so no layer's whole attention matrix is built."""
        got = Recomputed(None, None, None, None)
        self._recompute_hifi(grid, keep_attn, got)
        self._recompute_lofi(grid, pooling, keep_attn, got)
        return got

    def _recompute_hifi(self, grid: torch.Tensor, keep_attn: bool, got: Recomputed) -> None:
        """The Hi-Fi output (and weights) into `got`; it does not depend on the pooling rule."""
        B, H, W, _ = grid.shape
        if self.info.hifi_heads:
            s = self.window_size
            q, k, v = self.hifi_qkv(grid)  # each (B, G, h, s*s, d)
            out, got.hifi_attn = self._attend(q, k, v, keep_attn)  # (B, G, h, s*s, d)
            out = merge_windows(out, *padded_grid((H, W), s), s)  # (B, Hp, Wp, h*d)
            got.hifi_out = self.module.h_proj(out)[:, :H, :W]  # (B, H, W, h_dim)

    def _recompute_lofi(self, grid, pooling: str, keep_attn: bool, got: Recomputed) -> None:
        """The Lo-Fi output (and weights) under `pooling` into `got`."""
        B, H, W, _ = grid.shape
        if self.info.lofi_heads:
            q, k, v = self.lofi_qkv(grid, pooling)  # q (B, h, Nq, d), k, v (B, h, M, d)
            out, got.lofi_attn = self._attend(q, k, v, keep_attn)  # (B, h, Nq, d)
            Hq, Wq = padded_grid((H, W), self.window_size) if pooling == "pad" else (H, W)
            out = out.transpose(1, 2).reshape(B, Hq, Wq, -1)  # (B, Hq, Wq, l_dim)
            got.lofi_out = self.module.l_proj(out)[:, :H, :W]  # (B, H, W, l_dim)

    def _attend(self, q, k, v, keep_attn: bool):
        """(attention output, softmax weights or None)."""
        if keep_attn:
            probs = attention_probs(q, k, self.scale)  # (..., Nq, Nk)
            return probs @ v, probs
        return attend(q, k, v, self.scale, explicit=False), None

    def pooling_rule(self, grid, hifi_out, lofi_out, keep_attn: bool = True):
        """(rule, recomputation in float32) for the pooling rule whose recomputation reproduces
        the module's captured branch outputs (within the rounding of their dtype); HiloError
        naming the layer when none does. keep_attn: keep the softmax weights (`recompute`)."""
        captured = [t for t in (hifi_out, lofi_out) if t is not None]
        tol = max(_TOLERANCE.get(t.dtype, 1e-4) for t in captured) if captured else 1e-4
        _, H, W, _ = grid.shape
        s = self.window_size
        # on a grid the window divides, both rules pool the same windows: "pad" names them
        rules = ("pad",) if H % s == 0 and W % s == 0 else POOLING_RULES
        diffs = []
        with torch.autocast(grid.device.type, enabled=False):
            grid = grid.float()
            hifi = Recomputed(None, None, None, None)
            self._recompute_hifi(grid, keep_attn, hifi)  # the same under either rule
            for pooling in rules:
                got = Recomputed(hifi.hifi_out, None, hifi.hifi_attn, None)
                self._recompute_lofi(grid, pooling, keep_attn, got)
                pairs = [(got.hifi_out, hifi_out), (got.lofi_out, lofi_out)]
                diff = [_max_diff(a, b) for a, b in pairs]
                if all(d <= tol * max(1.0, _max_abs(b)) for d, (_, b) in zip(diff, pairs)):
                    return pooling, got
                diffs.append(max(diff))
        raise HiloError(
            f"layer {self.index} ({self.info.path}): attention recomputed through its own "
            f"projections does not reproduce its branch outputs (max |diff| {min(diffs):.3g}); "
            "its maths differ from HiLo's (see docs/any-model.md)"
        )


# relative tolerance of a recomputation against outputs captured in a dtype (autocast forwards)
_TOLERANCE = {torch.float16: 5e-3, torch.bfloat16: 4e-2}


def _max_diff(a: torch.Tensor | None, b: torch.Tensor | None) -> float:
    if a is None or b is None:
        return 0.0 if a is None and b is None else float("inf")
    return float((a - b.float()).abs().max()) if a.shape == b.shape else float("inf")


def _max_abs(t: torch.Tensor | None) -> float:
    return 0.0 if t is None or t.numel() == 0 else float(t.float().abs().max())
