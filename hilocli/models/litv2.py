"""LITv2 with HiLo attention, written from the paper and the published facts of the authors'
release.

Layout follows timm's model files: small blocks, then the model (the deformable token merging
lives in `hilocli.models.dcn`). The config and the variant
registry live in `hilocli.models.config`, which needs no torch; what checkpoints say about the
model (key filtering, inference, strict loading) in `hilocli.models.litv2_checkpoint`.
Tensor shape comments use B (batch), H x W (token grid), C (channels), G (windows),
s (window size), h (heads), d (head dim), N (tokens), M (pooled tokens).

The state-dict names and shapes equal those of the authors' released checkpoints, so those load
strictly. HiLo is a thin module around the functional core `hilocli.hilo.core` (the torchvision
pattern: functions plus a thin module); analyses see this model's HiLo layers as they see any
model's, found by structure (`hilocli.hilo`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from hilocli.hilo.core import (
    attend,
    merge_windows,
    pad_grid,
    pooled_qkv,
    window_qkv,
)
from hilocli.models.config import LITv2Config, split_heads
from hilocli.models.dcn import DeformTokenMerge
from hilocli.models.geometry import grid_sizes, min_input_size
from hilocli.models.layout import grid_view

__all__ = ["LITv2", "HiLo", "DeformTokenMerge"]


# ----------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, embed_dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        p = self.patch_size
        _, _, H, W = x.shape
        if H % p or W % p:  # dense-prediction rule: zero-pad bottom/right to a multiple of p
            x = F.pad(x, (0, (-W) % p, 0, (-H) % p))
        # channels-last in, channels-last out: the tokens below are a view, not a copy
        x = self.proj(x.contiguous(memory_format=torch.channels_last))  # (B, D, H/p, W/p)
        H, W = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), H, W  # (B, N, D)


class DWConv(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """Depthwise 3x3 conv on tokens (B, N, C) laid on the H x W grid."""
        grid = grid_view(x, H, W)  # (B, C, H, W), channels-last view
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # CPU autocast would run this depthwise conv in bfloat16 through a slow per-channel
            # fallback: keep it in float32
            with torch.autocast("cpu", enabled=False):
                grid = self.dwconv(grid.float())  # (B, C, H, W)
        else:
            grid = self.dwconv(grid)  # (B, C, H, W)
        return grid.flatten(2).transpose(1, 2)  # (B, N, C)


class ConvFFN(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        x = self.fc1(x)  # (B, N, hidden)
        x = self.act(self.dwconv(x, H, W))  # (B, N, hidden)
        return self.fc2(x)  # (B, N, dim)


class HiLo(nn.Module):
    """HiLo attention. Hi-Fi heads attend inside s x s windows; Lo-Fi heads attend to s x s
    average-pooled keys and values. With window_size 1 it is plain multi-head self-attention
    (all heads Lo-Fi, no pooling). Output channels: Hi-Fi first, then Lo-Fi.

    The maths is `hilocli.hilo.core`'s (pad-then-pool, as the authors' code); analyses find this
    module by structure like any model's HiLo (`hilocli.hilo`). need_weights=True computes
    attention explicitly with `attention_probs` (else fused SDPA).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int = 2,
        alpha: float = 0.9,
        qkv_bias: bool = True,
    ):
        super().__init__()
        if window_size < 1:
            raise ValueError(f"window_size must be >= 1, got {window_size}")
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by {num_heads} heads")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.window_size = window_size
        self.scale = self.head_dim**-0.5
        self.h_heads, self.l_heads = split_heads(num_heads, alpha, window_size)
        self.h_dim = self.h_heads * self.head_dim
        self.l_dim = self.l_heads * self.head_dim
        self.need_weights = False  # True: explicit softmax path (attention_probs), no SDPA

        if self.l_heads > 0:
            self.l_q = nn.Linear(dim, self.l_dim, bias=qkv_bias)
            self.l_kv = nn.Linear(dim, 2 * self.l_dim, bias=qkv_bias)
            self.l_proj = nn.Linear(self.l_dim, self.l_dim)
        if self.h_heads > 0:
            self.h_qkv = nn.Linear(dim, 3 * self.h_dim, bias=qkv_bias)
            self.h_proj = nn.Linear(self.h_dim, self.h_dim)

    # -- the pieces -------------------------------------------------------------------------
    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pad a (B, H, W, C) grid at the bottom/right to multiples of the window size."""
        return pad_grid(x, self.window_size)

    def hifi_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Padded grid (B, Hp, Wp, C) -> q, k, v, each (B, G, h, s*s, d), windows row-major."""
        return window_qkv(self.h_qkv, x, self.window_size, self.h_heads, self.head_dim)

    def lofi_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Padded grid (B, Hp, Wp, C) -> q (B, h, Hp*Wp, d), k and v (B, h, M, d)."""
        return pooled_qkv(self.l_q, self.l_kv, x, self.window_size, self.l_heads, self.head_dim)

    def _attend(self, q, k, v) -> torch.Tensor:
        return attend(q, k, v, self.scale, explicit=self.need_weights)

    def hifi(self, x: torch.Tensor) -> torch.Tensor:
        """Hi-Fi branch on a padded grid (B, Hp, Wp, C) -> (B, Hp, Wp, h_dim)."""
        _, Hp, Wp, _ = x.shape
        out = self._attend(*self.hifi_qkv(x))  # (B, G, h, s*s, d)
        return self.h_proj(merge_windows(out, Hp, Wp, self.window_size))  # (B, Hp, Wp, h_dim)

    def lofi(self, x: torch.Tensor) -> torch.Tensor:
        """Lo-Fi branch on a padded grid (B, Hp, Wp, C) -> (B, Hp, Wp, l_dim)."""
        B, Hp, Wp, _ = x.shape
        out = self._attend(*self.lofi_qkv(x))  # (B, h, Hp*Wp, d)
        out = out.transpose(1, 2).reshape(B, Hp, Wp, self.l_dim)
        return self.l_proj(out)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, N, C = x.shape
        grid = self.pad(x.reshape(B, H, W, C))  # (B, Hp, Wp, C)
        outs = []
        if self.h_heads > 0:
            outs.append(self.hifi(grid)[:, :H, :W])  # (B, H, W, h_dim)
        if self.l_heads > 0:
            outs.append(self.lofi(grid)[:, :H, :W])  # (B, H, W, l_dim)
        return torch.cat(outs, dim=-1).reshape(B, N, C)


class Block(nn.Module):
    """x + attn(norm1(x)) (only when the stage has attention), then x + mlp(norm2(x))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        alpha: float,
        mlp_ratio: float,
        qkv_bias: bool,
    ):
        super().__init__()
        if window_size > 0:
            self.norm1 = nn.LayerNorm(dim)
            self.attn = HiLo(dim, num_heads, window_size, alpha, qkv_bias)
        else:
            self.norm1 = self.attn = None
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = ConvFFN(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        if self.attn is not None:
            x = x + self.attn(self.norm1(x), H, W)
        return x + self.mlp(self.norm2(x), H, W)


class Stage(nn.Module):
    """A container: the blocks of one stage and the token merging that follows it (if any)."""

    def __init__(self, blocks: list[Block], downsample: DeformTokenMerge | None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------


class LITv2(nn.Module):
    def __init__(self, cfg: LITv2Config | None = None, **overrides):
        super().__init__()
        cfg = (cfg or LITv2Config()).replace(**overrides) if overrides else (cfg or LITv2Config())
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg.in_chans, cfg.embed_dim, cfg.patch_size)
        stages = []
        for i in range(cfg.num_stages):
            dim = cfg.stage_dim(i)
            blocks = [
                Block(
                    dim, cfg.num_heads[i], cfg.local_ws[i], cfg.alpha, cfg.mlp_ratio, cfg.qkv_bias
                )
                for _ in range(cfg.depths[i])
            ]
            last = i == cfg.num_stages - 1
            stages.append(Stage(blocks, None if last else DeformTokenMerge(dim, 2 * dim)))
        self.layers = nn.ModuleList(stages)
        if cfg.stage_norms:  # OpenMMLab backbones: norm1..norm{S-1} on stage 2..S outputs
            for i in range(1, cfg.num_stages):
                self.add_module(f"norm{i}", nn.LayerNorm(cfg.stage_dim(i)))
        self.norm = nn.LayerNorm(cfg.num_features) if cfg.final_norm else None
        self.head = nn.Linear(cfg.num_features, cfg.num_classes) if cfg.num_classes > 0 else None
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # -- geometry ------------------------------------------------------------------------
    def grid_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Token-grid (H, W) each stage runs at for an input of height x width pixels."""
        return grid_sizes(self.cfg, height, width)

    def min_input_size(self) -> int:
        """Smallest side (pixels) for which every stage still has at least one token."""
        return min_input_size(self.cfg)

    # -- forward ----------------------------------------------------------------------------
    def _stages(self, x: torch.Tensor) -> Iterator[tuple[int, torch.Tensor, int, int]]:
        """Yields (stage index, tokens before token merging, H, W) for every stage."""
        _, _, h_in, w_in = x.shape
        if min(h_in, w_in) < self.min_input_size():
            raise ValueError(
                f"input {h_in}x{w_in} is smaller than the model's minimum "
                f"{self.min_input_size()}x{self.min_input_size()}"
            )
        x, H, W = self.patch_embed(x)  # (B, N, D)
        for i, stage in enumerate(self.layers):
            for blk in stage.blocks:
                x = blk(x, H, W)
            yield i, x, H, W
            if stage.downsample is not None:
                x, H, W = stage.downsample(x, H, W)  # (B, N/4, 2C)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stage feature maps (B, C_i, H_i, W_i), strides 4, 8, 16, 32 (backbone use).

        With stage_norms (OpenMMLab backbones) stages 2.. pass through norm1, norm2, ...
        """
        feats = []
        for i, x_i, H, W in self._stages(x):
            if self.cfg.stage_norms and i > 0:
                x_i = getattr(self, f"norm{i}")(x_i)
            feats.append(grid_view(x_i, H, W))  # (B, C, H, W)
        return feats

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Final tokens (B, N, 8D) after the final norm (if any)."""
        *_, (_, x_last, _, _) = self._stages(x)  # run every stage, keep the last tokens
        return self.norm(x_last) if self.norm is not None else x_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean(dim=1)  # (B, 8D)
        return self.head(x) if self.head is not None else x
