"""What a LITv2 checkpoint says about its model: key filtering, architecture inference, strict load.

Tensors fix the embedding width, depths, classes, norms and each attention stage's Hi-Fi and Lo-Fi
channel counts. They do not fix three things, which are inferred and reported with their source
("checkpoint config", "tensors", "assumption", "option") and ambiguity (`InferredField`):
- head_dim: any common divisor of the channel counts under which one alpha reproduces every
  stage's split fits; 32 is tried first (every released model), else the largest that fits.
- alpha: the authors split heads by truncation, l = int(n * alpha), so a split fixes alpha only to
  an interval; the smallest released alpha inside it is used, else the interval's lower end.
- window sizes, training resolution and preprocessing: not in the tensors at all.
The authors' trainer files carry their yacs config (MODEL.LIT.ALPHA, LOCAL_WS, NUM_HEADS,
DATA.IMG_SIZE, ...); when present (read inert, never executed) it is preferred over guessing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch

from hilocli.errors import HiloError, UsageError
from hilocli.models.adopters import unwrap
from hilocli.models.config import LITv2Config, Preprocess
from hilocli.models.inferred import (
    Inference,
    InferredField,
    alpha_interval,
    choose_alpha,
    interval_contains,
    trainer_config,
)

__all__ = [
    "Inference",
    "InferredField",
    "filter_state_dict",
    "infer_config",
    "load_state_dict_strict",
    "trainer_config",
]

PREFERRED_HEAD_DIM = 32  # every released LITv2
_PREFIXES = ("module.", "backbone.", "model.")


# ----------------------------------------------------------------------------------------------
# Key filtering and strict loading
# ----------------------------------------------------------------------------------------------


def filter_state_dict(obj: object) -> dict[str, Any]:
    """Unwrap {"model": ...} / {"state_dict": ...} and strip `module.` / `backbone.` prefixes.

    OpenMMLab detector/segmentor files also hold neck and head weights: only `backbone.` keys are
    kept when any are present. Raises ValueError when no tensors are found.
    """
    tensors = unwrap(obj)  # nested wrappers, e.g. {"state_dict": {"model": ...}}
    if tensors is None:
        raise ValueError("the file holds no tensors")
    if any(k.startswith("backbone.") for k in tensors):
        tensors = {k: v for k, v in tensors.items() if k.startswith("backbone.")}
    out = {}
    for k, v in tensors.items():
        while k.startswith(_PREFIXES):
            k = k[len(next(p for p in _PREFIXES if k.startswith(p))) :]
        out[k] = v
    return out


def load_state_dict_strict(model, sd: dict, source: str) -> None:
    """Strict load; a mismatch is one error naming missing, unexpected and wrongly shaped keys.

    The tensors are assigned (cast to the model's dtypes), so `model` may be built on the meta
    device (no wasted random init); BatchNorm counters a file omits start at zero."""
    expected = model.state_dict()
    # BatchNorm's counter is bookkeeping, not a weight; older files may omit it.
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in expected]
    shapes = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", shapes),
        ):
            if items:
                more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
                parts.append(f"{label} {len(items)}: {', '.join(items[:3])}{more}")
        raise HiloError(f"{source} does not fit the model; " + "; ".join(parts))
    model.load_state_dict(
        {k: v.to(expected[k].dtype) for k, v in sd.items()}, strict=False, assign=True
    )
    for name, buf in list(model.named_buffers()):
        if buf.is_meta:  # omitted counters (num_batches_tracked)
            owner, _, attr = name.rpartition(".")
            model.get_submodule(owner).register_buffer(attr, torch.zeros_like(buf, device="cpu"))


# ----------------------------------------------------------------------------------------------
# Inference from the tensors
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stage:
    dim: int
    depth: int
    has_attn: bool
    hifi_channels: int
    lofi_channels: int


def _stages(sd: dict) -> tuple[int, int, int, list[_Stage]]:
    if "patch_embed.proj.weight" not in sd:
        sample = ", ".join(list(sd)[:3])
        raise HiloError(
            f"not a LITv2 checkpoint: no patch_embed.proj.weight (keys look like {sample})"
        )
    embed_dim, in_chans, patch, _ = sd["patch_embed.proj.weight"].shape
    ids = sorted({int(m.group(1)) for k in sd if (m := re.match(r"layers\.(\d+)\.", k))})
    if not ids or ids != list(range(len(ids))):
        raise HiloError("not a LITv2 checkpoint: no layers.<i> stages found")
    stages = []
    for i in ids:
        block_re = re.compile(rf"layers\.{i}\.blocks\.(\d+)\.")
        blocks = {int(m.group(1)) for k in sd if (m := block_re.match(k))}
        pre, dim = f"layers.{i}.blocks.0.attn.", int(embed_dim) * 2**i
        hifi = sd.get(f"{pre}h_qkv.weight")  # (3 * hifi channels, dim)
        lofi = sd.get(f"{pre}l_q.weight")  # (lofi channels, dim)
        stage = _Stage(
            dim,
            len(blocks),
            any(k.startswith(pre) for k in sd),
            int(hifi.shape[0]) // 3 if hifi is not None else 0,
            int(lofi.shape[0]) if lofi is not None else 0,
        )
        if stage.has_attn and stage.hifi_channels + stage.lofi_channels != dim:
            raise HiloError(
                f"not a LITv2 checkpoint: stage {i + 1} attention has "
                f"{stage.hifi_channels} Hi-Fi + {stage.lofi_channels} Lo-Fi channels, "
                f"not {dim}"
            )
        stages.append(stage)
    return int(embed_dim), int(in_chans), int(patch), stages


def _window_sizes(stages: list[_Stage], option, trainer: dict) -> InferredField:
    """local_ws: the option, the trainer config, or the released layout; checked against the
    tensors (attention weights, and no Hi-Fi weights under plain MSA)."""
    n_st, attn = len(stages), [i for i, s in enumerate(stages) if s.has_attn]
    if option is not None:
        if len(option) != n_st:
            raise UsageError(
                f"--window-sizes needs {n_st} entries (one per stage), got {len(option)}"
            )
        field = InferredField("local_ws", tuple(option), "option")
    elif len(trainer.get("local_ws", ())) == n_st:
        field = InferredField("local_ws", trainer["local_ws"], "checkpoint config")
    else:
        ws = tuple(
            0 if not s.has_attn else 1 if (i == attn[-1] and not s.hifi_channels) else 2
            for i, s in enumerate(stages)
        )
        field = InferredField(
            "local_ws",
            ws,
            "assumption",
            (
                "not stored in the weights: 2 for HiLo stages, 1 (plain MSA) for a last stage "
                "without Hi-Fi weights, as in every released LITv2; pass --window-sizes if yours "
                "differ"
            )
            if attn
            else None,
        )
    for i, (s, w) in enumerate(zip(stages, field.value)):
        if bool(w) != s.has_attn or (w == 1 and s.hifi_channels):
            what = (
                "no attention weights"
                if not s.has_attn
                else "Hi-Fi weights"
                if w == 1
                else "attention weights"
            )
            if field.source == "option":
                raise UsageError(
                    f"--window-sizes: stage {i + 1} has {what}, window size {w} does not fit"
                )
            raise HiloError(
                f"the checkpoint's own config (LOCAL_WS {list(field.value)}) does not "
                f"fit its tensors: stage {i + 1} has {what}; pass --window-sizes"
            )
    return field


def _solver(stages: list[_Stage], ws: tuple[int, ...]):
    attn = [i for i, s in enumerate(stages) if s.has_attn]
    split = [i for i in attn if ws[i] > 1]

    def solve(d: int) -> tuple[Fraction, Fraction] | None:
        """Alpha interval under head dim d (every stage); None if the channels do not fit."""
        if any(
            c % d
            for i in attn
            for c in (stages[i].dim, stages[i].hifi_channels, stages[i].lofi_channels)
        ):
            return None
        return alpha_interval(
            [stages[i].dim // d for i in split], [stages[i].lofi_channels // d for i in split]
        )

    return solve


def _head_dim(stages: list[_Stage], solve, option: int | None, trainer: dict) -> InferredField:
    """head_dim: the option, the trainer config's NUM_HEADS, or the fitting divisor (32 first)."""
    attn = [s for s in stages if s.has_attn]
    if option is not None:
        if attn and solve(option) is None:
            raise UsageError(
                f"--head-dim {option} does not fit this checkpoint: " + _why_not(stages, option)
            )
        return InferredField("head_dim", option, "option")
    heads = trainer.get("num_heads", ())
    if attn and len(heads) == len(stages) and all(h > 0 for h in heads):
        dims = {s.dim // h for s, h in zip(stages, heads) if s.has_attn and s.dim % h == 0}
        if len(dims) == 1 and solve(d := dims.pop()) is not None:
            return InferredField("head_dim", d, "checkpoint config")
    if not attn:
        return InferredField(
            "head_dim",
            PREFERRED_HEAD_DIM,
            "assumption",
            "no attention layers: the head dimension has no effect",
        )
    common = math.gcd(*[c for s in attn for c in (s.dim, s.hifi_channels, s.lofi_channels)])
    fitting = [d for d in range(1, common + 1) if common % d == 0 and solve(d) is not None]
    if trainer.get("alpha") is not None:  # prefer head dims under which the config's alpha fits
        fitting = [d for d in fitting if interval_contains(solve(d), trainer["alpha"])] or fitting
    if not fitting:
        raise HiloError(
            "no head dimension and alpha reproduce every stage's Hi-Fi/Lo-Fi channel "
            "split (pass --head-dim and --window-sizes)"
        )
    chosen = PREFERRED_HEAD_DIM if PREFERRED_HEAD_DIM in fitting else max(fitting)
    others = [d for d in fitting if d != chosen]
    if not others:
        return InferredField("head_dim", chosen, "tensors")
    why = "as in every released LITv2" if chosen == PREFERRED_HEAD_DIM else "the largest that fits"
    shown = (
        ", ".join(map(str, others))
        if len(others) <= 8
        else (f"{', '.join(map(str, others[:4]))}, ..., {others[-1]} ({len(others)} values)")
    )
    return InferredField(
        "head_dim",
        chosen,
        "assumption",
        f"the tensors also fit head_dim "
        f"{shown}: {chosen} used ({why}); pass --head-dim if yours differs",
    )


def _stated_or_assumed(name: str, trainer: dict, default: Any, why: str) -> InferredField:
    """The trainer config's value of `name` when it states one, else `default`, assumed."""
    value = trainer.get(name)
    if value:
        return InferredField(name, value, "checkpoint config")
    return InferredField(name, default, "assumption", why)


def infer_config(
    sd: dict,
    window_sizes: list[int] | tuple[int, ...] | None = None,
    head_dim: int | None = None,
    trainer: dict[str, Any] | None = None,
) -> Inference:
    """A LITv2Config that fits the (filtered) state dict `sd`, and how each unstated field was
    chosen. `window_sizes` / `head_dim` are the user's options (None: infer); `trainer` is
    `trainer_config(raw_checkpoint)`."""
    trainer = trainer or {}
    embed_dim, in_chans, patch, stages = _stages(sd)
    ws_field = _window_sizes(stages, window_sizes, trainer)
    ws = ws_field.value
    solve = _solver(stages, ws)
    hd_field = _head_dim(stages, solve, head_dim, trainer)
    d = hd_field.value
    split = [i for i, s in enumerate(stages) if s.has_attn and ws[i] > 1]
    alpha_field = choose_alpha(
        solve(d) if split else None,
        [stages[i].dim // d for i in split],
        [stages[i].lofi_channels // d for i in split],
        trainer.get("alpha"),
    )
    size_field = _stated_or_assumed(
        "img_size",
        trainer,
        224,
        "the training resolution is not stored in the weights: 224 assumed; pass --resolution",
    )
    prep_field = _stated_or_assumed(
        "preprocess",
        trainer,
        Preprocess(),
        "not stored in the weights: the released classifiers' evaluation transform",
    )
    fc1 = sd.get("layers.0.blocks.0.mlp.fc1.weight")
    cfg = LITv2Config(
        embed_dim=embed_dim,
        depths=tuple(s.depth for s in stages),
        num_heads=tuple(max(1, s.dim // d) for s in stages),
        alpha=alpha_field.value,
        local_ws=ws,
        mlp_ratio=fc1.shape[0] / embed_dim if fc1 is not None else 4.0,
        qkv_bias=any(k.endswith(("attn.l_q.bias", "attn.h_qkv.bias")) for k in sd)
        or not any(s.has_attn for s in stages),
        num_classes=int(sd["head.weight"].shape[0]) if "head.weight" in sd else 0,
        final_norm="norm.weight" in sd,
        stage_norms="norm1.weight" in sd,
        in_chans=in_chans,
        patch_size=patch,
        img_size=size_field.value,
    )
    return Inference(
        cfg=cfg,
        preprocess=prep_field.value,
        fields=(hd_field, alpha_field, ws_field, size_field, prep_field),
    )


def _why_not(stages: list[_Stage], d: int) -> str:
    for i, s in enumerate(stages):
        for what, c in (
            ("channels", s.dim),
            ("Hi-Fi channels", s.hifi_channels),
            ("Lo-Fi channels", s.lofi_channels),
        ):
            if s.has_attn and c % d:
                return f"stage {i + 1} attention has {c} {what}, not a multiple of {d}"
    return "no single alpha gives every stage's Hi-Fi/Lo-Fi head split under it"
