"""LITv2 models and the registry of released variants."""

from hilocli.models.litv2 import (
    VARIANTS,
    HiLo,
    LITv2,
    LITv2Config,
    Variant,
    filter_state_dict,
    split_heads,
)

__all__ = ["VARIANTS", "HiLo", "LITv2", "LITv2Config", "Variant", "create_model", "get_variant",
           "filter_state_dict", "split_heads"]


def get_variant(name: str) -> Variant:
    """The released variant called `name`; ValueError listing the known names otherwise."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(VARIANTS)}") from None


def create_model(name_or_cfg: "str | LITv2Config", **overrides) -> LITv2:
    """A randomly initialised LITv2 of a registered variant or a custom config, in eval mode."""
    cfg = get_variant(name_or_cfg).cfg if isinstance(name_or_cfg, str) else name_or_cfg
    return LITv2(cfg, **overrides).eval()
