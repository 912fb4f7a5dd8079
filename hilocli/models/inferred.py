"""Inferred settings: what a checkpoint left unstated, how each was chosen, and how sure it is.

Torch-free. `InferredField` records a value with its source ("checkpoint config", "tensors",
"assumption", "option") and its ambiguity; `alpha_interval` is the exact set of alphas that give a
head split under the authors' truncating split; `trainer_config` reads the yacs config the
authors' trainer pickles beside the weights (loaded inert, as nested plain mappings).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from hilocli.models.config import VARIANTS, LITv2Config, Preprocess, split_heads

RELEASED_ALPHAS = tuple(sorted({v.cfg.alpha for v in VARIANTS.values()}))


@dataclass(frozen=True)
class InferredField:
    """One architecture or preprocessing setting a checkpoint did not state outright."""

    name: str  # "head_dim", "alpha", "local_ws", "img_size", "preprocess"
    value: Any
    source: str  # "checkpoint config" | "tensors" | "assumption" | "option"
    ambiguity: str | None = None  # what else would fit and how to choose; None: determined

    def describe(self) -> str:
        value = self.value.describe() if hasattr(self.value, "describe") else self.value
        note = f"; {self.ambiguity}" if self.ambiguity else ""
        return f"{self.name} {value} ({self.source}{note})"

    def to_dict(self) -> dict[str, Any]:
        value = self.value.to_dict() if hasattr(self.value, "to_dict") else self.value
        return {
            "value": list(value) if isinstance(value, tuple) else value,
            "source": self.source,
            "ambiguity": self.ambiguity,
        }


@dataclass(frozen=True)
class Inference:
    """A config that fits a checkpoint, and how each unstated setting was chosen."""

    cfg: LITv2Config
    preprocess: Preprocess
    fields: tuple[InferredField, ...]

    def field(self, name: str) -> InferredField:
        return next(f for f in self.fields if f.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: f.to_dict() for f in self.fields}


# ----------------------------------------------------------------------------------------------
# Alpha from a head split
# ----------------------------------------------------------------------------------------------


def alpha_interval(heads: list[int], lofi_heads: list[int]) -> tuple[Fraction, Fraction] | None:
    """(lo, hi): alpha in [0, 1] gives int(n * alpha) == l for every (n, l) exactly when
    lo <= alpha < hi (so hi > 1 means alpha 1 is included). None when no alpha fits. Exact."""
    lo, hi = Fraction(0), Fraction(2)
    for n, lofi in zip(heads, lofi_heads):
        lo, hi = max(lo, Fraction(lofi, n)), min(hi, Fraction(lofi + 1, n))
    return (lo, hi) if lo < hi and lo <= 1 else None


def interval_contains(interval: tuple[Fraction, Fraction] | None, alpha: float | None) -> bool:
    if interval is None or alpha is None or not 0 <= alpha <= 1:
        return False
    return interval[0] <= Fraction(alpha) < interval[1]


def describe_interval(interval: tuple[Fraction, Fraction]) -> str:
    """'[0.5, 1.0)' or '[0.5, 1.0]' (alpha 1 included)."""
    lo, hi = interval
    return f"[{_fmt(lo)}, {_fmt(min(hi, Fraction(1)))}{']' if hi > 1 else ')'}"


def _fmt(x: Fraction | float) -> str:
    text = f"{float(x):.4g}"
    return text if "." in text or "e" in text else f"{text}.0"


def choose_alpha(
    interval: tuple[Fraction, Fraction] | None,
    heads: list[int],
    lofi: list[int],
    config_alpha: float | None,
) -> InferredField:
    """alpha for stages with `heads` heads of which `lofi` are Lo-Fi: the trainer config's value
    when it reproduces the split, else the smallest released alpha that does, else the lower end
    of `interval`; the ambiguity names the whole interval."""

    def fits(a: float) -> bool:
        return all(split_heads(n, a, 2)[1] == lo for n, lo in zip(heads, lofi))

    if not heads:
        return InferredField(
            "alpha",
            0.9 if config_alpha is None else config_alpha,
            "assumption" if config_alpha is None else "checkpoint config",
            "no stage has a HiLo window (> 1): alpha has no effect here",
        )
    if interval_contains(interval, config_alpha) and fits(config_alpha):
        return InferredField("alpha", config_alpha, "checkpoint config")
    lo = interval[0]
    alpha = next((a for a in RELEASED_ALPHAS if interval_contains(interval, a) and fits(a)), None)
    released = alpha is not None
    if alpha is None:  # the lower end, as a float that survives the authors' float truncation
        alpha = float(lo)
        while not fits(alpha) and alpha < 1:
            alpha = math.nextafter(alpha, 2.0)
    note = (
        None
        if lo == 1
        else (
            f"alpha in {describe_interval(interval)}: any value gives this head split; "
            f"{_fmt(alpha)} used"
            + (" (the smallest released alpha in that range)" if released else "")
        )
    )
    if config_alpha is not None:
        note = (
            f"the checkpoint config's ALPHA {config_alpha:g} does not give this head split; "
            "ignored" + (f"; {note}" if note else "")
        )
    return InferredField("alpha", alpha, "tensors", note)


# ----------------------------------------------------------------------------------------------
# The authors' trainer config (a yacs CfgNode, loaded as nested plain mappings)
# ----------------------------------------------------------------------------------------------


def _get(node: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _ints(value: Any) -> tuple[int, ...] | None:
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    ):
        return tuple(value)
    return None


def trainer_config(obj: Any) -> dict[str, Any]:
    """Settings from the authors' trainer file ({"model": ..., "config": CfgNode}); {} if none.

    Only well-typed values are taken (the file is untrusted data)."""
    cfg = obj.get("config") if isinstance(obj, Mapping) else None
    if not isinstance(cfg, Mapping) or not isinstance(_get(cfg, "MODEL.LIT"), Mapping):
        return {}
    out: dict[str, Any] = {}
    alpha = _get(cfg, "MODEL.LIT.ALPHA")
    if isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and 0 <= alpha <= 1:
        out["alpha"] = float(alpha)
    for key, name in (("MODEL.LIT.LOCAL_WS", "local_ws"), ("MODEL.LIT.NUM_HEADS", "num_heads")):
        if (value := _ints(_get(cfg, key))) is not None:
            out[name] = value
    size = _get(cfg, "DATA.IMG_SIZE")
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        out["img_size"] = size
    crop, interp = _get(cfg, "TEST.CROP"), _get(cfg, "DATA.INTERPOLATION")
    if isinstance(crop, bool) or isinstance(interp, str):
        try:
            out["preprocess"] = Preprocess(
                mode="resize" if crop is False else "crop",
                interpolation=interp if isinstance(interp, str) else "bicubic",
            )
        except ValueError:
            pass
    return out
