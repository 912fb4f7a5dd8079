"""Analytic cost of one HiLo layer: parameters and multiply-accumulates per operation.

Pure Python, no torch. The one home of HiLo's cost formulas (LITV2_FACTS section 4), used for the
whole LITv2 (`hilocli.flops.analytic`), the attention comparison (`hilocli.flops.attention`) and
any model's HiLo layers (`hilocli.flops.model`). MACs per image; FLOPs = 2 x MACs for products.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hilocli.flops.conventions import AUTHORS, Convention, linear_cost
from hilocli.models.config import split_heads
from hilocli.models.geometry import padded_grid


@dataclass(frozen=True)
class CostRow:
    """One kind of operation in one place of the network, summed over identical modules.

    `product_macs` are the matrix/conv products a FLOP counter sees (FLOPs = 2 x product_macs);
    `other_macs` are what the convention adds on top (norms, biases).
    """

    stage: int | None  # 1-based; None for the patch embedding and the head
    component: str  # "patch embedding" | "norms" | "Hi-Fi" | "Lo-Fi" | "MSA" | "ConvFFN" | ...
    part: str  # e.g. "h_qkv", "attention products", "dwconv", "offset conv"
    modules: tuple[str, ...]  # module names in the model (for counted-vs-analytic checks)
    product_macs: int
    other_macs: int = 0
    params: int = 0

    @property
    def macs(self) -> int:
        return self.product_macs + self.other_macs

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["modules"] = list(self.modules)
        d["macs"] = self.macs
        return d


@dataclass(frozen=True)
class HiLoCost:
    """One HiLo layer on an H x W grid (padded to Hp x Wp, multiples of s). MACs per image."""

    dim: int
    num_heads: int
    window_size: int
    alpha: float
    grid: tuple[int, int]
    padded_grid: tuple[int, int]
    hifi_heads: int
    lofi_heads: int
    hifi_rows: tuple[CostRow, ...]  # h_qkv, attention products, h_proj
    lofi_rows: tuple[CostRow, ...]  # l_q, l_kv, attention products, l_proj
    attn_matrix_elements: int  # softmax weights of both branches, per image (all heads)

    @property
    def hifi_macs(self) -> int:
        return sum(r.macs for r in self.hifi_rows)

    @property
    def lofi_macs(self) -> int:
        return sum(r.macs for r in self.lofi_rows)

    @property
    def macs(self) -> int:
        return self.hifi_macs + self.lofi_macs

    @property
    def params(self) -> int:
        return sum(r.params for r in self.hifi_rows + self.lofi_rows)


def check_layer(dim: int, num_heads: int, height: int, width: int) -> None:
    """ValueError unless dim is a positive multiple of the heads and the grid is not empty."""
    if dim <= 0 or num_heads <= 0 or dim % num_heads:
        raise ValueError(f"dim {dim} must be a positive multiple of the {num_heads} heads")
    if height < 1 or width < 1:
        raise ValueError(f"token grid {height}x{width} is empty")


def branch_rows(
    dim: int,
    h_dim: int,
    l_dim: int,
    padded: tuple[int, int],
    s: int,
    qkv_bias: bool = True,
    convention: Convention = AUTHORS,
    prefix: str = "",
    count: int = 1,
    stage: int | None = None,
) -> tuple[list[CostRow], list[CostRow]]:
    """The Hi-Fi and Lo-Fi rows of one HiLo layer whose branches have h_dim and l_dim channels
    (0: no such branch), on the padded Hp x Wp grid with window s: the one home of the formulas
    (LITV2_FACTS section 4), for LITv2 (`hilo_cost`) and any model (`hilocli.flops.model`)."""
    Hp, Wp = padded
    N = Hp * Wp
    M = N // (s * s)  # windows (Hi-Fi) == pooled tokens (Lo-Fi); N for s = 1
    c = count

    def mod(name: str) -> tuple[str, ...]:
        return (f"{prefix}.{name}" if prefix else name,)

    hifi: list[CostRow] = []
    lofi: list[CostRow] = []
    if h_dim > 0:
        p, b, n = linear_cost(N, dim, 3 * h_dim, qkv_bias, convention)
        hifi.append(CostRow(stage, "Hi-Fi", "h_qkv", mod("h_qkv"), c * p, c * b, c * n))
        hifi.append(
            CostRow(
                stage, "Hi-Fi", "attention products", (prefix,), c * M * (s * s) ** 2 * h_dim * 2
            )
        )
        p, b, n = linear_cost(N, h_dim, h_dim, True, convention)
        hifi.append(CostRow(stage, "Hi-Fi", "h_proj", mod("h_proj"), c * p, c * b, c * n))
    if l_dim > 0:
        p, b, n = linear_cost(N, dim, l_dim, qkv_bias, convention)
        lofi.append(CostRow(stage, "Lo-Fi", "l_q", mod("l_q"), c * p, c * b, c * n))
        p, b, n = linear_cost(M, dim, 2 * l_dim, qkv_bias, convention)
        lofi.append(CostRow(stage, "Lo-Fi", "l_kv", mod("l_kv"), c * p, c * b, c * n))
        lofi.append(CostRow(stage, "Lo-Fi", "attention products", (prefix,), c * N * M * l_dim * 2))
        p, b, n = linear_cost(N, l_dim, l_dim, True, convention)
        lofi.append(CostRow(stage, "Lo-Fi", "l_proj", mod("l_proj"), c * p, c * b, c * n))
    return hifi, lofi


def hilo_cost(
    dim: int,
    num_heads: int,
    height: int,
    width: int,
    window_size: int = 2,
    alpha: float = 0.9,
    qkv_bias: bool = True,
    convention: Convention = AUTHORS,
    prefix: str = "",
    count: int = 1,
    stage: int | None = None,
) -> HiLoCost:
    """MACs and params of one HiLo layer on a height x width token grid (summed over `count`).

    Both branches run on the grid zero-padded to multiples of s (what HiLo.pad does), so N = Hp*Wp.
    Hi-Fi: 3*N*C*h_dim + G*(s^2)^2*h_dim*2 + N*h_dim^2 with G = N/s^2 windows.
    Lo-Fi: N*C*l_dim + M*C*2*l_dim + N*M*l_dim*2 + N*l_dim^2, M = N/s^2 pooled tokens (N for s=1).
    """
    check_layer(dim, num_heads, height, width)
    if window_size < 1:
        raise ValueError(f"window size must be >= 1, got {window_size}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    s = window_size
    head_dim = dim // num_heads
    hifi_heads, lofi_heads = split_heads(num_heads, alpha, s)
    h_dim, l_dim = hifi_heads * head_dim, lofi_heads * head_dim
    Hp, Wp = padded_grid((height, width), s)
    hifi, lofi = branch_rows(
        dim, h_dim, l_dim, (Hp, Wp), s, qkv_bias, convention, prefix, count, stage
    )
    N = Hp * Wp
    M = N // (s * s)  # windows (Hi-Fi) == pooled tokens (Lo-Fi); N for s = 1
    attn_elems = M * hifi_heads * (s * s) ** 2 + lofi_heads * N * M
    return HiLoCost(
        dim,
        num_heads,
        s,
        alpha,
        (height, width),
        (Hp, Wp),
        hifi_heads,
        lofi_heads,
        tuple(hifi),
        tuple(lofi),
        attn_elems,
    )
