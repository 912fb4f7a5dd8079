"""Analytic cost of LITv2 and HiLo: parameters and multiply-accumulates (MACs), per component.

Pure Python, no torch: `hilo flops` prints its tables without importing torch's kernels or running a
model. Every count is for ONE image (batch 1) at the token grids the model really runs (see
`grid_sizes`), in MACs; FLOPs = 2 x MACs for products.

The authors' convention (worked out from their released `flops()` methods and checked to the digit
against all 11 published model counts and the single-layer figures; see docs/flops.md):

COUNTED (one MAC each)
  * linear layer: in * out per token; its bias is NOT counted;
  * convolution: k*k * in/groups * out per output position; its bias adds one MAC per output element
    for the depthwise conv of the ConvFFN and both DTM convs, but NOT for the patch embedding;
  * LayerNorm and BatchNorm: one MAC per element;
  * attention products: q @ k^T and attn @ v, one MAC per multiply-add.
NOT COUNTED
  softmax, the attention scale, average pooling (Lo-Fi keys/values), GELU, residual adds, zero
  padding, the mean over tokens before the head, and the bilinear sampling of the deformable conv
  (the DTM's deformable conv is counted as if it were a plain 2x2 stride-2 conv).
AUTHORS' QUIRKS (reproduced by `AUTHORS`, fixed by `AS_RUN`)
  * the DTM offset conv is counted with 12 output channels (3*k*k, as for a modulated DCNv2); the
    model runs 2*k*k = 8;
  * the final LayerNorm is counted on (H0*W0) // 2**num_stages tokens (H0 x W0 = patch grid), i.e.
    4x the tokens stage 4 really has (a formula inherited from Swin).
The authors' single-layer benchmark used fvcore instead (`FVCORE`): the same products, but a
LayerNorm with affine weights costs 5 MACs per element and no bias is counted. It matters only for
the SRA baseline's LayerNorm.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from hilocli.models.config import (  # noqa: F401 (re-exported)
    LITv2Config,
    grid_sizes,
    min_input_size,
    split_heads,
)

# ----------------------------------------------------------------------------------------------
# Conventions
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Convention:
    """Which operations cost how many MACs. Products are always counted in full."""

    name: str
    description: str
    norm_macs_per_element: int = 1  # LayerNorm / BatchNorm
    conv_bias: bool = True  # ConvFFN depthwise conv, DTM convs, SRA's reduction conv
    patch_embed_bias: bool = False
    linear_bias: bool = False
    dtm_offset_channels: int | None = None  # None: what the model runs (2 * k * k)
    final_norm_swin_tokens: bool = False  # final norm on (H0*W0) // 2**stages tokens

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


AUTHORS = Convention(
    "authors",
    "the authors' flops() methods (reproduce the published MACs): norms 1 MAC/element, conv bias "
    "1 MAC/output except the patch embedding, no linear bias; DTM offset conv as 12 channels, final "
    "norm on 4x stage-4 tokens",
    dtm_offset_channels=12,
    final_norm_swin_tokens=True,
)
AS_RUN = Convention(
    "as-run",
    "the authors' per-operation rules applied to what the model runs: DTM offset conv with its 8 "
    "channels, final norm on the real stage-4 tokens, every conv bias counted",
    patch_embed_bias=True,
)
FVCORE = Convention(
    "fvcore",
    "fvcore (the authors' single-layer benchmark): LayerNorm 5 MACs/element (affine), no bias",
    norm_macs_per_element=5,
    conv_bias=False,
)
CONVENTIONS: dict[str, Convention] = {c.name: c for c in (AUTHORS, AS_RUN, FVCORE)}


def get_convention(name: str | Convention) -> Convention:
    if isinstance(name, Convention):
        return name
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise ValueError(f"unknown cost convention {name!r}; known: {', '.join(CONVENTIONS)}") from None


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostRow:
    """One kind of operation in one place of the network, summed over `count` identical modules.

    `product_macs` are the matrix/conv products a FLOP counter sees (FLOPs = 2 x product_macs);
    `other_macs` are what the convention adds on top (norms, biases).
    """

    stage: int | None  # 1-based; None for the patch embedding and the head
    component: str  # "patch embedding" | "norms" | "Hi-Fi" | "Lo-Fi" | "MSA" | "ConvFFN" | "token merging" | "head"
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
    attn_grid: tuple[int, int] | None  # padded grid HiLo runs at (multiples of s), None: no attention
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

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    def macs_of(self, component: str, stage: int | None = None) -> int:
        return sum(r.macs for r in self.rows
                   if r.component == component and (stage is None or r.stage == stage))

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
# Geometry (split_heads, grid_sizes, min_input_size: the model's own, from hilocli.models.config)
# ----------------------------------------------------------------------------------------------


def padded(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _check_size(height: int, width: int, smallest: int = 1) -> None:
    if height < smallest or width < smallest:
        raise ValueError(f"input {height}x{width} is smaller than the smallest size {smallest}x{smallest}")


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
    h_heads: int
    l_heads: int
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


def _linear(tokens: int, d_in: int, d_out: int, bias: bool, conv: Convention
            ) -> tuple[int, int, int]:
    """(product MACs, bias MACs, params) of a Linear(d_in, d_out) on `tokens` tokens."""
    return tokens * d_in * d_out, tokens * d_out if (bias and conv.linear_bias) else 0, \
        d_in * d_out + (d_out if bias else 0)


def hilo_cost(dim: int, num_heads: int, height: int, width: int, window_size: int = 2,
              alpha: float = 0.9, qkv_bias: bool = True, convention: Convention = AUTHORS,
              prefix: str = "", count: int = 1, stage: int | None = None) -> HiLoCost:
    """MACs and params of one HiLo layer on a height x width token grid (summed over `count` layers).

    Both branches run on the grid zero-padded to multiples of s (what HiLo.pad does), so N = Hp*Wp.
    Hi-Fi: 3*N*C*h_dim + G*(s^2)^2*h_dim*2 + N*h_dim^2 with G = N/s^2 windows.
    Lo-Fi: N*C*l_dim + M*C*2*l_dim + N*M*l_dim*2 + N*l_dim^2 with M = N/s^2 pooled tokens (M = N for s=1).
    """
    if dim <= 0 or num_heads <= 0 or dim % num_heads:
        raise ValueError(f"dim {dim} must be a positive multiple of the {num_heads} heads")
    if window_size < 1:
        raise ValueError(f"window size must be >= 1, got {window_size}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    _check_size(height, width)
    s = window_size
    head_dim = dim // num_heads
    h_heads, l_heads = split_heads(num_heads, alpha, s)
    h_dim, l_dim = h_heads * head_dim, l_heads * head_dim
    Hp, Wp = (padded(height, s), padded(width, s)) if s > 1 else (height, width)
    N = Hp * Wp
    G = N // (s * s)  # windows (Hi-Fi) == pooled tokens (Lo-Fi)
    M = G if s > 1 else N
    c = count
    mod = (lambda name: (f"{prefix}.{name}" if prefix else name,))
    hifi: list[CostRow] = []
    lofi: list[CostRow] = []
    attn_elems = 0
    if h_heads > 0:
        p, b, n = _linear(N, dim, 3 * h_dim, qkv_bias, convention)
        hifi.append(CostRow(stage, "Hi-Fi", "h_qkv", mod("h_qkv"), c * p, c * b, c * n))
        hifi.append(CostRow(stage, "Hi-Fi", "attention products", (prefix,), c * G * (s * s) ** 2 * h_dim * 2))
        p, b, n = _linear(N, h_dim, h_dim, True, convention)
        hifi.append(CostRow(stage, "Hi-Fi", "h_proj", mod("h_proj"), c * p, c * b, c * n))
        attn_elems += G * h_heads * (s * s) ** 2
    if l_heads > 0:
        p, b, n = _linear(N, dim, l_dim, qkv_bias, convention)
        lofi.append(CostRow(stage, "Lo-Fi", "l_q", mod("l_q"), c * p, c * b, c * n))
        p, b, n = _linear(M, dim, 2 * l_dim, qkv_bias, convention)
        lofi.append(CostRow(stage, "Lo-Fi", "l_kv", mod("l_kv"), c * p, c * b, c * n))
        lofi.append(CostRow(stage, "Lo-Fi", "attention products", (prefix,), c * N * M * l_dim * 2))
        p, b, n = _linear(N, l_dim, l_dim, True, convention)
        lofi.append(CostRow(stage, "Lo-Fi", "l_proj", mod("l_proj"), c * p, c * b, c * n))
        attn_elems += l_heads * N * M
    return HiLoCost(dim, num_heads, s, alpha, (height, width), (Hp, Wp), h_heads, l_heads,
                    tuple(hifi), tuple(lofi), attn_elems)


# ----------------------------------------------------------------------------------------------
# The whole model
# ----------------------------------------------------------------------------------------------


def _conv(out_positions: int, k: int, c_in: int, c_out: int, groups: int, count_bias: bool
          ) -> tuple[int, int, int]:
    """(product MACs, bias MACs, params) of a Conv2d with bias on `out_positions` output positions."""
    return (out_positions * k * k * (c_in // groups) * c_out,
            out_positions * c_out if count_bias else 0,
            k * k * (c_in // groups) * c_out + c_out)


def _norm(elements: int, channels: int, conv: Convention) -> tuple[int, int]:
    """(MACs, params) of a LayerNorm/BatchNorm with affine weights over `elements` values."""
    return elements * conv.norm_macs_per_element, 2 * channels


def model_cost(cfg: LITv2Config, height: int, width: int | None = None,
               convention: Convention | str = AUTHORS) -> ModelCost:
    """MACs and params of a LITv2 (any config) for one height x width image, per component."""
    conv = get_convention(convention)
    width = height if width is None else width
    _check_size(height, width, min_input_size(cfg))
    rows: list[CostRow] = []
    grids = grid_sizes(cfg, height, width)
    S = len(cfg.depths)

    # patch embedding: Conv2d(in, D, p, stride p) on the padded image, then LayerNorm(D)
    H0, W0 = grids[0]
    D, p = cfg.embed_dim, cfg.patch_size
    pm, pb, pn = _conv(H0 * W0, p, cfg.in_chans, D, 1, conv.patch_embed_bias)
    rows.append(CostRow(None, "patch embedding", "proj", ("patch_embed.proj",), pm, pb, pn))
    nm, nn_ = _norm(H0 * W0 * D, D, conv)
    rows.append(CostRow(None, "patch embedding", "norm", ("patch_embed.norm",), 0, nm, nn_))

    stages: list[StageCost] = []
    for i, (H, W) in enumerate(grids):
        st = i + 1
        C, depth, ws = cfg.stage_dim(i), cfg.depths[i], cfg.local_ws[i]
        hidden = int(C * cfg.mlp_ratio)
        N = H * W
        blk = f"layers.{i}.blocks"
        stage_rows: list[CostRow] = []
        attn_grid = None
        if depth > 0:
            blocks = tuple(f"{blk}.{j}" for j in range(depth))
            n_norms = 2 if ws > 0 else 1
            nm, nn_ = _norm(N * C, C, conv)
            stage_rows.append(CostRow(st, "norms", "norm1, norm2" if ws > 0 else "norm2",
                                      tuple(f"{b}.{n}" for b in blocks for n in
                                            (("norm1", "norm2") if ws > 0 else ("norm2",))),
                                      0, depth * n_norms * nm, depth * n_norms * nn_))
            if ws > 0:
                hc = hilo_cost(C, cfg.num_heads[i], H, W, ws, cfg.alpha, cfg.qkv_bias, conv,
                               prefix=f"{blk}.*.attn", count=depth, stage=st)
                attn_grid = hc.padded_grid
                for r in hc.hifi_rows + hc.lofi_rows:
                    comp = "MSA" if ws == 1 else r.component  # s = 1: plain multi-head attention
                    mods = tuple(m.replace("*", str(j)) for j in range(depth) for m in r.modules)
                    stage_rows.append(CostRow(st, comp, r.part, mods, r.product_macs, r.other_macs,
                                              r.params))
            # ConvFFN: fc1 -> depthwise 3x3 conv (with bias) -> GELU -> fc2
            for part, tokens, d_in, d_out in (("fc1", N, C, hidden), ("fc2", N, hidden, C)):
                lp, lb, ln = _linear(tokens, d_in, d_out, True, conv)
                stage_rows.append(CostRow(st, "ConvFFN", part,
                                          tuple(f"{b}.mlp.{part}" for b in blocks),
                                          depth * lp, depth * lb, depth * ln))
            dp, db, dn = _conv(N, 3, hidden, hidden, hidden, conv.conv_bias)
            stage_rows.append(CostRow(st, "ConvFFN", "dwconv",
                                      tuple(f"{b}.mlp.dwconv.dwconv" for b in blocks),
                                      depth * dp, depth * db, depth * dn))
        if i < S - 1:  # Deformable Token Merging: grid floors to (H//2, W//2), channels double
            Ho, Wo = H // 2, W // 2
            dtm = f"layers.{i}.downsample"
            off_ch = 2 * 2 * 2  # (dy, dx) per position of the 2x2 kernel
            op, ob, on = _conv(Ho * Wo, 2, C, off_ch, 1, conv.conv_bias)
            if conv.dtm_offset_channels is not None:  # authors: counted as if 12 channels
                op, ob, _ = _conv(Ho * Wo, 2, C, conv.dtm_offset_channels, 1, conv.conv_bias)
            stage_rows.append(CostRow(st, "token merging", "offset conv",
                                      (f"{dtm}.dconv.conv_offset",), op, ob, on))
            dp, db, dn = _conv(Ho * Wo, 2, C, 2 * C, 1, conv.conv_bias)
            stage_rows.append(CostRow(st, "token merging", "deformable conv", (f"{dtm}.dconv",),
                                      dp, db, dn))
            bm, bn = _norm(Ho * Wo * 2 * C, 2 * C, conv)
            stage_rows.append(CostRow(st, "token merging", "batch norm", (f"{dtm}.norm_layer",),
                                      0, bm, bn))
        if cfg.stage_norms and i > 0:  # OpenMMLab backbones: LayerNorm on stage 2.. outputs
            nm, nn_ = _norm(N * C, C, conv)
            stage_rows.append(CostRow(st, "norms", "output norm", (f"norm{i}",), 0, nm, nn_))
        by_comp: dict[str, int] = {}
        for r in stage_rows:
            by_comp[r.component] = by_comp.get(r.component, 0) + r.macs
        stages.append(StageCost(st, (H, W), attn_grid, C, depth, by_comp,
                                sum(r.macs for r in stage_rows), sum(r.params for r in stage_rows)))
        rows.extend(stage_rows)

    # head: final LayerNorm -> mean over tokens (not counted) -> Linear(8D, classes)
    F = cfg.stage_dim(S - 1)
    Hl, Wl = grids[-1]
    if cfg.final_norm:
        tokens = (H0 * W0) // 2**S if conv.final_norm_swin_tokens else Hl * Wl
        nm, nn_ = _norm(tokens * F, F, conv)
        rows.append(CostRow(None, "head", "norm", ("norm",), 0, nm, nn_))
    if cfg.num_classes > 0:
        lp, lb, ln = _linear(1, F, cfg.num_classes, True, conv)
        rows.append(CostRow(None, "head", "head", ("head",), lp, lb, ln))
    total = sum(r.macs for r in rows)
    params = sum(r.params for r in rows)
    assert params == sum(r.params for r in rows if r.stage is None) + sum(s.params for s in stages)
    return ModelCost(height, width, conv, tuple(rows), tuple(stages),
                     sum(r.macs for r in rows if r.component == "patch embedding"),
                     sum(r.macs for r in rows if r.component == "head"), total, params)


# ----------------------------------------------------------------------------------------------
# Attention comparison (one layer): MSA, SRA (PVT), local window (Swin), HiLo
# ----------------------------------------------------------------------------------------------

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


def msa_cost(dim: int, num_heads: int, height: int, width: int, qkv_bias: bool = True,
             convention: Convention = FVCORE) -> tuple[int, int, int, int]:
    """(product MACs, other MACs, params, attention elements) of multi-head self-attention."""
    N = height * width
    macs = N * dim * 3 * dim + 2 * N * N * dim + N * dim * dim
    other = (N * 3 * dim + N * dim) if convention.linear_bias else 0
    params = dim * 3 * dim + (3 * dim if qkv_bias else 0) + dim * dim + dim
    return macs, other, params, num_heads * N * N


def sra_cost(dim: int, num_heads: int, height: int, width: int, sr_ratio: int = 2,
             qkv_bias: bool = True, convention: Convention = FVCORE
             ) -> tuple[int, int, int, int, tuple[int, int]]:
    """Spatial-reduction attention (PVT): q from every token; keys/values from a Conv2d(C, C, r,
    stride r) + LayerNorm copy of the grid ((H//r) x (W//r): the strided conv floors, no padding).
    Returns (product MACs, other MACs, params, attention elements, reduced grid)."""
    if sr_ratio < 1:
        raise ValueError(f"SRA ratio must be >= 1, got {sr_ratio}")
    N = height * width
    if sr_ratio > 1:
        Hr, Wr = height // sr_ratio, width // sr_ratio
        if Hr < 1 or Wr < 1:
            raise ValueError(f"a {height}x{width} grid is too small for SRA ratio {sr_ratio}")
    else:
        Hr, Wr = height, width
    M = Hr * Wr
    macs = N * dim * dim  # q
    other = 0
    params = dim * dim + (dim if qkv_bias else 0)
    if sr_ratio > 1:
        cp, cb, cn = _conv(M, sr_ratio, dim, dim, 1, convention.conv_bias)
        nm, nn_ = _norm(M * dim, dim, convention)
        macs += cp
        other += cb + nm
        params += cn + nn_
    macs += M * dim * 2 * dim + 2 * N * M * dim + N * dim * dim  # kv, q @ k^T and attn @ v, proj
    params += dim * 2 * dim + (2 * dim if qkv_bias else 0) + dim * dim + dim
    if convention.linear_bias:
        other += N * dim + M * 2 * dim + N * dim
    return macs, other, params, num_heads * N * M, (Hr, Wr)


def window_cost(dim: int, num_heads: int, height: int, width: int, window: int = 7,
                qkv_bias: bool = True, convention: Convention = FVCORE
                ) -> tuple[int, int, int, int, tuple[int, int]]:
    """Local window attention (Swin, no shift): the grid is zero-padded at the bottom/right to
    multiples of the window (as Swin does) and every projection and product runs on the padded
    tokens. Params include Swin's relative-position bias table ((2w-1)^2 x heads); the bias add
    itself is not a MAC. Returns (product MACs, other MACs, params, attention elements, padded grid)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    Hp, Wp = padded(height, window), padded(width, window)
    Np = Hp * Wp
    w2 = window * window
    macs = Np * dim * 3 * dim + 2 * Np * w2 * dim + Np * dim * dim
    other = (Np * 4 * dim) if convention.linear_bias else 0
    params = (dim * 3 * dim + (3 * dim if qkv_bias else 0) + dim * dim + dim
              + (2 * window - 1) ** 2 * num_heads)
    return macs, other, params, (Np // w2) * num_heads * w2 * w2, (Hp, Wp)


def attention_comparison(dim: int, num_heads: int, height: int, width: int, alpha: float = 0.9,
                         window_size: int = 2, sr_ratio: int = 2, local_window: int = 7,
                         batch_size: int = 1, bytes_per_element: int = 4, qkv_bias: bool = True,
                         convention: Convention | str = FVCORE) -> list[AttentionCost]:
    """MSA, SRA, local window and HiLo on the same H x W grid (params, MACs per image, memory of
    the attention matrices for `batch_size` images at `bytes_per_element`, 4 = float32)."""
    conv = get_convention(convention)
    if dim <= 0 or num_heads <= 0 or dim % num_heads:
        raise ValueError(f"--dim {dim} must be a positive multiple of --heads {num_heads}")
    _check_size(height, width)
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    common = dict(dim=dim, num_heads=num_heads, grid=(height, width), batch_size=batch_size,
                  bytes_per_element=bytes_per_element)
    out = []
    m, o, n, e = msa_cost(dim, num_heads, height, width, qkv_bias, conv)
    out.append(AttentionCost("MSA", "MSA", padded_grid=(height, width), params=n, product_macs=m,
                             other_macs=o, attn_matrix_elements=e, notes="global, every token pair",
                             **common))
    m, o, n, e, red = sra_cost(dim, num_heads, height, width, sr_ratio, qkv_bias, conv)
    out.append(AttentionCost("SRA", f"SRA (r={sr_ratio})", padded_grid=(height, width), params=n,
                             product_macs=m, other_macs=o, attn_matrix_elements=e,
                             notes=f"keys/values from a {red[0]}x{red[1]} conv-reduced grid + LayerNorm",
                             extra={"reduced_grid": red, "sr_ratio": sr_ratio}, **common))
    m, o, n, e, pg = window_cost(dim, num_heads, height, width, local_window, qkv_bias, conv)
    out.append(AttentionCost("Window", f"Window ({local_window}x{local_window})", padded_grid=pg,
                             params=n, product_macs=m, other_macs=o, attn_matrix_elements=e,
                             notes="no shift; padded to window multiples; params include the "
                                   "relative-position bias table",
                             extra={"window": local_window}, **common))
    hc = hilo_cost(dim, num_heads, height, width, window_size, alpha, qkv_bias, conv)
    rows = hc.hifi_rows + hc.lofi_rows
    out.append(AttentionCost("HiLo", f"HiLo (alpha={alpha:g}, s={window_size})",
                             padded_grid=hc.padded_grid, params=hc.params,
                             product_macs=sum(r.product_macs for r in rows),
                             other_macs=sum(r.other_macs for r in rows),
                             attn_matrix_elements=hc.attn_matrix_elements,
                             notes=f"{hc.h_heads} Hi-Fi + {hc.l_heads} Lo-Fi heads",
                             extra={"hifi_macs": hc.hifi_macs, "lofi_macs": hc.lofi_macs,
                                    "h_heads": hc.h_heads, "l_heads": hc.l_heads,
                                    "alpha": alpha, "window_size": window_size}, **common))
    return out


def stage3_layer(cfg: LITv2Config, height: int, width: int) -> tuple[int, int, int, int, int]:
    """(dim, heads, H, W, s) of the first HiLo layer that has a window (s > 1), else the first
    attention stage: the feature map the attention comparison uses by default."""
    grids = grid_sizes(cfg, height, width)
    candidates = [i for i, ws in enumerate(cfg.local_ws) if ws > 1 and cfg.depths[i] > 0] or \
                 [i for i, ws in enumerate(cfg.local_ws) if ws > 0 and cfg.depths[i] > 0]
    if not candidates:
        raise ValueError("this model has no attention layers")
    i = candidates[0]
    return cfg.stage_dim(i), cfg.num_heads[i], grids[i][0], grids[i][1], cfg.local_ws[i]


# ----------------------------------------------------------------------------------------------
# Sweep over resolutions
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepPoint:
    resolution: int
    model_macs: int
    grid: tuple[int, int]  # the attention feature map compared
    attention: tuple[AttentionCost, ...]


def sweep(cfg: LITv2Config, resolutions: Iterable[int], convention: Convention | str = AUTHORS,
          attn_convention: Convention | str = FVCORE, batch_size: int = 1,
          bytes_per_element: int = 4, alpha: float | None = None,
          window_size: int | None = None) -> list[SweepPoint]:
    """Model MACs and the attention comparison at the default feature map, per square resolution."""
    out = []
    for r in resolutions:
        mc = model_cost(cfg, r, r, convention)
        dim, heads, H, W, s = stage3_layer(cfg, r, r)
        att = attention_comparison(dim, heads, H, W, cfg.alpha if alpha is None else alpha,
                                   s if window_size is None else window_size,
                                   batch_size=batch_size, bytes_per_element=bytes_per_element,
                                   qkv_bias=cfg.qkv_bias, convention=attn_convention)
        out.append(SweepPoint(r, mc.macs, (H, W), tuple(att)))
    return out


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23 M' (SI prefixes)."""
    for div, p in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f} {p}{unit}"
    return f"{n:g} {unit}".rstrip()


def human_bytes(n: float) -> str:
    for div, p in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(n) >= div:
            return f"{n / div:.2f} {p}"
    return f"{n:g} B"

