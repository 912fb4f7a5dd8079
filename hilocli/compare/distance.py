"""Hi-Fi and Lo-Fi mean attention distance of one model over a few images, from `hilo attn-map`'s
own per-head summaries (`hilocli.attn_map.summaries.summarise_layer`), averaged over heads,
layers and images.

Unit: model-input pixels (the image as the model saw it, after resize and crop), exactly the
`mean_distance_px` of `hilo attn-map`. NaN (never 0) for a branch no compared layer has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hilocli.attn_map.maps import layer_qk
from hilocli.attn_map.summaries import summarise_layer
from hilocli.hilo.capture import capture
from hilocli.images import load_prepared
from hilocli.runtime import forward_context, to_device

BRANCHES = ("hifi", "lofi")


@dataclass
class AttentionDistance:
    """Per image and layer, each branch's mean over its heads of the mean attention distance."""

    layers: list[int]  # HiLo layer indices averaged over
    images: list[str]  # the images it rests on, in order
    per_image: dict[str, np.ndarray]  # branch -> (n_images, n_layers) px; NaN: no such branch
    uniform: dict[str, np.ndarray]  # branch -> (n_images, n_layers) px with uniform weights
    unit: str = "px"
    heads: dict[str, list[int]] = field(default_factory=dict)  # branch -> heads per layer

    @property
    def n(self) -> int:
        return len(self.images)

    def mean(self, branch: str, which: str = "model") -> float:
        """Mean over images and layers (NaN when the branch is absent or there are no images)."""
        values = (self.per_image if which == "model" else self.uniform)[branch]
        finite = values[np.isfinite(values)]
        return float(finite.mean()) if finite.size else math.nan

    def per_layer(self, branch: str) -> list[float]:
        values = self.per_image[branch]
        return [
            float(np.mean(c[np.isfinite(c)])) if np.isfinite(c).any() else math.nan
            for c in values.T
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": "model-input pixels",
            "n_images": self.n,
            "images": self.images,
            "layers": self.layers,
            **{f"{b}_px": self.mean(b) for b in BRANCHES},
            **{f"{b}_uniform_px": self.mean(b, "uniform") for b in BRANCHES},
            "per_layer": {f"{b}_px": self.per_layer(b) for b in BRANCHES},
            "heads_per_layer": self.heads,
            "per_image": {f"{b}_px": self.per_image[b] for b in BRANCHES},
        }


def _groups(sizes: list[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Indices of equal-size images in batches of at most batch_size, first appearance first."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for k, size in enumerate(sizes):
        by_size.setdefault(size, []).append(k)
    return [
        rows[i : i + batch_size]
        for rows in by_size.values()
        for i in range(0, len(rows), batch_size)
    ]


def empty_distance(layers: list[int]) -> AttentionDistance:
    """No image analysed (`--attn-images 0`): every mean is NaN."""
    nan = np.full((0, len(layers)), np.nan)
    return AttentionDistance(layers, [], {b: nan for b in BRANCHES}, {b: nan for b in BRANCHES})


def attention_distance(
    loaded: Any,
    layers: list[int],
    paths: list[str],
    resolution: int,
    crop: bool,
    device: Any,
    precision: Any,
    batch_size: int = 16,
) -> AttentionDistance:
    """Forwards (images of one size batched) with the layers' inputs captured, then attn-map's
    chunked summaries, one image at a time.

    `loaded` is a `LoadedModel`; images are prepared as `hilo spectrum` prepares them."""
    if not paths:
        return empty_distance(layers)
    chosen = [loaded.layers[i] for i in layers]
    infos = [layer.info for layer in chosen]
    values = {b: np.full((len(paths), len(layers)), np.nan) for b in BRANCHES}
    uniform = {b: np.full((len(paths), len(layers)), np.nan) for b in BRANCHES}
    prepared = [
        load_prepared(Path(p), resolution, crop=crop, preprocess=loaded.preprocess) for p in paths
    ]
    for rows in _groups([p.input_size for p in prepared], batch_size):
        x = to_device(torch.stack([prepared[r].tensor for r in rows]), device)  # (B, 3, H, W)
        with (
            forward_context(precision),
            capture(loaded.model, chosen, verify=True, stop_early=True) as cap,
        ):
            cap.forward(loaded.model, x)
        size = prepared[rows[0]].input_size
        for col, layer in enumerate(chosen):
            rec = cap.records[layer.index]
            g = layer.geometry(rec.grid, size, rec.pooling)
            for b, row in enumerate(rows):
                summary = summarise_layer(layer_qk(layer, rec.control[b : b + 1], g))
                for branch in BRANCHES:
                    s = getattr(summary, branch)
                    if s is not None:
                        values[branch][row, col] = float(np.mean(s.mean_distance))
                        uniform[branch][row, col] = float(s.uniform_distance)
        del cap, x
    heads = {
        "hifi": [i.hifi_heads for i in infos],
        "lofi": [i.lofi_heads for i in infos],
    }
    return AttentionDistance(list(layers), list(paths), values, uniform, heads=heads)
