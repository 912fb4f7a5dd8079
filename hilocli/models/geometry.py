"""Grid geometry of LITv2 and its HiLo layers: the one home for padding, pooling, token strides,
input-size limits and layer identity. Torch-free, so `hilo flops` and `hilo --help` stay fast.

Positions are in model-input pixels, x right, y down, pixel (0, 0) covering [0, 1) x [0, 1).
- The patch embedding pads the input bottom/right to a multiple of the patch size p (ceil); each
  token merging (2x2, stride 2, no padding) floors odd sizes. So stage i has stride
  t = p * 2**i pixels per token side, and token (r, c) covers [c t, (c + 1) t) x [r t, (r + 1) t).
- A HiLo layer pads its (H, W) grid with zeros bottom/right to (Hp, Wp), multiples of its window
  size s. Lo-Fi keys are the (Hp/s) x (Wp/s) average-pooled windows; Hi-Fi queries attend to the
  s*s tokens of their own window.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from hilocli.errors import UsageError
from hilocli.models.config import LITv2Config, split_heads

MAX_INPUT_SIDE = 8192  # pixels; larger inputs are refused as usage errors (memory, sanity)


def padded_size(n: int, multiple: int) -> int:
    """n rounded up to a multiple of `multiple` (>= 1)."""
    return -(-n // multiple) * multiple


def padded_grid(grid: tuple[int, int], window_size: int) -> tuple[int, int]:
    """(Hp, Wp): a HiLo layer's (H, W) grid padded bottom/right to multiples of its window."""
    s = max(window_size, 1)
    return padded_size(grid[0], s), padded_size(grid[1], s)


def pooled_grid(grid: tuple[int, int], window_size: int) -> tuple[int, int]:
    """(Hp / s, Wp / s): the Lo-Fi key grid, also the Hi-Fi window grid."""
    s = max(window_size, 1)
    Hp, Wp = padded_grid(grid, s)
    return Hp // s, Wp // s


def token_stride(stage: int, patch_size: int = 4) -> int:
    """Input pixels per token side at `stage` (0-based): patch_size * 2**stage."""
    if stage < 0:
        raise ValueError(f"stage must be >= 0, got {stage}")
    return patch_size * 2**stage


def grid_sizes(cfg: LITv2Config, height: int, width: int) -> list[tuple[int, int]]:
    """Token grid (H, W) per stage for a height x width input."""
    p = cfg.patch_size
    H, W = -(-height // p), -(-width // p)
    sizes = []
    for _ in range(cfg.num_stages):
        sizes.append((H, W))
        H, W = H // 2, W // 2
    return sizes


def min_input_size(cfg: LITv2Config) -> int:
    """Smallest side (pixels) for which every stage still has at least one token."""
    return cfg.patch_size * 2 ** (cfg.num_stages - 1)


def requested_size(
    resolution: int | None, height: int | None, width: int | None
) -> tuple[int, int] | None:
    """(height, width) asked for by `--resolution` or `--height/--width` (the one rule and wording
    for every command); None when neither was given. UsageError for half or both."""
    if resolution is not None and (height is not None or width is not None):
        raise UsageError("--resolution conflicts with --height/--width: give one or the other")
    if (height is None) != (width is None):
        raise UsageError("--height and --width go together")
    if height is not None:
        return height, width
    return None if resolution is None else (resolution, resolution)


def check_input_size(
    height: int, width: int, smallest: int = 1, largest: int = MAX_INPUT_SIDE
) -> None:
    """The one check (and wording) for an input size; UsageError when out of range."""
    if not (smallest <= height <= largest and smallest <= width <= largest):
        which = " for this model" if smallest > 1 else ""
        raise UsageError(
            f"input size {height}x{width} px (height x width) is out of range: "
            f"each side must be {smallest}..{largest} px{which}"
        )


def forward_bytes(cfg: LITv2Config, height: int, width: int) -> int:
    """A rough peak memory of one image's float32 forward: the largest stage's tokens x channels
    x (MLP ratio + 4 live copies) x 4 bytes (attention itself runs in fused kernels). Only to
    refuse inputs that cannot fit before decoding them; measured peaks lie below it."""
    return max(
        int(h * w * cfg.stage_dim(i) * (cfg.mlp_ratio + 4) * 4)
        for i, (h, w) in enumerate(grid_sizes(cfg, height, width))
    )


def pixel_to_token(
    x: float | Fraction, y: float | Fraction, stage: int, grid: tuple[int, int], patch_size: int = 4
) -> tuple[int, int]:
    """Model-input position (x, y) -> (row, col) of the stage token that covers it, exactly.

    Arithmetic is rational (a float is taken at its exact binary value), so no position lands one
    token off through rounding. Positions beyond the last token (pixels that token merging dropped
    when it floored an odd size) clamp to the last row/column. ValueError outside the input.
    """
    xf, yf = Fraction(x), Fraction(y)
    if xf < 0 or yf < 0:
        raise ValueError(f"position ({float(xf):g}, {float(yf):g}) is not inside the model input")
    H, W = grid
    if H < 1 or W < 1:
        raise ValueError(f"stage grid {H}x{W} has no tokens")
    t = token_stride(stage, patch_size)
    return min(math.floor(yf / t), H - 1), min(math.floor(xf / t), W - 1)


def short_block_name(name: str) -> str:
    """A block's name as stage.block: `layers.2.blocks.3` -> `2.3` (other names unchanged)."""
    return name.replace("layers.", "").replace(".blocks.", ".")


@dataclass(frozen=True)
class HiLoLayerInfo:
    """Identity of one HiLo layer: what `--layer` indexes and every feature reports."""

    index: int  # position among the model's HiLo layers: what --layer takes
    name: str  # block name, e.g. "layers.2.blocks.3"
    path: str  # module path of the HiLo module, e.g. "layers.2.blocks.3.attn"
    stage: int | None  # 0-based stage; None: unknown (a user model, not LITv2)
    window_size: int  # s; 1 means plain MSA (all heads Lo-Fi, no pooling)
    num_heads: int
    hifi_heads: int
    lofi_heads: int
    head_dim: int

    @property
    def has_both(self) -> bool:
        return self.hifi_heads > 0 and self.lofi_heads > 0

    @property
    def short_name(self) -> str:
        """`layers.2.blocks.3` -> `2.3` (stage.block), for tick labels and table cells."""
        return short_block_name(self.name)

    def head_label(self, head: int) -> str:
        """Heads are numbered as the output channels: Hi-Fi first, then Lo-Fi."""
        if head < self.hifi_heads:
            return f"head {head} Hi-Fi"
        return f"head {head} Lo-Fi" if self.window_size > 1 else f"head {head} MSA"

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "stage": None if self.stage is None else self.stage + 1,
            "window_size": self.window_size,
            "num_heads": self.num_heads,
            "hifi_heads": self.hifi_heads,
            "lofi_heads": self.lofi_heads,
            "head_dim": self.head_dim,
        }


@dataclass(frozen=True)
class LayerGeometry:
    """Where a HiLo layer's tokens, windows and pooled keys sit on one model input.

    Hi-Fi windows tile the padded grid. Lo-Fi queries and pools the padded grid under the
    authors' rule ("pad"), the grid itself with a floor under birder's ("floor")."""

    layer: HiLoLayerInfo
    grid: tuple[int, int]  # (H, W) real tokens
    stride: int  # input pixels per token side
    input_size: tuple[int, int]  # (w, h) of the model input, pixels
    pooling: str | None = "pad"  # the Lo-Fi pooling rule; None: not learnt (no arithmetic ran)

    @property
    def padded(self) -> tuple[int, int]:
        return padded_grid(self.grid, self.layer.window_size)

    @property
    def windows(self) -> tuple[int, int]:
        """(Hp / s, Wp / s): the Hi-Fi window grid."""
        return pooled_grid(self.grid, self.layer.window_size)

    @property
    def lofi_queries(self) -> tuple[int, int]:
        """The grid of Lo-Fi query rows: padded ("pad") or the real grid ("floor")."""
        return self.padded if self.pooling == "pad" else self.grid

    @property
    def pooled(self) -> tuple[int, int]:
        """The Lo-Fi key grid."""
        if self.pooling == "pad":
            return pooled_grid(self.grid, self.layer.window_size)
        s = max(self.layer.window_size, 1)
        return self.grid[0] // s, self.grid[1] // s

    @property
    def num_lofi_keys(self) -> int:
        return self.pooled[0] * self.pooled[1]

    @property
    def num_hifi_keys(self) -> int:
        return self.layer.window_size**2

    @property
    def hifi_max_distance(self) -> float:
        """Largest Hi-Fi query-key distance, between opposite token centres of a window:
        (s - 1) * sqrt(2) * stride."""
        return (self.layer.window_size - 1) * math.sqrt(2) * self.stride

    @property
    def window_diagonal(self) -> float:
        return self.layer.window_size * math.sqrt(2) * self.stride

    @property
    def pooling_known(self) -> bool:
        """Is the Lo-Fi key grid known: the rule was learnt, or both rules give the same grid
        (H and W multiples of s)?"""
        s = max(self.layer.window_size, 1)
        return self.pooling is not None or (self.grid[0] % s == 0 and self.grid[1] % s == 0)

    def at(self, input_size: tuple[int, int]) -> LayerGeometry:
        """This layer on another (w, h) input: ceil(side / stride) tokens (exact for LITv2 where
        the sides are multiples of its largest stride)."""
        w, h = input_size
        grid = (-(-h // self.stride), -(-w // self.stride))
        return LayerGeometry(self.layer, grid, self.stride, (w, h), self.pooling)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.layer.to_dict(),
            "grid": list(self.grid),
            "padded_grid": list(self.padded),
            "pooled_grid": list(self.pooled) if self.pooling_known else None,
            "pooling": self.pooling,
            "token_stride_px": self.stride,
            "input_size": list(self.input_size),
        }


def layer_geometry(
    layer: HiLoLayerInfo, cfg: LITv2Config, input_size: tuple[int, int]
) -> LayerGeometry:
    """Geometry of `layer` for a model input of `input_size` = (w, h) pixels."""
    w, h = input_size
    grid = grid_sizes(cfg, h, w)[layer.stage]
    return LayerGeometry(
        layer=layer,
        grid=tuple(grid),
        stride=token_stride(layer.stage, cfg.patch_size),
        input_size=(w, h),
    )


@dataclass(frozen=True)
class StageInfo:
    stage: int  # 1-based
    grid: tuple[int, int]  # (H, W) tokens
    tokens: int
    dim: int
    depth: int
    attention: str  # "MLP only" | "MSA" | "HiLo"
    window_size: int
    num_heads: int
    head_dim: int
    hifi_heads: int
    hifi_channels: int
    lofi_heads: int
    lofi_channels: int
    token_merging_after: bool

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "grid": list(self.grid)}


def stage_infos(cfg: LITv2Config, height: int, width: int) -> list[StageInfo]:
    """Per-stage facts of a config at a height x width input."""
    out = []
    for i, (H, W) in enumerate(grid_sizes(cfg, height, width)):
        ws, dim = cfg.local_ws[i], cfg.stage_dim(i)
        heads = cfg.num_heads[i] if ws else 0
        head_dim = dim // heads if heads else 0
        hifi, lofi = split_heads(heads, cfg.alpha, ws) if ws else (0, 0)
        out.append(
            StageInfo(
                stage=i + 1,
                grid=(H, W),
                tokens=H * W,
                dim=dim,
                depth=cfg.depths[i],
                attention="MLP only" if not ws else "MSA" if ws == 1 else "HiLo",
                window_size=ws,
                num_heads=heads,
                head_dim=head_dim,
                hifi_heads=hifi,
                hifi_channels=hifi * head_dim,
                lofi_heads=lofi,
                lofi_channels=lofi * head_dim,
                token_merging_after=i < cfg.num_stages - 1,
            )
        )
    return out
