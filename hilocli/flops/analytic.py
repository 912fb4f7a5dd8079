"""Analytic cost of a whole LITv2 and of one HiLo layer: parameters and multiply-accumulates.

Pure Python, no torch: `hilo flops` prints its tables without importing torch or running a model.
Every count is for ONE image at the token grids the model really runs (`geometry.grid_sizes`), in
MACs (FLOPs = 2 x MACs for products), under a `Convention` (see `hilocli.flops.conventions`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hilocli.flops.conventions import (
    AUTHORS,
    Convention,
    conv_cost,
    get_convention,
    linear_cost,
    norm_cost,
)
from hilocli.models.config import LITv2Config, split_heads
from hilocli.models.geometry import check_input_size, grid_sizes, min_input_size, padded_grid

# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------


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
class StageCost:
    stage: int  # 1-based
    grid: tuple[int, int]  # (H, W) tokens the stage runs at
    attn_grid: tuple[int, int] | None  # padded grid HiLo runs at (multiples of s); None: no attn
    dim: int
    depth: int
    macs_by_component: dict[str, int]
    macs: int
    params: int


@dataclass(frozen=True)
class ModelCost:
    """Analytic cost of a whole LITv2 for one image of height x width pixels."""

    height: int
    width: int
    convention: Convention
    rows: tuple[CostRow, ...]
    stages: tuple[StageCost, ...]
    patch_embed_macs: int
    head_macs: int
    macs: int
    params: int

    @property
    def flops(self) -> int:
        """2 x MACs (the FLOP figure for a multiply-accumulate count)."""
        return 2 * self.macs

    def params_of(self, component: str) -> int:
        return sum(r.params for r in self.rows if r.component == component)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": {"height": self.height, "width": self.width},
            "convention": self.convention.to_dict(),
            "units": "MACs (multiply-accumulates) per image; FLOPs = 2 x MACs",
            "macs": self.macs,
            "flops": self.flops,
            "params": self.params,
            "patch_embed_macs": self.patch_embed_macs,
            "head_macs": self.head_macs,
            "stages": [asdict(s) for s in self.stages],
            "rows": [r.to_dict() for r in self.rows],
        }


# ----------------------------------------------------------------------------------------------
# HiLo (one layer)
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# The whole model
# ----------------------------------------------------------------------------------------------


def _stage_rows(
    cfg: LITv2Config, i: int, grid: tuple[int, int], conv: Convention
) -> tuple[list[CostRow], tuple[int, int] | None]:
    """Rows of stage i (0-based): its blocks, its token merging and its output norm."""
    st = i + 1
    H, W = grid
    C, depth, ws = cfg.stage_dim(i), cfg.depths[i], cfg.local_ws[i]
    hidden = int(C * cfg.mlp_ratio)
    N = H * W
    blk = f"layers.{i}.blocks"
    rows: list[CostRow] = []
    attn_grid = None
    if depth > 0:
        blocks = tuple(f"{blk}.{j}" for j in range(depth))
        norms = ("norm1", "norm2") if ws > 0 else ("norm2",)
        nm, nn_ = norm_cost(N * C, C, conv)
        rows.append(
            CostRow(
                st,
                "norms",
                ", ".join(norms),
                tuple(f"{b}.{n}" for b in blocks for n in norms),
                0,
                depth * len(norms) * nm,
                depth * len(norms) * nn_,
            )
        )
        if ws > 0:
            hc = hilo_cost(
                C,
                cfg.num_heads[i],
                H,
                W,
                ws,
                cfg.alpha,
                cfg.qkv_bias,
                conv,
                prefix=f"{blk}.*.attn",
                count=depth,
                stage=st,
            )
            attn_grid = hc.padded_grid
            for r in hc.hifi_rows + hc.lofi_rows:
                comp = "MSA" if ws == 1 else r.component  # s = 1: plain multi-head attention
                mods = tuple(m.replace("*", str(j)) for j in range(depth) for m in r.modules)
                rows.append(CostRow(st, comp, r.part, mods, r.product_macs, r.other_macs, r.params))
        # ConvFFN: fc1 -> depthwise 3x3 conv (with bias) -> GELU -> fc2
        for part, d_in, d_out in (("fc1", C, hidden), ("fc2", hidden, C)):
            lp, lb, ln = linear_cost(N, d_in, d_out, True, conv)
            rows.append(
                CostRow(
                    st,
                    "ConvFFN",
                    part,
                    tuple(f"{b}.mlp.{part}" for b in blocks),
                    depth * lp,
                    depth * lb,
                    depth * ln,
                )
            )
        dp, db, dn = conv_cost(N, 3, hidden, hidden, hidden, conv.conv_bias)
        rows.append(
            CostRow(
                st,
                "ConvFFN",
                "dwconv",
                tuple(f"{b}.mlp.dwconv.dwconv" for b in blocks),
                depth * dp,
                depth * db,
                depth * dn,
            )
        )
    if i < cfg.num_stages - 1:  # Deformable Token Merging: grid floors to (H//2, W//2), 2x channels
        Ho, Wo = H // 2, W // 2
        dtm = f"layers.{i}.downsample"
        op, ob, on = conv_cost(Ho * Wo, 2, C, 2 * 2 * 2, 1, conv.conv_bias)  # (dy, dx) per tap
        if conv.dtm_offset_channels is not None:  # authors: counted as if 12 channels
            op, ob, _ = conv_cost(Ho * Wo, 2, C, conv.dtm_offset_channels, 1, conv.conv_bias)
        rows.append(
            CostRow(st, "token merging", "offset conv", (f"{dtm}.dconv.conv_offset",), op, ob, on)
        )
        dp, db, dn = conv_cost(Ho * Wo, 2, C, 2 * C, 1, conv.conv_bias)
        rows.append(CostRow(st, "token merging", "deformable conv", (f"{dtm}.dconv",), dp, db, dn))
        bm, bn = norm_cost(Ho * Wo * 2 * C, 2 * C, conv)
        rows.append(CostRow(st, "token merging", "batch norm", (f"{dtm}.norm_layer",), 0, bm, bn))
    if cfg.stage_norms and i > 0:  # OpenMMLab backbones: LayerNorm on stage 2.. outputs
        nm, nn_ = norm_cost(N * C, C, conv)
        rows.append(CostRow(st, "norms", "output norm", (f"norm{i}",), 0, nm, nn_))
    return rows, attn_grid


def model_cost(
    cfg: LITv2Config, height: int, width: int | None = None, convention: Convention | str = AUTHORS
) -> ModelCost:
    """MACs and params of a LITv2 (any config) for one height x width image, per component."""
    conv = get_convention(convention)
    width = height if width is None else width
    check_input_size(height, width, min_input_size(cfg))
    grids = grid_sizes(cfg, height, width)
    S = cfg.num_stages

    # patch embedding: Conv2d(in, D, p, stride p) on the padded image, then LayerNorm(D)
    H0, W0 = grids[0]
    D = cfg.embed_dim
    pm, pb, pn = conv_cost(H0 * W0, cfg.patch_size, cfg.in_chans, D, 1, conv.patch_embed_bias)
    nm, nn_ = norm_cost(H0 * W0 * D, D, conv)
    rows = [
        CostRow(None, "patch embedding", "proj", ("patch_embed.proj",), pm, pb, pn),
        CostRow(None, "patch embedding", "norm", ("patch_embed.norm",), 0, nm, nn_),
    ]

    stages: list[StageCost] = []
    for i, grid in enumerate(grids):
        stage_rows, attn_grid = _stage_rows(cfg, i, grid, conv)
        by_comp: dict[str, int] = {}
        for r in stage_rows:
            by_comp[r.component] = by_comp.get(r.component, 0) + r.macs
        stages.append(
            StageCost(
                i + 1,
                grid,
                attn_grid,
                cfg.stage_dim(i),
                cfg.depths[i],
                by_comp,
                sum(r.macs for r in stage_rows),
                sum(r.params for r in stage_rows),
            )
        )
        rows.extend(stage_rows)

    # head: final LayerNorm -> mean over tokens (not counted) -> Linear(8D, classes)
    F = cfg.stage_dim(S - 1)
    Hl, Wl = grids[-1]
    if cfg.final_norm:
        tokens = (H0 * W0) // 2**S if conv.final_norm_swin_tokens else Hl * Wl
        nm, nn_ = norm_cost(tokens * F, F, conv)
        rows.append(CostRow(None, "head", "norm", ("norm",), 0, nm, nn_))
    if cfg.num_classes > 0:
        lp, lb, ln = linear_cost(1, F, cfg.num_classes, True, conv)
        rows.append(CostRow(None, "head", "head", ("head",), lp, lb, ln))
    return ModelCost(
        height,
        width,
        conv,
        tuple(rows),
        tuple(stages),
        sum(r.macs for r in rows if r.component == "patch embedding"),
        sum(r.macs for r in rows if r.component == "head"),
        sum(r.macs for r in rows),
        sum(r.params for r in rows),
    )
