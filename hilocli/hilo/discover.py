"""HiLo layers found by structure, in LITv2 or in any network.

A module is a HiLo layer when it owns the Hi-Fi projections (`h_qkv`, `h_proj`) and/or the Lo-Fi
ones (`l_q`, `l_kv`, `l_proj`) as `nn.Linear` layers whose shapes fit HiLo (h_qkv emits 3 x the
Hi-Fi channels, l_kv 2 x the Lo-Fi channels, both read the same C channels). Its window size comes
from `ws` / `window_size` (an int or an equal pair), else from an `nn.AvgPool2d` child, else 1 for
a Lo-Fi-only layer; its head dimension from `head_dim`, else `dim // num_heads`, else
`h_dim // h_heads` / `l_dim // l_heads`. Modules with the names but another structure (1x1
convolutions, other channel counts, rectangular windows) are reported as rejected, with the
reason, never analysed. LITv2 is found the same way; its config adds, as metadata, each layer's
stage, block name and token stride (`LayerMeta`); other models get `stage=None`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch.nn as nn

from hilocli.errors import HiloError
from hilocli.hilo.layer import HiLoLayer
from hilocli.models.geometry import HiLoLayerInfo

HIFI = ("h_qkv", "h_proj")
LOFI = ("l_q", "l_kv", "l_proj")


@dataclass(frozen=True)
class Rejected:
    """A module with HiLo's sub-layer names that is not analysed, and why."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class LayerMeta:
    """What a config says of a found layer (LITv2): its stage, block name and token stride."""

    stage: int
    name: str
    stride: int


def find_layers(
    model: nn.Module, meta: list[LayerMeta] | None = None
) -> tuple[list[HiLoLayer], list[Rejected]]:
    """(HiLo layers in registration order, look-alikes rejected with a reason) of any model; the
    position in the list is what `--layer` takes. `meta`, one entry per layer, annotates them."""
    found, rejected = [], []
    for path, module in model.named_modules():
        if not any(isinstance(getattr(module, n, None), nn.Module) for n in HIFI + LOFI):
            continue
        info = layer_info(module, index=len(found), path=path)
        if isinstance(info, str):
            rejected.append(Rejected(path or "(the model)", info))
        else:
            found.append(_layer(module, info))
    if meta is not None:
        if len(meta) != len(found):
            raise HiloError(
                f"the model's config has {len(meta)} attention layers, its structure {len(found)}"
            )
        found = [
            HiLoLayer(replace(f.info, stage=m.stage, name=m.name), f.module, f.channels, f.scale,
                      m.stride)
            for f, m in zip(found, meta)
        ]  # fmt: skip
    return found, rejected


def _layer(module: nn.Module, info: HiLoLayerInfo) -> HiLoLayer:
    channels = (getattr(module, "h_qkv", None) or module.l_q).in_features
    scale = getattr(module, "scale", None)
    scale = float(scale) if isinstance(scale, (int, float)) else info.head_dim**-0.5
    return HiLoLayer(info, module, channels, scale)


def no_layers_error(rejected: list[Rejected]) -> HiloError:
    """The one error for a model without HiLo layers, naming the first look-alike's reason."""
    why = f" ({rejected[0].path}: {rejected[0].reason})" if rejected else ""
    return HiloError(
        "no HiLo layer found in the model: no sub-module with nn.Linear h_qkv/h_proj or "
        f"l_q/l_kv/l_proj projections{why}"
    )


def _int_attr(module: nn.Module, *names: str) -> int | None:
    for name in names:
        value = getattr(module, name, None)
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
            if len(set(value)) != 1:
                raise ValueError(f"rectangular {name} {list(value)} (HiLo windows are square)")
            value = value[0]
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _linears(module: nn.Module, names: tuple[str, ...]) -> dict[str, nn.Linear] | str | None:
    present = {n: getattr(module, n, None) for n in names}
    if all(v is None for v in present.values()):
        return None
    missing = [n for n, v in present.items() if v is None]
    if missing:
        return f"has {', '.join(n for n in names if n not in missing)} but no {', '.join(missing)}"
    kinds = {n: type(v).__name__ for n, v in present.items() if not isinstance(v, nn.Linear)}
    if kinds:
        n, k = next(iter(kinds.items()))
        return f"{n} is a {k}, not a Linear (same names, other structure)"
    return present


def layer_info(module: nn.Module, index: int, path: str) -> HiLoLayerInfo | str:
    """The HiLoLayerInfo of a module, or the reason it is not a HiLo layer."""
    hifi, lofi = _linears(module, HIFI), _linears(module, LOFI)
    for part in (hifi, lofi):
        if isinstance(part, str):
            return part
    if hifi is None and lofi is None:
        return "no Hi-Fi or Lo-Fi projections"
    h_dim = hifi["h_proj"].in_features if hifi else 0
    l_dim = lofi["l_q"].out_features if lofi else 0
    dims = {m.in_features for m in (hifi or {}).values() if m is not hifi["h_proj"]}
    if lofi:
        dims |= {lofi["l_q"].in_features, lofi["l_kv"].in_features}
    if len(dims) != 1:
        return f"its q/k/v projections read different channel counts {sorted(dims)}"
    if hifi and (hifi["h_qkv"].out_features != 3 * h_dim or hifi["h_proj"].out_features != h_dim):
        return f"h_qkv emits {hifi['h_qkv'].out_features} channels, not 3 x h_proj's {h_dim}"
    if lofi and (lofi["l_kv"].out_features != 2 * l_dim or lofi["l_proj"].in_features != l_dim):
        return f"l_kv emits {lofi['l_kv'].out_features} channels, not 2 x l_q's {l_dim}"
    try:
        ws = _int_attr(module, "ws", "window_size")
        head_dim = _head_dim(module, h_dim, l_dim)
    except ValueError as exc:
        return str(exc)
    if ws is None:
        pool = next((m for m in module.children() if isinstance(m, nn.AvgPool2d)), None)
        k = getattr(pool, "kernel_size", None)
        ws = k if isinstance(k, int) else None
    if ws is None:
        if hifi:
            return "no window size attribute (ws or window_size) and no AvgPool2d"
        ws = 1
    if ws < 1 or (hifi and ws < 2):
        return f"window size {ws} does not fit a Hi-Fi branch"
    if head_dim is None or h_dim % head_dim or l_dim % head_dim:
        return (
            f"head dimension unknown or not dividing {h_dim} Hi-Fi / {l_dim} Lo-Fi channels "
            "(give the module a head_dim, or num_heads and dim)"
        )
    hifi_heads, lofi_heads = h_dim // head_dim, l_dim // head_dim
    return HiLoLayerInfo(
        index=index,
        name=path,
        path=path,
        stage=None,
        window_size=ws,
        num_heads=hifi_heads + lofi_heads,
        hifi_heads=hifi_heads,
        lofi_heads=lofi_heads,
        head_dim=head_dim,
    )


def _head_dim(module: nn.Module, h_dim: int, l_dim: int) -> int | None:
    d = _int_attr(module, "head_dim")
    if d:
        return d
    heads = _int_attr(module, "num_heads")
    dim = _int_attr(module, "dim")
    if heads and (dim or h_dim + l_dim) % heads == 0:
        return (dim or h_dim + l_dim) // heads
    for channels, name in ((h_dim, "h_heads"), (l_dim, "l_heads")):
        n = _int_attr(module, name)
        if n and channels and channels % n == 0:
            return channels // n
    return None
