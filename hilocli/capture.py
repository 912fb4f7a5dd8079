"""Record what HiLo layers compute, with forward hooks only (no code patching).

    with capture(model, layers=[3], attn=True) as cap:
        model(images)
    rec = cap.records[3]
    rec.hifi_out   # (B, H, W, h_dim)  Hi-Fi output after h_proj, padding cropped
    rec.lofi_out   # (B, H, W, l_dim)  Lo-Fi output after l_proj, padding cropped
    rec.control    # (B, H, W, C)      the layer's input (norm1 output): what went in
    rec.hifi_attn  # (B, G, h, s*s, s*s) softmax weights per window        (attn=True only)
    rec.lofi_attn  # (B, h, Hp*Wp, M)    softmax weights over pooled keys  (attn=True only)

The model keeps its own (fused) attention path while capturing, so its outputs are bit-identical
with and without capture; attention weights are recomputed from the layer's own projections on the
same input. Hooks are removed on exit, also after an error. Each forward pass overwrites the
records.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from hilocli.models.geometry import HiLoLayerInfo
from hilocli.models.litv2 import HiLo, LITv2, attention_probs


def kept(t: torch.Tensor, on_device: bool = True) -> torch.Tensor:
    """A captured tensor as analysis takes it: detached, float32 when an autocast forward made it
    float16/bfloat16 (analysis never runs in reduced precision), on the CPU unless on_device."""
    t = t.detach()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    return t if on_device else t.cpu()


@dataclass
class LayerCapture:
    layer: HiLoLayerInfo  # index (what `--layer` takes), name, window size, head counts
    grid: tuple[int, int] | None = None  # (H, W) of the token grid, before padding
    control: torch.Tensor | None = None  # (B, H, W, C)
    hifi_out: torch.Tensor | None = None  # (B, H, W, h_dim)
    lofi_out: torch.Tensor | None = None  # (B, H, W, l_dim)
    hifi_attn: torch.Tensor | None = None  # (B, G, h, s*s, s*s)
    lofi_attn: torch.Tensor | None = None  # (B, h, Hp*Wp, M)
    signature: str | None = None  # how the module took its input (any model; None for LITv2)
    input_size: tuple[int, int] | None = None  # (H, W) pixels of the model input (any model)


@dataclass
class Capture:
    records: dict[int, LayerCapture] = field(default_factory=dict)


def attention_weights(
    layer: HiLo, grid: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Softmax weights of both branches for an unpadded grid (B, H, W, C) -> (hifi, lofi)."""
    padded = layer.pad(grid)  # (B, Hp, Wp, C)
    hifi = lofi = None
    if layer.h_heads > 0:
        q, k, _ = layer.hifi_qkv(padded)  # (B, G, h, s*s, d)
        hifi = attention_probs(q, k, layer.scale)  # (B, G, h, s*s, s*s)
    if layer.l_heads > 0:
        q, k, _ = layer.lofi_qkv(padded)  # q (B, h, N, d), k (B, h, M, d)
        lofi = attention_probs(q, k, layer.scale)  # (B, h, N, M)
    return hifi, lofi


@contextmanager
def capture(
    model: LITv2, layers: list[int], attn: bool = False, keep_on_device: bool = True
) -> Iterator[Capture]:
    """Record branch outputs (and, with attn=True, attention weights) of the chosen HiLo layers.

    `layers` are indices into model.hilo_layers(). keep_on_device=False moves records to the CPU.
    Models that do not describe their own HiLo layers (`hilo_layers()`, `hilo_module()` and
    `hifi_out`/`lofi_out` taps, as LITv2 does) go through `hilocli.capture_any` (HiLo found by
    structure).
    """
    if not isinstance(model, LITv2) and not hasattr(model, "hilo_module"):
        from hilocli.capture_any import capture_any

        with capture_any(model, layers, attn, keep_on_device) as cap:
            yield cap
        return
    all_layers = model.hilo_layers()
    for i in layers:
        if not 0 <= i < len(all_layers):
            raise ValueError(f"layer index {i} out of range 0..{len(all_layers) - 1}")
    cap = Capture()
    handles = []

    def keep(t: torch.Tensor) -> torch.Tensor:
        return kept(t, keep_on_device)  # autocast forward: analysed in float32

    def on_input(rec: LayerCapture, layer: HiLo):
        def hook(_mod, args):
            x, H, W = args[0], int(args[1]), int(args[2])
            B, _, C = x.shape
            grid = x.detach().reshape(B, H, W, C)  # (B, H, W, C)
            rec.grid = (H, W)
            rec.control = keep(grid)
            if attn:
                with torch.no_grad():
                    hifi, lofi = attention_weights(layer, grid)
                rec.hifi_attn = None if hifi is None else keep(hifi)
                rec.lofi_attn = None if lofi is None else keep(lofi)

        return hook

    def on_output(rec: LayerCapture, attr: str):
        def hook(_mod, _args, out):
            setattr(rec, attr, keep(out))

        return hook

    try:
        for i in layers:
            info = all_layers[i]
            layer = model.hilo_module(info)
            rec = LayerCapture(layer=info)
            cap.records[i] = rec
            handles.append(layer.register_forward_pre_hook(on_input(rec, layer)))
            handles.append(layer.hifi_out.register_forward_hook(on_output(rec, "hifi_out")))
            handles.append(layer.lofi_out.register_forward_hook(on_output(rec, "lofi_out")))
        yield cap
    finally:
        for h in handles:
            h.remove()
