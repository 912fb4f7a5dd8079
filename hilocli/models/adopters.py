"""Other libraries' LITv2 checkpoints (OpenMixup's `LIT`, birder's `lit_v2_*`) in the authors' keys.

The mappings are those of ../shared/HILO_ADOPTERS.md. birder's is a pure renaming. OpenMixup drops
the token-merging conv bias (mmcv's deformable conv has none; the BatchNorm that follows absorbed
it into its running mean), so the authors' `dconv.bias` becomes zero and the running mean is kept:
BN(conv + 0) with OpenMixup's statistics is exactly what OpenMixup computes. OpenMixup's layer-scale
vectors (`gamma`, `gamma_1`, `gamma_2`) are folded into the projection that precedes them (fc2,
h_proj/l_proj), which is exact. Anything else without a slot in the authors' model (birder's
`mlp_head`, OpenMixup's MHSA stages, several output norms) is refused naming the difference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from hilocli.errors import HiloError

__all__ = ["detect_layout", "to_authors", "unwrap"]

_WRAPPERS = ("model", "state_dict", "state", "model_state", "module")  # first found wins


def unwrap(obj: object) -> dict[str, Any] | None:
    """The tensors of a checkpoint, unwrapped from up to three nested {"model"}/{"state_dict"}/
    {"state"}/... wrappers (the one unwrapping rule for every loader); None if the object holds
    no string-keyed tensors."""
    sd = obj
    for _ in range(3):
        if isinstance(sd, Mapping) and not any(torch.is_tensor(v) for v in sd.values()):
            sd = next((sd[k] for k in _WRAPPERS if isinstance(sd.get(k), Mapping)), None)
    if not isinstance(sd, Mapping):
        return None
    tensors = {k: v for k, v in sd.items() if isinstance(k, str) and torch.is_tensor(v)}
    return tensors or None


def _strip(sd: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in sd.items()}


def detect_layout(sd: Mapping[str, Any]) -> str | None:
    """ "openmixup", "birder" or None (the authors' layout or something else) from key names."""
    keys = [re.sub(r"^(module\.)+", "", k) for k in sd]
    if any(re.match(r"(backbone\.)?patch_embed1\.projection\.weight$", k) for k in keys):
        return "openmixup"
    if "stem.0.weight" in keys and any(k.startswith("body.stage1.") for k in keys):
        return "birder"
    return None


def to_authors(obj: object) -> tuple[dict[str, Any], str | None]:
    """(state dict in the authors' names, source layout or None). Files in neither adopter layout
    come back unwrapped but unchanged (the caller's own filtering applies)."""
    sd = unwrap(obj)
    if sd is None:
        return {}, None
    layout = detect_layout(sd)
    sd = _strip(sd, "module.")
    if layout == "openmixup":
        return _from_openmixup(sd), layout
    if layout == "birder":
        return _from_birder(sd), layout
    return dict(sd), None


# ----------------------------------------------------------------------------------------------
# birder
# ----------------------------------------------------------------------------------------------


def _from_birder(sd: dict[str, Any]) -> dict[str, Any]:
    rules = [
        (r"stem\.0\.(.+)$", lambda m: f"patch_embed.proj.{m[1]}"),
        (r"stem\.2\.(.+)$", lambda m: f"patch_embed.norm.{m[1]}"),
        (r"features\.0\.(.+)$", lambda m: f"norm.{m[1]}"),
        (r"classifier\.(weight|bias)$", lambda m: f"head.{m[1]}"),
        (
            r"body\.stage(\d+)\.downsample\.deform_conv\.(.+)$",
            lambda m: f"layers.{int(m[1]) - 2}.downsample.dconv.{m[2]}",
        ),
        (
            r"body\.stage(\d+)\.downsample\.offset_conv\.(.+)$",
            lambda m: f"layers.{int(m[1]) - 2}.downsample.dconv.conv_offset.{m[2]}",
        ),
        (
            r"body\.stage(\d+)\.downsample\.norm\.(.+)$",
            lambda m: f"layers.{int(m[1]) - 2}.downsample.norm_layer.{m[2]}",
        ),
        (
            r"body\.stage(\d+)\.blocks\.(\d+)\.mlp\.dwconv\.(.+)$",
            lambda m: f"layers.{int(m[1]) - 1}.blocks.{m[2]}.mlp.dwconv.dwconv.{m[3]}",
        ),
        (
            r"body\.stage(\d+)\.blocks\.(\d+)\.norm\.(.+)$",
            lambda m: f"layers.{int(m[1]) - 1}.blocks.{m[2]}.norm2.{m[3]}",
        ),
        (
            r"body\.stage(\d+)\.blocks\.(\d+)\.((?:norm1|norm2|attn|mlp\.fc1|mlp\.fc2)\..+)$",
            lambda m: f"layers.{int(m[1]) - 1}.blocks.{m[2]}.{m[3]}",
        ),
    ]
    out, unknown = {}, []
    for key, value in sd.items():
        for pattern, name in rules:
            if m := re.match(pattern, key):
                out[name(m)] = value
                break
        else:
            unknown.append(key)
    if any(k.startswith("classifier.") for k in unknown):
        raise HiloError(
            "birder checkpoint with an MLP classifier head (mlp_head=True: "
            f"{', '.join(k for k in unknown if k.startswith('classifier.'))[:120]}); the authors' "
            "LITv2 has a single Linear head, so this model cannot be reproduced"
        )
    if unknown:
        raise HiloError(_no_slot("birder", unknown))
    return out


# ----------------------------------------------------------------------------------------------
# OpenMixup
# ----------------------------------------------------------------------------------------------


def _no_slot(layout: str, keys: list[str]) -> str:
    more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
    return (
        f"{layout} checkpoint has tensors without a place in the authors' LITv2: "
        f"{', '.join(keys[:3])}{more}"
    )


def _from_openmixup(sd: dict[str, Any]) -> dict[str, Any]:
    head = {k: v for k, v in sd.items() if k.startswith("head.")}
    extra = [k for k in head if not re.match(r"head\.fc\.(weight|bias)$", k)]
    sd = _strip({k: v for k, v in sd.items() if not k.startswith("head.")}, "backbone.")
    attn_stages = {int(m[1]) for k in sd if (m := re.match(r"blocks(\d+)\.\d+\.attn\.", k))}
    msa = [k for k in sd if re.match(r"blocks\d+\.\d+\.attn\.(qkv|proj|q|kv)\.", k)]
    if msa:
        raise HiloError(
            "OpenMixup checkpoint with MHSA attention stages (attention_types 'MHSA': "
            f"{msa[0]}); only HiLo stages ('HiLo') exist in the authors' LITv2"
        )
    norms = sorted({m[1] for k in sd if (m := re.match(r"norm(\d+)\.", k))})
    if len(norms) > 1:
        raise HiloError(
            f"OpenMixup backbone with {len(norms)} output norms (norm{', norm'.join(norms)}: "
            "out_indices with several stages); the authors' LITv2 has one final norm"
        )
    out: dict[str, Any] = {}
    gammas: dict[str, Any] = {}
    unknown = list(extra)
    for key, value in sd.items():
        if m := re.match(r"patch_embed1\.projection\.(.+)$", key):
            out[f"patch_embed.proj.{m[1]}"] = value
        elif m := re.match(r"patch_embed1\.norm\.(.+)$", key):
            out[f"patch_embed.norm.{m[1]}"] = value
        elif m := re.match(r"patch_embed(\d+)\.dconv\.(weight|conv_offset\..+)$", key):
            i = int(m[1]) - 2
            out[f"layers.{i}.downsample.dconv.{m[2]}"] = value
            if m[2] == "weight":  # mmcv's deformable conv has no bias: BN absorbed it
                out[f"layers.{i}.downsample.dconv.bias"] = torch.zeros(value.shape[0])
        elif m := re.match(r"patch_embed(\d+)\.norm\.(.+)$", key):
            out[f"layers.{int(m[1]) - 2}.downsample.norm_layer.{m[2]}"] = value
        elif m := re.match(r"norm\d+\.(weight|bias)$", key):
            out[f"norm.{m[1]}"] = value
        elif m := re.match(r"blocks(\d+)\.(\d+)\.(.+)$", key):
            s, j, rest = int(m[1]), m[2], m[3]
            pre = f"layers.{s - 1}.blocks.{j}."
            if rest.startswith(("gamma_1", "gamma_2")) or rest == "gamma":
                gammas[pre + rest] = value
            elif n := re.match(r"ln([12])\.(.+)$", rest):
                norm = "norm2" if s not in attn_stages or n[1] == "2" else "norm1"
                out[f"{pre}{norm}.{n[2]}"] = value
            elif n := re.match(r"ffn\.(.+)$", rest):
                out[f"{pre}mlp.{n[1]}"] = value
            elif rest.startswith("attn."):
                out[pre + rest] = value
            else:
                unknown.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise HiloError(_no_slot("OpenMixup", unknown))
    for key, value in head.items():
        out[key.replace("head.fc.", "head.")] = value
    _fold_gammas(out, gammas)
    return out


def _fold_gammas(out: dict[str, Any], gammas: dict[str, Any]) -> None:
    """Layer scale y = gamma * f(x) folded into f's last projection (exact)."""
    for key, gamma in gammas.items():
        pre, name = key.rsplit(".", 1)
        if name in ("gamma", "gamma_2"):
            targets = [(f"{pre}.mlp.fc2", slice(None))]
        else:  # gamma_1 scales the attention output: Hi-Fi channels first, then Lo-Fi
            h = out.get(f"{pre}.attn.h_proj.weight")
            h_dim = 0 if h is None else h.shape[0]
            targets = [
                (f"{pre}.attn.h_proj", slice(0, h_dim)),
                (f"{pre}.attn.l_proj", slice(h_dim, None)),
            ]
        for proj, part in targets:
            if f"{proj}.weight" not in out:
                continue
            g = gamma[part].to(out[f"{proj}.weight"].dtype)
            out[f"{proj}.weight"] = out[f"{proj}.weight"] * g[:, None]  # rows: output channels
            if f"{proj}.bias" in out:
                out[f"{proj}.bias"] = out[f"{proj}.bias"] * g
