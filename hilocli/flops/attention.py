"""One attention layer four ways on the same token grid: MSA, SRA (PVT), local window (Swin), HiLo.

Pure Python, no torch. Counts are MACs per image under the fvcore convention by default (what the
authors' single-layer benchmark used); memory is that of the softmax weights an explicit
implementation materialises. Also: which layer of a model the comparison uses by default
(`attention_site`) and the comparison against resolution (`sweep`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from hilocli.errors import UsageError
from hilocli.flops.analytic import model_cost
from hilocli.flops.conventions import (
    AUTHORS,
    FVCORE,
    Convention,
    conv_cost,
    get_convention,
    norm_cost,
)
from hilocli.flops.layer import HiLoCost, check_layer, hilo_cost
from hilocli.models.config import LITv2Config
from hilocli.models.geometry import grid_sizes, padded_grid

ATTENTION_TYPES = ("MSA", "SRA", "Window", "HiLo")


@dataclass(frozen=True)
class AttentionCost:
    """One attention layer on an H x W token grid, for one image. Memory of the softmax weights
    (the attention matrices an explicit implementation materialises) for `batch_size` images."""

    name: str  # "MSA" | "SRA" | "Window" | "HiLo"
    label: str  # e.g. "SRA (r=2)"
    dim: int
    num_heads: int
    grid: tuple[int, int]
    padded_grid: tuple[int, int]  # the grid the layer really computes on
    params: int
    product_macs: int
    other_macs: int
    attn_matrix_elements: int  # per image, all heads
    batch_size: int
    bytes_per_element: int
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def macs(self) -> int:
        return self.product_macs + self.other_macs

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def attn_matrix_bytes(self) -> int:
        return self.attn_matrix_elements * self.batch_size * self.bytes_per_element

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(macs=self.macs, flops=self.flops, attn_matrix_bytes=self.attn_matrix_bytes)
        return d


@dataclass(frozen=True)
class LayerMacs:
    """Cost of one attention layer: (product MACs, other MACs, params, attention elements) and the
    grid its keys/values live on (reduced for SRA, padded for window attention)."""

    product_macs: int
    other_macs: int
    params: int
    attn_matrix_elements: int
    grid: tuple[int, int]


def msa_cost(
    dim: int,
    num_heads: int,
    height: int,
    width: int,
    qkv_bias: bool = True,
    convention: Convention = FVCORE,
) -> LayerMacs:
    """Multi-head self-attention over all H*W tokens."""
    N = height * width
    macs = N * dim * 3 * dim + 2 * N * N * dim + N * dim * dim
    other = (N * 3 * dim + N * dim) if convention.linear_bias else 0
    params = dim * 3 * dim + (3 * dim if qkv_bias else 0) + dim * dim + dim
    return LayerMacs(macs, other, params, num_heads * N * N, (height, width))


def sra_cost(
    dim: int,
    num_heads: int,
    height: int,
    width: int,
    sr_ratio: int = 2,
    qkv_bias: bool = True,
    convention: Convention = FVCORE,
) -> LayerMacs:
    """Spatial-reduction attention (PVT): q from every token; keys/values from a Conv2d(C, C, r,
    stride r) + LayerNorm copy of the grid ((H//r) x (W//r): the strided conv floors, no padding).
    `grid` is the reduced grid."""
    if sr_ratio < 1:
        raise ValueError(f"SRA ratio must be >= 1, got {sr_ratio}")
    N = height * width
    Hr, Wr = (height // sr_ratio, width // sr_ratio) if sr_ratio > 1 else (height, width)
    if Hr < 1 or Wr < 1:
        raise UsageError(
            f"a {height}x{width} token grid is too small for the SRA comparison "
            f"(ratio {sr_ratio}); use a larger --resolution or --tokens"
        )
    M = Hr * Wr
    macs = N * dim * dim  # q
    other = 0
    params = dim * dim + (dim if qkv_bias else 0)
    if sr_ratio > 1:
        cp, cb, cn = conv_cost(M, sr_ratio, dim, dim, 1, convention.conv_bias)
        nm, nn_ = norm_cost(M * dim, dim, convention)
        macs += cp
        other += cb + nm
        params += cn + nn_
    macs += M * dim * 2 * dim + 2 * N * M * dim + N * dim * dim  # kv, q k^T and attn v, proj
    params += dim * 2 * dim + (2 * dim if qkv_bias else 0) + dim * dim + dim
    if convention.linear_bias:
        other += N * dim + M * 2 * dim + N * dim
    return LayerMacs(macs, other, params, num_heads * N * M, (Hr, Wr))


def window_cost(
    dim: int,
    num_heads: int,
    height: int,
    width: int,
    window: int = 7,
    qkv_bias: bool = True,
    convention: Convention = FVCORE,
) -> LayerMacs:
    """Local window attention (Swin, no shift): the grid is zero-padded at the bottom/right to
    multiples of the window (as Swin does) and every projection and product runs on the padded
    tokens. Params include Swin's relative-position bias table ((2w-1)^2 x heads); the bias add
    itself is not a MAC. `grid` is the padded grid."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    Hp, Wp = padded_grid((height, width), window)
    Np = Hp * Wp
    w2 = window * window
    macs = Np * dim * 3 * dim + 2 * Np * w2 * dim + Np * dim * dim
    other = (Np * 4 * dim) if convention.linear_bias else 0
    params = (
        dim * 3 * dim
        + (3 * dim if qkv_bias else 0)
        + dim * dim
        + dim
        + (2 * window - 1) ** 2 * num_heads
    )
    return LayerMacs(macs, other, params, (Np // w2) * num_heads * w2 * w2, (Hp, Wp))


def attention_comparison(
    dim: int,
    num_heads: int,
    height: int,
    width: int,
    alpha: float = 0.9,
    window_size: int = 2,
    sr_ratio: int = 2,
    local_window: int = 7,
    batch_size: int = 1,
    bytes_per_element: int = 4,
    qkv_bias: bool = True,
    convention: Convention | str = FVCORE,
) -> list[AttentionCost]:
    """MSA, SRA, local window and HiLo on the same H x W grid (params, MACs per image, memory of
    the attention matrices for `batch_size` images at `bytes_per_element`, 4 = float32)."""
    conv = get_convention(convention)
    check_layer(dim, num_heads, height, width)
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    grid = (height, width)
    layer = dict(
        dim=dim,
        num_heads=num_heads,
        grid=grid,
        batch_size=batch_size,
        bytes_per_element=bytes_per_element,
    )
    msa = msa_cost(dim, num_heads, height, width, qkv_bias, conv)
    sra = sra_cost(dim, num_heads, height, width, sr_ratio, qkv_bias, conv)
    win = window_cost(dim, num_heads, height, width, local_window, qkv_bias, conv)
    hc = hilo_cost(dim, num_heads, height, width, window_size, alpha, qkv_bias, conv)
    red = sra.grid
    return [
        _row(layer, "MSA", "MSA", msa, grid, "global, every token pair"),
        _row(
            layer,
            "SRA",
            f"SRA (r={sr_ratio})",
            sra,
            grid,
            f"keys/values from a {red[0]}x{red[1]} conv-reduced grid + LayerNorm",
            reduced_grid=red,
            sr_ratio=sr_ratio,
        ),
        _row(
            layer,
            "Window",
            f"Window ({local_window}x{local_window})",
            win,
            win.grid,
            "no shift; padded to window multiples; params include the relative-position bias table",
            window=local_window,
        ),
        _hilo_row(layer, hc),
    ]


def _row(
    layer: dict[str, Any],
    name: str,
    label: str,
    cost: LayerMacs,
    grid: tuple[int, int],
    notes: str,
    **extra: Any,
) -> AttentionCost:
    """One row of the comparison; `layer`: dim, heads, grid, batch size and bytes per element."""
    return AttentionCost(
        name,
        label,
        padded_grid=grid,
        params=cost.params,
        product_macs=cost.product_macs,
        other_macs=cost.other_macs,
        attn_matrix_elements=cost.attn_matrix_elements,
        notes=notes,
        extra=extra,
        **layer,
    )


def _hilo_row(layer: dict[str, Any], hc: HiLoCost) -> AttentionCost:
    """HiLo's row: both branches summed, each branch's MACs and heads kept in `extra`."""
    rows = hc.hifi_rows + hc.lofi_rows
    cost = LayerMacs(
        sum(r.product_macs for r in rows),
        sum(r.other_macs for r in rows),
        hc.params,
        hc.attn_matrix_elements,
        hc.padded_grid,
    )
    return _row(
        layer,
        "HiLo",
        f"HiLo (alpha={hc.alpha:g}, s={hc.window_size})",
        cost,
        hc.padded_grid,
        f"{hc.hifi_heads} Hi-Fi + {hc.lofi_heads} Lo-Fi heads",
        hifi_macs=hc.hifi_macs,
        lofi_macs=hc.lofi_macs,
        hifi_heads=hc.hifi_heads,
        lofi_heads=hc.lofi_heads,
        alpha=hc.alpha,
        window_size=hc.window_size,
    )


@dataclass(frozen=True)
class AttentionSite:
    """The feature map the comparison uses by default: the first HiLo stage with a window (s > 1),
    else the first stage with attention."""

    stage: int  # 1-based
    dim: int
    num_heads: int
    grid: tuple[int, int]
    window_size: int


def attention_site(cfg: LITv2Config, height: int, width: int) -> AttentionSite:
    grids = grid_sizes(cfg, height, width)
    attn = [i for i, ws in enumerate(cfg.local_ws) if ws > 0 and cfg.depths[i] > 0]
    windowed = [i for i in attn if cfg.local_ws[i] > 1]
    if not attn:
        raise ValueError("this model has no attention layers")
    i = (windowed or attn)[0]
    return AttentionSite(i + 1, cfg.stage_dim(i), cfg.num_heads[i], grids[i], cfg.local_ws[i])


@dataclass(frozen=True)
class SweepPoint:
    resolution: int
    model_macs: int
    stage: int  # 1-based stage of the attention feature map compared
    grid: tuple[int, int]  # its token grid
    attention: tuple[AttentionCost, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "model_macs": self.model_macs,
            "stage": self.stage,
            "grid": list(self.grid),
            "attention": [a.to_dict() for a in self.attention],
        }


def sweep(
    cfg: LITv2Config,
    resolutions: Iterable[int],
    convention: Convention | str = AUTHORS,
    batch_size: int = 1,
    bytes_per_element: int = 4,
) -> list[SweepPoint]:
    """Model MACs and the attention comparison (fvcore convention) at the default feature map,
    per square resolution."""
    out = []
    for r in resolutions:
        mc = model_cost(cfg, r, r, convention)
        site = attention_site(cfg, r, r)
        att = attention_comparison(
            site.dim,
            site.num_heads,
            *site.grid,
            cfg.alpha,
            site.window_size,
            batch_size=batch_size,
            bytes_per_element=bytes_per_element,
            qkv_bias=cfg.qkv_bias,
        )
        out.append(SweepPoint(r, mc.macs, site.stage, site.grid, tuple(att)))
    return out
