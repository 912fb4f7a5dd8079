"""Record what HiLo layers compute, in any model, with hooks only (no code patching).

    with capture(model, [layer], attn=True, stop_early=True) as cap:
        cap.forward(model, images)
    rec = cap.records[layer.index]
    rec.control    # (B, H, W, C)      the layer's input: what went in
    rec.hifi_out   # (B, H, W, h_dim)  Hi-Fi output after h_proj, padding cropped
    rec.lofi_out   # (B, H, W, l_dim)  Lo-Fi output after l_proj, padding cropped
    rec.pooling    # "pad" | "floor": the rule that reproduced the outputs (attn or verify only)
    rec.hifi_attn  # (B, G, h, s*s, s*s) softmax weights per window         (attn=True only)
    rec.lofi_attn  # (B, h, Nq, M)       softmax weights over pooled keys   (attn=True only)

A pre-hook on the HiLo module reads its input whatever the signature; hooks on `h_proj` / `l_proj`
place the branch outputs on the token grid; a pre-hook on the model records the input image size.
The model keeps its own (fused) attention path, so its outputs are the same with and without
capture. With attn=True (or verify=True) the attention is recomputed through the layer's own
projections and must reproduce the captured branch outputs (`HiLoLayer.pooling_rule`). Hooks are
removed on exit, also after an error. Each forward pass overwrites the records. With
stop_early, `cap.forward(model, x)` ends the forward once every captured layer has finished
(the stages after the last one are not run); a layer module called twice in one forward is then
recorded at its first call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from hilocli.errors import HiloError
from hilocli.hilo.layer import HiLoLayer
from hilocli.models.geometry import HiLoLayerInfo


def kept(t: torch.Tensor | None, on_device: bool = True) -> torch.Tensor | None:
    """A captured tensor as analysis takes it: detached, float32 when an autocast forward made it
    float16/bfloat16 (analysis never runs in reduced precision), on the CPU unless on_device."""
    if t is None:
        return None
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
    lofi_attn: torch.Tensor | None = None  # (B, h, Nq, M)
    pooling: str | None = None  # the pooling rule that reproduced the outputs
    signature: str | None = None  # how the module took its input
    input_size: tuple[int, int] | None = None  # (H, W) pixels of the model input


class _AllFinished(Exception):
    """Raised out of a forward by the hook of the last captured layer to finish (stop_early)."""


@dataclass
class Capture:
    records: dict[int, LayerCapture] = field(default_factory=dict)
    stop_early: bool = False  # `forward` ends once every captured layer has finished
    finished: set[int] = field(default_factory=set)  # the layers finished in this forward

    def forward(self, model: torch.nn.Module, *args: Any) -> Any:
        """model(*args); with stop_early it ends as soon as every captured layer has finished,
        since nothing the model computes after them is recorded, and returns None (a layer that
        does not run leaves the forward whole)."""
        self.finished.clear()
        try:
            return model(*args)
        except _AllFinished:
            return None


@contextmanager
def capture(
    model: torch.nn.Module,
    layers: list[HiLoLayer],
    attn: bool = False,
    keep_on_device: bool = True,
    verify: bool = False,
    stop_early: bool = False,
) -> Iterator[Capture]:
    """Record inputs and branch outputs (with attn=True also attention weights) of `layers`;
    with stop_early, run the model through `Capture.forward`, which stops after the last of
    them."""
    cap, handles, image = Capture(stop_early=stop_early), [], {}

    def on_model(_mod, args, kwargs):
        x = args[0] if args else next(iter(kwargs.values()), None)
        if torch.is_tensor(x) and x.ndim == 4:
            image["size"] = (int(x.shape[-2]), int(x.shape[-1]))

    try:
        handles.append(model.register_forward_pre_hook(on_model, with_kwargs=True))
        for layer in layers:
            rec = cap.records[layer.index] = LayerCapture(layer=layer.info)
            handles += _layer_hooks(layer, rec, image, attn, verify, keep_on_device, cap)
        yield cap
    finally:
        for h in handles:
            h.remove()


def _layer_hooks(
    layer: HiLoLayer, rec: LayerCapture, image: dict, attn, verify, on_device, cap: Capture
):
    """The hooks of one layer: its input, its branch outputs, and the finish after its forward
    (which ends the forward when it is the last layer of a stop_early capture to finish)."""

    def on_input(_mod, args, kwargs):
        grid, rec.signature = layer.read_input(args, kwargs)  # (B, H, W, C)
        rec.grid = (int(grid.shape[1]), int(grid.shape[2]))
        rec.control, rec.input_size = grid.detach(), image.get("size")
        rec.hifi_out = rec.lofi_out = None

    def on_output(attr: str):
        def hook(_mod, _args, out):
            if rec.grid is None:
                raise HiloError(f"layer {layer.index}: {attr} ran before the layer's input")
            placed = layer.place_output(out, rec.control.shape[0], rec.grid, attr)
            setattr(rec, attr, placed.detach())

        return hook

    def finish(_mod, _args, _kwargs, _out):
        if attn or verify:
            with torch.no_grad():
                rec.pooling, got = layer.pooling_rule(
                    rec.control, rec.hifi_out, rec.lofi_out, keep_attn=attn
                )  # verify alone: fused attention, no whole matrix built
            if attn:
                rec.hifi_attn = kept(got.hifi_attn, on_device)
                rec.lofi_attn = kept(got.lofi_attn, on_device)
        for attr in ("control", "hifi_out", "lofi_out"):
            t = getattr(rec, attr)
            setattr(rec, attr, None if t is None else kept(t.contiguous(), on_device))
        cap.finished.add(layer.index)
        if cap.stop_early and len(cap.finished) == len(cap.records):
            raise _AllFinished

    module, info = layer.module, layer.info
    handles = [module.register_forward_pre_hook(on_input, with_kwargs=True)]
    for proj, attr, heads in (("h_proj", "hifi_out", info.hifi_heads),
                              ("l_proj", "lofi_out", info.lofi_heads)):  # fmt: skip
        if heads:
            handles.append(getattr(module, proj).register_forward_hook(on_output(attr)))
    handles.append(module.register_forward_hook(finish, with_kwargs=True))
    return handles


def probe(
    model: torch.nn.Module, layers: list[HiLoLayer], in_channels: int, height: int, width: int
) -> dict[int, LayerCapture]:
    """The records of one forward of a (1, C, height, width) zero image: every layer's grid and
    signature. It runs on the meta device (shapes only, no arithmetic, no memory) through
    `torch.func.functional_call`; a model whose forward needs real values (data-dependent
    code) runs for real on its own device."""
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    meta = {name: t.to("meta") for name, t in tensors.items()}
    with torch.no_grad():
        try:
            x = torch.zeros(1, in_channels, height, width, device="meta")
            with capture(model, layers) as cap:
                torch.func.functional_call(model, meta, (x,))
            return cap.records
        except (NotImplementedError, RuntimeError):  # an op without a meta kernel, or .item()
            device = next(iter(tensors.values())).device if tensors else "cpu"
            x = torch.zeros(1, in_channels, height, width, device=device)
            with capture(model, layers) as cap:
                model(x)
            return cap.records
