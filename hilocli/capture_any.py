"""Capture for HiLo layers inside any model (found by `hilocli.models.discover`), with hooks only.

A pre-hook on the HiLo module reads its input whatever the signature (`hilo_any.input_grid`);
hooks on `h_proj` / `l_proj` take the branch outputs and place them on the token grid
(`hilo_any.branch_grid`: padding cropped, windows merged). A pre-hook on the model records the
input image size. With attn=True the attention weights are recomputed through the module's own
projections and checked to reproduce the captured branch outputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from hilocli.capture import Capture, LayerCapture, kept
from hilocli.errors import HiloError
from hilocli.models.discover import hilo_layers
from hilocli.models.hilo_any import branch_grid, input_grid, matching_recompute


@contextmanager
def capture_any(
    model: torch.nn.Module, layers: list[int], attn: bool = False, keep_on_device: bool = True
) -> Iterator[Capture]:
    infos = hilo_layers(model)
    for i in layers:
        if not 0 <= i < len(infos):
            raise ValueError(f"layer index {i} out of range 0..{len(infos) - 1}")
    cap, handles, image = Capture(), [], {}

    def keep(t: torch.Tensor) -> torch.Tensor:
        return kept(t, keep_on_device)

    def on_model(_mod, args, kwargs):
        x = args[0] if args else next(iter(kwargs.values()), None)
        if torch.is_tensor(x) and x.ndim == 4:
            image["size"] = (int(x.shape[-2]), int(x.shape[-1]))

    def on_input(rec: LayerCapture, channels: int):
        def hook(_mod, args, kwargs):
            grid, signature = input_grid(rec.layer, channels, args, kwargs)  # (B, H, W, C)
            rec.grid = (int(grid.shape[1]), int(grid.shape[2]))
            rec.control, rec.signature = grid.detach(), signature
            rec.input_size = image.get("size")
            rec.hifi_out = rec.lofi_out = None

        return hook

    def on_output(rec: LayerCapture, attr: str):
        def hook(_mod, _args, out):
            if rec.grid is None:
                raise HiloError(f"layer {rec.layer.index}: {attr} ran before the layer's input")
            what = f"layer {rec.layer.index} ({rec.layer.path}) {attr}"
            placed = branch_grid(out, rec.control.shape[0], rec.grid, rec.layer.window_size, what)
            setattr(rec, attr, placed.detach())

        return hook

    def finish(rec: LayerCapture, module):
        def hook(_mod, _args, _kwargs, _out):
            if attn:
                with torch.no_grad():
                    _, _, hp, lp = matching_recompute(
                        module, rec.layer, rec.control, rec.hifi_out, rec.lofi_out
                    )
                rec.hifi_attn = None if hp is None else keep(hp)
                rec.lofi_attn = None if lp is None else keep(lp)
            for attr in ("control", "hifi_out", "lofi_out"):
                t = getattr(rec, attr)
                setattr(rec, attr, None if t is None else keep(t.contiguous()))

        return hook

    try:
        handles.append(model.register_forward_pre_hook(on_model, with_kwargs=True))
        for i in layers:
            info = infos[i]
            module = model.get_submodule(info.path)
            channels = (getattr(module, "h_qkv", None) or module.l_q).in_features
            rec = LayerCapture(layer=info)
            cap.records[i] = rec
            handles.append(
                module.register_forward_pre_hook(on_input(rec, channels), with_kwargs=True)
            )
            for proj, attr in (("h_proj", "hifi_out"), ("l_proj", "lofi_out")):
                if info.hifi_heads if proj == "h_proj" else info.lofi_heads:
                    sub = getattr(module, proj)
                    handles.append(sub.register_forward_hook(on_output(rec, attr)))
            handles.append(module.register_forward_hook(finish(rec, module), with_kwargs=True))
        yield cap
    finally:
        for h in handles:
            h.remove()
