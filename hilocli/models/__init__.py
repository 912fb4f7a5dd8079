"""LITv2 models and the registry of released variants.

The configs and the registry (`hilocli.models.config`) import without torch; the model classes are
loaded on first use, so `from hilocli.models import get_variant` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hilocli.models.config import (
    DEFAULT_MODEL,
    VARIANTS,
    LITv2Config,
    Preprocess,
    Variant,
    get_variant,
    split_heads,
    variant_config,
)
from hilocli.models.geometry import HiLoLayerInfo, grid_sizes, min_input_size

if TYPE_CHECKING:
    from hilocli.models.litv2 import HiLo, LITv2
    from hilocli.models.litv2_checkpoint import filter_state_dict, infer_config

__all__ = [
    "DEFAULT_MODEL",
    "VARIANTS",
    "HiLo",
    "HiLoLayerInfo",
    "LITv2",
    "LITv2Config",
    "Preprocess",
    "Variant",
    "create_model",
    "get_variant",
    "filter_state_dict",
    "grid_sizes",
    "infer_config",
    "min_input_size",
    "split_heads",
    "variant_config",
]

_TORCH_NAMES = ("HiLo", "LITv2")
_CHECKPOINT_NAMES = ("filter_state_dict", "infer_config")


def __getattr__(name: str):
    if name in _TORCH_NAMES:
        from hilocli.models import litv2

        return getattr(litv2, name)
    if name in _CHECKPOINT_NAMES:
        from hilocli.models import litv2_checkpoint

        return getattr(litv2_checkpoint, name)
    raise AttributeError(f"module 'hilocli.models' has no attribute {name!r}")


def create_model(name_or_cfg: str | LITv2Config, **overrides) -> LITv2:
    """A randomly initialised LITv2 of a registered variant or a custom config, in eval mode."""
    from hilocli.models.litv2 import LITv2  # torch: on first use (see the module docstring)

    cfg = get_variant(name_or_cfg).cfg if isinstance(name_or_cfg, str) else name_or_cfg
    return LITv2(cfg, **overrides).eval()
