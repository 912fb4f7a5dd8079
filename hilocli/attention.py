"""Attention maps and locality summaries of HiLo layers, computed from queries and keys.

Nothing here materialises a layer's whole attention matrix unless asked to (`full_matrices`):
maps are softmax rows for the chosen query tokens only, and summaries run over the queries in
chunks of `chunk_size`, so the largest temporary is (heads, chunk_size, keys) whatever the image
size.

Geometry (all positions in model-input pixels, x right, y down, pixel (0, 0) covering
[0, 1) x [0, 1)):
- A token (r, c) of stage i covers input pixels [c * t, (c + 1) * t) x [r * t, (r + 1) * t) with
  stride t = patch_size * 2**i (4, 8, 16, 32 for LITv2); its centre is ((c + 0.5) t, (r + 0.5) t).
- The patch embedding pads the image bottom/right to a multiple of 4 (stage 1 has ceil(w / 4)
  tokens), each token merging floors odd sizes (W_{i+1} = W_i // 2). So the last input pixels of
  an odd-sized grid have no token at later stages; `query_to_token` clamps them to the last
  row/column (the nearest token).
- A HiLo layer pads its (H, W) grid with zeros bottom/right to (Hp, Wp), multiples of the window
  size s. Lo-Fi keys are the (Hp/s) x (Wp/s) average-pooled windows (centre of window (i, j):
  ((j + 0.5) s t, (i + 0.5) s t)); Hi-Fi keys are the s*s tokens of the query's own window.
- Queries: only real tokens (r < H, c < W) are queries here; the padded positions' outputs are
  cropped away by the model. Keys: padded positions stay in (Hi-Fi windows that overhang the grid,
  pooled Lo-Fi windows that include padding): the model attends to them, so the weights do too.

Heads are numbered as the layer's output channels are ordered: Hi-Fi heads first
(0 .. h_heads-1), then Lo-Fi heads (h_heads .. num_heads-1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

DEFAULT_CHUNK_SIZE = 256  # query tokens per chunk in the summaries


# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------


def token_stride(stage: int, patch_size: int = 4) -> int:
    """Input pixels per token side at `stage` (0-based): patch_size * 2**stage."""
    if stage < 0:
        raise ValueError(f"stage must be >= 0, got {stage}")
    return patch_size * 2**stage


def query_to_token(x: float, y: float, stage: int, grid: tuple[int, int],
                   patch_size: int = 4) -> tuple[int, int]:
    """Model-input position (x, y) -> (row, col) of the stage token that covers it.

    `grid` is the stage's (H, W) from `model.grid_sizes`. Column floor(x / t), row floor(y / t),
    t = token_stride(stage); a position beyond the last token (pixels that token merging dropped
    when it floored an odd size) is clamped to the last row/column. ValueError for a negative
    position.
    """
    if not (math.isfinite(x) and math.isfinite(y)) or x < 0 or y < 0:
        raise ValueError(f"position ({x:g}, {y:g}) is not inside the model input")
    H, W = grid
    if H < 1 or W < 1:
        raise ValueError(f"stage grid {H}x{W} has no tokens")
    t = token_stride(stage, patch_size)
    return min(int(y // t), H - 1), min(int(x // t), W - 1)


@dataclass(frozen=True)
class LayerGeometry:
    """Where a HiLo layer's tokens, windows and pooled keys sit on the model input."""

    index: int  # position in model.hilo_layers(): what --layer takes
    name: str  # e.g. "layers.2.blocks.3"
    stage: int  # 0-based stage the layer belongs to
    window_size: int  # s
    num_heads: int
    h_heads: int
    l_heads: int
    grid: tuple[int, int]  # (H, W) real tokens
    stride: int  # input pixels per token side
    input_size: tuple[int, int]  # (w, h) of the model input, pixels

    @property
    def padded(self) -> tuple[int, int]:
        """(Hp, Wp): the grid padded bottom/right to multiples of s."""
        s = self.window_size
        return -(-self.grid[0] // s) * s, -(-self.grid[1] // s) * s

    @property
    def pooled(self) -> tuple[int, int]:
        """(Hp / s, Wp / s): the Lo-Fi key grid (also the Hi-Fi window grid)."""
        Hp, Wp = self.padded
        return Hp // self.window_size, Wp // self.window_size

    @property
    def num_lofi_keys(self) -> int:
        return self.pooled[0] * self.pooled[1]

    @property
    def num_hifi_keys(self) -> int:
        return self.window_size**2

    @property
    def hifi_max_distance(self) -> float:
        """Largest possible Hi-Fi query-key distance: between opposite token centres of a window,
        (s - 1) * sqrt(2) * stride; below the window's diagonal s * sqrt(2) * stride."""
        return (self.window_size - 1) * math.sqrt(2) * self.stride

    @property
    def window_diagonal(self) -> float:
        return self.window_size * math.sqrt(2) * self.stride

    def head_label(self, head: int) -> str:
        if head < self.h_heads:
            return f"head {head} Hi-Fi"
        return f"head {head} Lo-Fi" if self.window_size > 1 else f"head {head} MSA"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "stage": self.stage + 1,
                "window_size": self.window_size, "num_heads": self.num_heads,
                "hifi_heads": self.h_heads, "lofi_heads": self.l_heads,
                "grid": list(self.grid), "padded_grid": list(self.padded),
                "pooled_grid": list(self.pooled), "token_stride_px": self.stride,
                "input_size": list(self.input_size)}


def layer_stage(model, index: int) -> int:
    """0-based stage of the HiLo layer model.hilo_layers()[index]."""
    layers = model.hilo_layers()
    if not 0 <= index < len(layers):
        raise ValueError(f"layer index {index} out of range 0..{len(layers) - 1}")
    target = layers[index][1]
    for i, stage in enumerate(model.layers):
        if any(blk.attn is target for blk in stage.blocks):
            return i
    raise AssertionError("layer not found in any stage")  # pragma: no cover


def layer_geometry(model, index: int, input_size: tuple[int, int]) -> LayerGeometry:
    """Geometry of HiLo layer `index` for a model input of `input_size` = (w, h) pixels."""
    name, layer = model.hilo_layers()[index]
    stage = layer_stage(model, index)
    w, h = input_size
    grid = model.grid_sizes(h, w)[stage]
    return LayerGeometry(index=index, name=name, stage=stage, window_size=layer.window_size,
                         num_heads=layer.num_heads, h_heads=layer.h_heads, l_heads=layer.l_heads,
                         grid=tuple(grid), stride=token_stride(stage, model.cfg.patch_size),
                         input_size=(w, h))


# ----------------------------------------------------------------------------------------------
# Queries and keys of one layer
# ----------------------------------------------------------------------------------------------


@dataclass
class LayerQK:
    """A layer's queries and keys for one image (batch of 1 squeezed away)."""

    geometry: LayerGeometry
    scale: float
    hifi_q: torch.Tensor | None  # (G, h_heads, s*s, d), windows row-major
    hifi_k: torch.Tensor | None  # (G, h_heads, s*s, d)
    lofi_q: torch.Tensor | None  # (l_heads, Hp*Wp, d)
    lofi_k: torch.Tensor | None  # (l_heads, M, d)


def layer_qk(layer, control: torch.Tensor, geometry: LayerGeometry) -> LayerQK:
    """Project the layer input (norm1 output, (1, H, W, C) or (H, W, C), unpadded) to queries and
    keys with the layer's own projections, exactly as its forward does."""
    if control.dim() == 3:
        control = control.unsqueeze(0)  # (1, H, W, C)
    if control.shape[0] != 1:
        raise ValueError(f"one image at a time, got a batch of {control.shape[0]}")
    if tuple(control.shape[1:3]) != geometry.grid:
        raise ValueError(f"control grid {tuple(control.shape[1:3])} does not match the layer "
                         f"geometry {geometry.grid}")
    with torch.no_grad():
        padded = layer.pad(control)  # (1, Hp, Wp, C)
        hq = hk = lq = lk = None
        if layer.h_heads > 0:
            q, k, _ = layer.hifi_qkv(padded)  # each (1, G, h, s*s, d)
            hq, hk = q[0], k[0]
        if layer.l_heads > 0:
            q, k, _ = layer.lofi_qkv(padded)  # q (1, h, N, d), k (1, h, M, d)
            lq, lk = q[0], k[0]
    return LayerQK(geometry=geometry, scale=float(layer.scale), hifi_q=hq, hifi_k=hk,
                   lofi_q=lq, lofi_k=lk)


def _window_of(geometry: LayerGeometry, row: int, col: int) -> tuple[int, int]:
    """(window index g, position inside the window) of token (row, col)."""
    s = geometry.window_size
    Wg = geometry.pooled[1]
    return (row // s) * Wg + col // s, (row % s) * s + col % s


def _check_token(geometry: LayerGeometry, row: int, col: int) -> None:
    H, W = geometry.grid
    if not (0 <= row < H and 0 <= col < W):
        raise ValueError(f"token ({row}, {col}) is outside the {H}x{W} grid of {geometry.name}")


@dataclass
class QueryMap:
    """One query token's attention in one layer. Weights are float32 numpy arrays."""

    token: tuple[int, int]  # (row, col) on the layer's grid
    centre: tuple[float, float]  # (x, y) of the token centre, input pixels
    hifi: np.ndarray | None  # (h_heads, s, s) weights over the query's window
    window_origin: tuple[int, int] | None  # (row, col) token of the window's top-left
    lofi: np.ndarray | None  # (l_heads, Hp/s, Wp/s) weights over the pooled keys

    def heads(self) -> list[np.ndarray]:
        """Per global head index (Hi-Fi first): (s, s) or (Hp/s, Wp/s) maps."""
        out = [] if self.hifi is None else list(self.hifi)
        return out + ([] if self.lofi is None else list(self.lofi))


def query_maps(qk: LayerQK, tokens: list[tuple[int, int]]) -> list[QueryMap]:
    """Softmax rows of both branches for the given query tokens only (real tokens)."""
    g = qk.geometry
    s, t = g.window_size, g.stride
    out = []
    for row, col in tokens:
        _check_token(g, row, col)
        hifi = origin = lofi = None
        if qk.hifi_q is not None:
            win, pos = _window_of(g, row, col)
            q = qk.hifi_q[win, :, pos:pos + 1]  # (h, 1, d)
            w = ((q @ qk.hifi_k[win].transpose(-2, -1)) * qk.scale).softmax(-1)  # (h, 1, s*s)
            hifi = w[:, 0].reshape(-1, s, s).float().cpu().numpy()
            origin = ((row // s) * s, (col // s) * s)
        if qk.lofi_q is not None:
            idx = row * g.padded[1] + col
            q = qk.lofi_q[:, idx:idx + 1]  # (h, 1, d)
            w = ((q @ qk.lofi_k.transpose(-2, -1)) * qk.scale).softmax(-1)  # (h, 1, M)
            lofi = w[:, 0].reshape(-1, *g.pooled).float().cpu().numpy()
        out.append(QueryMap(token=(row, col), centre=((col + 0.5) * t, (row + 0.5) * t),
                            hifi=hifi, window_origin=origin, lofi=lofi))
    return out


def query_map_distances(g: LayerGeometry, qmap: QueryMap) -> np.ndarray:
    """Attention-weighted distance (input px) from the query token's centre to the keys' centres,
    per global head (Hi-Fi heads first): the per-query version of the summary's mean distance."""
    s, t = g.window_size, g.stride
    qx, qy = qmap.centre
    out = []
    if qmap.hifi is not None:
        r0, c0 = qmap.window_origin
        rows, cols = np.mgrid[0:s, 0:s]
        d = np.hypot((c0 + cols + 0.5) * t - qx, (r0 + rows + 0.5) * t - qy)  # (s, s)
        out.extend((qmap.hifi * d).sum(axis=(1, 2)))
    if qmap.lofi is not None:
        Hk, Wk = qmap.lofi.shape[1:]
        rows, cols = np.mgrid[0:Hk, 0:Wk]
        d = np.hypot((cols + 0.5) * s * t - qx, (rows + 0.5) * s * t - qy)  # (Hk, Wk)
        out.extend((qmap.lofi * d).sum(axis=(1, 2)))
    return np.asarray(out, dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# Whole-image summaries
# ----------------------------------------------------------------------------------------------


@dataclass
class BranchSummary:
    """Per-head numbers of one branch, over all real query tokens of one image."""

    branch: str  # "hifi" | "lofi"
    heads: list[int]  # global head indices
    num_keys: int  # keys per query (s*s for Hi-Fi, M for Lo-Fi)
    num_queries: int  # real query tokens averaged over
    mean_distance: np.ndarray  # (heads,) attention-weighted distance, input pixels
    entropy: np.ndarray  # (heads,) mean row entropy, nats
    uniform_distance: float  # the distance uniform weights would give (same keys), pixels
    received: np.ndarray | None = None  # Lo-Fi only: (heads, Hp/s, Wp/s), mean weight per key

    @property
    def entropy_normalised(self) -> np.ndarray:
        """Entropy / log(#keys): 1 = uniform over the keys, 0 = one key. NaN with one key."""
        if self.num_keys < 2:
            return np.full_like(self.entropy, np.nan)
        return self.entropy / math.log(self.num_keys)

    def to_dict(self) -> dict[str, Any]:
        def clean(a):
            return [None if not np.isfinite(v) else float(v) for v in np.asarray(a).ravel()]

        d = {"branch": self.branch, "heads": self.heads, "num_keys": self.num_keys,
             "num_queries": self.num_queries, "mean_distance_px": clean(self.mean_distance),
             "entropy_nats": clean(self.entropy),
             "entropy_normalised": clean(self.entropy_normalised),
             "uniform_distance_px": float(self.uniform_distance)}
        if self.received is not None:
            d["attention_received"] = self.received.tolist()
        return d


@dataclass
class LayerSummary:
    geometry: LayerGeometry
    hifi: BranchSummary | None
    lofi: BranchSummary | None
    chunk_size: int = DEFAULT_CHUNK_SIZE

    def branches(self) -> list[BranchSummary]:
        return [b for b in (self.hifi, self.lofi) if b is not None]

    def to_dict(self) -> dict[str, Any]:
        g = self.geometry
        return {**g.to_dict(),
                "hifi_max_distance_px": g.hifi_max_distance if g.h_heads else None,
                "window_diagonal_px": g.window_diagonal if g.window_size > 1 else None,
                "hifi": None if self.hifi is None else self.hifi.to_dict(),
                "lofi": None if self.lofi is None else self.lofi.to_dict()}


def _real_query_index(g: LayerGeometry, device) -> torch.Tensor:
    """Flat indices into the padded Hp*Wp grid of the real tokens, row-major."""
    H, W = g.grid
    rows = torch.arange(H, device=device).unsqueeze(1)
    cols = torch.arange(W, device=device).unsqueeze(0)
    return (rows * g.padded[1] + cols).reshape(-1)  # (H*W,)


def summarise_lofi(qk: LayerQK, chunk_size: int = DEFAULT_CHUNK_SIZE) -> BranchSummary | None:
    """Lo-Fi per-head distance, entropy and attention received, `chunk_size` queries at a time."""
    if qk.lofi_q is None:
        return None
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    g = qk.geometry
    dev = qk.lofi_q.device
    heads, M = qk.lofi_k.shape[0], qk.lofi_k.shape[1]
    Wp = g.padded[1]
    t, s = g.stride, g.window_size
    Hk, Wk = g.pooled
    ki = torch.arange(M, device=dev)
    key_xy = torch.stack([(ki % Wk + 0.5) * s * t, (ki // Wk + 0.5) * s * t], -1).double()  # (M, 2)
    queries = _real_query_index(g, dev)
    dist_sum = torch.zeros(heads, dtype=torch.float64, device=dev)
    ent_sum = torch.zeros(heads, dtype=torch.float64, device=dev)
    received = torch.zeros(heads, M, dtype=torch.float64, device=dev)
    uniform_sum = 0.0
    k_t = qk.lofi_k.transpose(-2, -1)  # (h, d, M)
    for start in range(0, queries.numel(), chunk_size):
        idx = queries[start:start + chunk_size]  # (n,)
        q = qk.lofi_q[:, idx]  # (h, n, d)
        logp = torch.log_softmax((q @ k_t) * qk.scale, dim=-1)  # (h, n, M)
        p = logp.exp()  # (h, n, M)
        q_xy = torch.stack([(idx % Wp + 0.5) * t, (idx // Wp + 0.5) * t], -1).double()  # (n, 2)
        dist = torch.cdist(q_xy, key_xy).to(p.dtype)  # (n, M)
        dist_sum += (p * dist).sum(dim=(1, 2)).double()
        ent_sum += -(p * logp).sum(dim=(1, 2)).double()
        received += p.sum(dim=1).double()
        uniform_sum += float(dist.double().mean(-1).sum())
        del logp, p, dist
    n = queries.numel()
    return BranchSummary(
        branch="lofi", heads=list(range(g.h_heads, g.h_heads + heads)), num_keys=M,
        num_queries=n, mean_distance=(dist_sum / n).cpu().numpy(),
        entropy=(ent_sum / n).cpu().numpy(), uniform_distance=uniform_sum / n,
        received=(received / n).reshape(heads, Hk, Wk).cpu().numpy())


def summarise_hifi(qk: LayerQK, chunk_size: int = DEFAULT_CHUNK_SIZE) -> BranchSummary | None:
    """Hi-Fi per-head distance and entropy; windows in chunks of ~chunk_size query tokens."""
    if qk.hifi_q is None:
        return None
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    g = qk.geometry
    dev = qk.hifi_q.device
    G, heads, ss, _ = qk.hifi_q.shape
    s, t = g.window_size, g.stride
    H, W = g.grid
    Wg = g.pooled[1]
    pos = torch.arange(ss, device=dev)
    local_xy = torch.stack([(pos % s).double(), (pos // s).double()], -1) * t  # (s*s, 2)
    dist = torch.cdist(local_xy, local_xy)  # (s*s, s*s): same in every window
    wins = torch.arange(G, device=dev)
    row = (wins // Wg).unsqueeze(1) * s + pos // s  # (G, s*s) token rows
    col = (wins % Wg).unsqueeze(1) * s + pos % s  # (G, s*s)
    real = (row < H) & (col < W)  # (G, s*s) real query tokens
    dist_sum = torch.zeros(heads, dtype=torch.float64, device=dev)
    ent_sum = torch.zeros(heads, dtype=torch.float64, device=dev)
    per = max(1, chunk_size // ss)  # windows per chunk
    for start in range(0, G, per):
        q = qk.hifi_q[start:start + per]  # (g, h, s*s, d)
        k = qk.hifi_k[start:start + per]  # (g, h, s*s, d)
        logp = torch.log_softmax((q @ k.transpose(-2, -1)) * qk.scale, dim=-1)  # (g, h, ss, ss)
        p = logp.exp()
        mask = real[start:start + per].unsqueeze(1).double()  # (g, 1, s*s)
        dist_sum += ((p.double() * dist).sum(-1) * mask).sum(dim=(0, 2))
        ent_sum += (-(p * logp).sum(-1).double() * mask).sum(dim=(0, 2))
    n = int(real.sum())
    uniform = float((dist.mean(-1).unsqueeze(0) * real).sum() / n)
    return BranchSummary(branch="hifi", heads=list(range(heads)), num_keys=ss, num_queries=n,
                         mean_distance=(dist_sum / n).cpu().numpy(),
                         entropy=(ent_sum / n).cpu().numpy(), uniform_distance=uniform)


def summarise_layer(qk: LayerQK, chunk_size: int = DEFAULT_CHUNK_SIZE) -> LayerSummary:
    with torch.no_grad():
        return LayerSummary(geometry=qk.geometry, hifi=summarise_hifi(qk, chunk_size),
                            lofi=summarise_lofi(qk, chunk_size), chunk_size=chunk_size)


# ----------------------------------------------------------------------------------------------
# Full matrices (--save-raw)
# ----------------------------------------------------------------------------------------------


def raw_nbytes(g: LayerGeometry) -> int:
    """Bytes (float32) of a layer's full attention matrices, padded layout as the model's taps:
    Hi-Fi (G, h, s*s, s*s) and Lo-Fi (h, Hp*Wp, M)."""
    Hp, Wp = g.padded
    G = g.pooled[0] * g.pooled[1]
    hifi = G * g.h_heads * g.num_hifi_keys**2 if g.h_heads else 0
    lofi = g.l_heads * Hp * Wp * g.num_lofi_keys if g.l_heads else 0
    return 4 * (hifi + lofi)


def full_matrices(qk: LayerQK, chunk_size: int = DEFAULT_CHUNK_SIZE) -> dict[str, np.ndarray]:
    """The layer's whole softmax matrices as float32 numpy arrays, filled chunk by chunk (peak:
    the arrays themselves plus one chunk): {"hifi": (G, h, s*s, s*s), "lofi": (h, Hp*Wp, M)}.
    Rows of padded query positions are included, as the model computes them."""
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        if qk.hifi_q is not None:
            G, h, ss, _ = qk.hifi_q.shape
            arr = np.empty((G, h, ss, ss), dtype=np.float32)
            per = max(1, chunk_size // ss)
            for start in range(0, G, per):
                q, k = qk.hifi_q[start:start + per], qk.hifi_k[start:start + per]
                w = ((q @ k.transpose(-2, -1)) * qk.scale).softmax(-1)  # (g, h, ss, ss)
                arr[start:start + per] = w.float().cpu().numpy()
            out["hifi"] = arr
        if qk.lofi_q is not None:
            h, N, _ = qk.lofi_q.shape
            M = qk.lofi_k.shape[1]
            arr = np.empty((h, N, M), dtype=np.float32)
            k_t = qk.lofi_k.transpose(-2, -1)  # (h, d, M)
            for start in range(0, N, chunk_size):
                w = ((qk.lofi_q[:, start:start + chunk_size] @ k_t) * qk.scale).softmax(-1)
                arr[:, start:start + chunk_size] = w.float().cpu().numpy()  # (h, n, M)
            out["lofi"] = arr
    return out


@dataclass
class RawBudget:
    """Whether --save-raw fits: bytes needed vs allowed, and a resolution that would fit."""

    needed: int
    budget: int
    fitting_resolution: int | None = field(default=None)

    @property
    def fits(self) -> bool:
        return self.needed <= self.budget


def raw_budget(model, layers: list[int], input_size: tuple[int, int], budget: int,
               resolution: int, step: int = 32) -> RawBudget:
    """Bytes the full matrices of `layers` need for an input of input_size = (w, h); when over
    `budget`, the largest resolution (multiple of `step`, same aspect ratio, the shorter side =
    resolution) below `resolution` that fits."""
    def needed_for(size: tuple[int, int]) -> int:
        return sum(raw_nbytes(layer_geometry(model, i, size)) for i in layers)

    needed = needed_for(input_size)
    result = RawBudget(needed=needed, budget=budget)
    if needed <= budget:
        return result
    w, h = input_size
    short = min(w, h)
    r = (min(resolution, short) // step) * step
    while r >= model.min_input_size():
        size = (max(r, int(w * r / short)), max(r, int(h * r / short)))
        if needed_for(size) <= budget:
            result.fitting_resolution = r
            break
        r -= step
    return result


# ----------------------------------------------------------------------------------------------
# Which heads to show
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadColumn:
    """One column of a layer figure: a head, or the mean over several heads of one branch."""

    label: str
    branch: str  # "hifi" | "lofi"
    heads: tuple[int, ...]  # global head indices (Hi-Fi first)

    def select(self, g: LayerGeometry, hifi: np.ndarray | None,
               lofi: np.ndarray | None) -> np.ndarray:
        """Mean over this column's heads of per-branch stacks (heads, ...) of maps."""
        if self.branch == "hifi":
            return hifi[[h for h in self.heads]].mean(axis=0)
        return lofi[[h - g.h_heads for h in self.heads]].mean(axis=0)


def head_columns(g: LayerGeometry, spec: str | list[int]) -> list[HeadColumn]:
    """Columns for `--heads`: "all" (every head, then the mean of each branch with more than one
    head), "mean" (the mean of each branch), or a list of global head indices (ValueError naming
    the layer's heads if one does not exist)."""
    lo_name = "Lo-Fi" if g.window_size > 1 else "MSA"
    hifi_heads = tuple(range(g.h_heads))
    lofi_heads = tuple(range(g.h_heads, g.num_heads))

    def mean_columns(min_heads: int) -> list[HeadColumn]:
        cols = []
        if len(hifi_heads) >= min_heads and hifi_heads:
            cols.append(HeadColumn(f"Hi-Fi mean ({len(hifi_heads)} heads)", "hifi", hifi_heads))
        if len(lofi_heads) >= min_heads and lofi_heads:
            cols.append(HeadColumn(f"{lo_name} mean ({len(lofi_heads)} heads)", "lofi",
                                   lofi_heads))
        return cols

    if isinstance(spec, str):
        if spec == "all":
            return [HeadColumn(g.head_label(h), "hifi" if h < g.h_heads else "lofi", (h,))
                    for h in range(g.num_heads)] + mean_columns(2)
        if spec == "mean":
            return mean_columns(1)
        raise ValueError(f"heads must be 'all', 'mean' or a list of head indices, got {spec!r}")
    cols = []
    for h in spec:
        if not 0 <= h < g.num_heads:
            raise ValueError(f"head {h} does not exist in layer {g.index} ({g.name}), which has "
                             f"{g.num_heads} heads (0..{g.num_heads - 1}: "
                             + (f"Hi-Fi 0..{g.h_heads - 1}, " if g.h_heads else "")
                             + f"{lo_name} {g.h_heads}..{g.num_heads - 1})")
        cols.append(HeadColumn(g.head_label(h), "hifi" if h < g.h_heads else "lofi", (h,)))
    return cols
