"""Analytic cost of a whole LITv2: parameters and multiply-accumulates per component.

Pure Python, no torch: `hilo flops` prints its tables without importing torch or running a model.
Every count is for ONE image at the token grids the model really runs (`geometry.grid_sizes`), in
MACs (FLOPs = 2 x MACs for products), under a `Convention` (see `hilocli.flops.conventions`). The
HiLo layers' rows come from `hilocli.flops.layer`.
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
from hilocli.flops.layer import CostRow, hilo_cost
from hilocli.models.config import LITv2Config
from hilocli.models.geometry import check_input_size, grid_sizes, min_input_size


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


def _stage_rows(
    cfg: LITv2Config, i: int, grid: tuple[int, int], conv: Convention
) -> tuple[list[CostRow], tuple[int, int] | None]:
    """Rows of stage i (0-based): its blocks, its token merging and its output norm; and the
    padded grid its attention runs at (None: no attention)."""
    rows: list[CostRow] = []
    attn_grid = None
    if cfg.depths[i] > 0:
        rows, attn_grid = _block_rows(cfg, i, grid, conv)
    if i < cfg.num_stages - 1:
        rows += _merging_rows(cfg, i, grid, conv)
    if cfg.stage_norms and i > 0:  # OpenMMLab backbones: LayerNorm on stage 2.. outputs
        C = cfg.stage_dim(i)
        nm, nn_ = norm_cost(grid[0] * grid[1] * C, C, conv)
        rows.append(CostRow(i + 1, "norms", "output norm", (f"norm{i}",), 0, nm, nn_))
    return rows, attn_grid


def _block_rows(
    cfg: LITv2Config, i: int, grid: tuple[int, int], conv: Convention
) -> tuple[list[CostRow], tuple[int, int] | None]:
    """The blocks of stage i, summed over its depth: norms, attention (if any), ConvFFN."""
    st, C, depth, ws = i + 1, cfg.stage_dim(i), cfg.depths[i], cfg.local_ws[i]
    N = grid[0] * grid[1]
    blocks = tuple(f"layers.{i}.blocks.{j}" for j in range(depth))
    norms = ("norm1", "norm2") if ws > 0 else ("norm2",)
    nm, nn_ = norm_cost(N * C, C, conv)
    rows = [
        CostRow(
            st,
            "norms",
            ", ".join(norms),
            tuple(f"{b}.{n}" for b in blocks for n in norms),
            0,
            depth * len(norms) * nm,
            depth * len(norms) * nn_,
        )
    ]
    attn_grid = None
    if ws > 0:
        attn_rows, attn_grid = _attention_rows(cfg, i, grid, conv)
        rows += attn_rows
    return rows + _convffn_rows(cfg, i, N, blocks, conv), attn_grid


def _attention_rows(
    cfg: LITv2Config, i: int, grid: tuple[int, int], conv: Convention
) -> tuple[list[CostRow], tuple[int, int]]:
    """The HiLo layers of stage i (plain multi-head attention for s = 1), one row per operation
    with the module names of every block; and the padded grid they run at."""
    st, depth, ws = i + 1, cfg.depths[i], cfg.local_ws[i]
    hc = hilo_cost(
        cfg.stage_dim(i),
        cfg.num_heads[i],
        *grid,
        ws,
        cfg.alpha,
        cfg.qkv_bias,
        conv,
        prefix=f"layers.{i}.blocks.*.attn",
        count=depth,
        stage=st,
    )
    rows = []
    for r in hc.hifi_rows + hc.lofi_rows:
        comp = "MSA" if ws == 1 else r.component  # s = 1: plain multi-head attention
        mods = tuple(m.replace("*", str(j)) for j in range(depth) for m in r.modules)
        rows.append(CostRow(st, comp, r.part, mods, r.product_macs, r.other_macs, r.params))
    return rows, hc.padded_grid


def _convffn_rows(
    cfg: LITv2Config, i: int, N: int, blocks: tuple[str, ...], conv: Convention
) -> list[CostRow]:
    """ConvFFN of the blocks of stage i on N tokens: fc1 -> depthwise 3x3 conv (with bias) ->
    GELU -> fc2."""
    st, C, depth = i + 1, cfg.stage_dim(i), cfg.depths[i]
    hidden = int(C * cfg.mlp_ratio)
    rows = []
    for part, d_in, d_out in (("fc1", C, hidden), ("fc2", hidden, C)):
        lp, lb, ln = linear_cost(N, d_in, d_out, True, conv)
        mods = tuple(f"{b}.mlp.{part}" for b in blocks)
        rows.append(CostRow(st, "ConvFFN", part, mods, depth * lp, depth * lb, depth * ln))
    dp, db, dn = conv_cost(N, 3, hidden, hidden, hidden, conv.conv_bias)
    mods = tuple(f"{b}.mlp.dwconv.dwconv" for b in blocks)
    rows.append(CostRow(st, "ConvFFN", "dwconv", mods, depth * dp, depth * db, depth * dn))
    return rows


def _merging_rows(
    cfg: LITv2Config, i: int, grid: tuple[int, int], conv: Convention
) -> list[CostRow]:
    """Deformable Token Merging after stage i: the grid floors to (H//2, W//2), 2x channels."""
    st, C = i + 1, cfg.stage_dim(i)
    Ho, Wo = grid[0] // 2, grid[1] // 2
    dtm = f"layers.{i}.downsample"
    op, ob, on = conv_cost(Ho * Wo, 2, C, 2 * 2 * 2, 1, conv.conv_bias)  # (dy, dx) per tap
    if conv.dtm_offset_channels is not None:  # authors: counted as if 12 channels
        op, ob, _ = conv_cost(Ho * Wo, 2, C, conv.dtm_offset_channels, 1, conv.conv_bias)
    dp, db, dn = conv_cost(Ho * Wo, 2, C, 2 * C, 1, conv.conv_bias)
    bm, bn = norm_cost(Ho * Wo * 2 * C, 2 * C, conv)
    return [
        CostRow(st, "token merging", "offset conv", (f"{dtm}.dconv.conv_offset",), op, ob, on),
        CostRow(st, "token merging", "deformable conv", (f"{dtm}.dconv",), dp, db, dn),
        CostRow(st, "token merging", "batch norm", (f"{dtm}.norm_layer",), 0, bm, bn),
    ]


def _patch_embed_rows(cfg: LITv2Config, grid: tuple[int, int], conv: Convention) -> list[CostRow]:
    """Conv2d(in, D, p, stride p) on the padded image onto the first grid, then LayerNorm(D)."""
    N, D = grid[0] * grid[1], cfg.embed_dim
    pm, pb, pn = conv_cost(N, cfg.patch_size, cfg.in_chans, D, 1, conv.patch_embed_bias)
    nm, nn_ = norm_cost(N * D, D, conv)
    return [
        CostRow(None, "patch embedding", "proj", ("patch_embed.proj",), pm, pb, pn),
        CostRow(None, "patch embedding", "norm", ("patch_embed.norm",), 0, nm, nn_),
    ]


def _head_rows(cfg: LITv2Config, grids: list[tuple[int, int]], conv: Convention) -> list[CostRow]:
    """Final LayerNorm -> mean over tokens (not counted) -> Linear(8D, classes)."""
    S = cfg.num_stages
    F = cfg.stage_dim(S - 1)
    (H0, W0), (Hl, Wl) = grids[0], grids[-1]
    rows = []
    if cfg.final_norm:
        tokens = (H0 * W0) // 2**S if conv.final_norm_swin_tokens else Hl * Wl
        nm, nn_ = norm_cost(tokens * F, F, conv)
        rows.append(CostRow(None, "head", "norm", ("norm",), 0, nm, nn_))
    if cfg.num_classes > 0:
        lp, lb, ln = linear_cost(1, F, cfg.num_classes, True, conv)
        rows.append(CostRow(None, "head", "head", ("head",), lp, lb, ln))
    return rows


def _stage_cost(
    cfg: LITv2Config,
    i: int,
    grid: tuple[int, int],
    attn_grid: tuple[int, int] | None,
    rows: list[CostRow],
) -> StageCost:
    by_comp: dict[str, int] = {}
    for r in rows:
        by_comp[r.component] = by_comp.get(r.component, 0) + r.macs
    return StageCost(
        i + 1,
        grid,
        attn_grid,
        cfg.stage_dim(i),
        cfg.depths[i],
        by_comp,
        sum(r.macs for r in rows),
        sum(r.params for r in rows),
    )


def model_cost(
    cfg: LITv2Config, height: int, width: int | None = None, convention: Convention | str = AUTHORS
) -> ModelCost:
    """MACs and params of a LITv2 (any config) for one height x width image, per component."""
    conv = get_convention(convention)
    width = height if width is None else width
    check_input_size(height, width, min_input_size(cfg))
    grids = grid_sizes(cfg, height, width)
    rows = _patch_embed_rows(cfg, grids[0], conv)
    stages: list[StageCost] = []
    for i, grid in enumerate(grids):
        stage_rows, attn_grid = _stage_rows(cfg, i, grid, conv)
        stages.append(_stage_cost(cfg, i, grid, attn_grid, stage_rows))
        rows.extend(stage_rows)
    rows += _head_rows(cfg, grids, conv)
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
