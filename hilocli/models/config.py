"""LITv2 configurations and the registry of released variants. Plain Python, no torch: commands
that only need an architecture (`hilo flops`, `hilo info --list`) import this without torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from hilocli.errors import UsageError

__all__ = [
    "DEFAULT_MODEL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LITv2Config",
    "Preprocess",
    "Variant",
    "VARIANTS",
    "get_variant",
    "split_heads",
    "variant_config",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class LITv2Config:
    """Everything needed to build a LITv2. Released models differ only in the first four fields."""

    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    alpha: float = 0.9
    local_ws: tuple[int, ...] = (0, 0, 2, 1)  # 0: MLP blocks only; 1: plain MSA; s > 1: HiLo
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    num_classes: int = 1000  # 0: no classifier head
    final_norm: bool = True  # the LayerNorm before pooling; absent in dense-prediction backbones
    stage_norms: bool = False  # OpenMMLab backbones: LayerNorms norm1..norm3 on stage 2-4 outputs
    in_chans: int = 3
    patch_size: int = 4
    img_size: int = 224  # the resolution the weights were trained at (default for commands)

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "num_heads", tuple(int(h) for h in self.num_heads))
        object.__setattr__(self, "local_ws", tuple(int(w) for w in self.local_ws))
        n = len(self.depths)
        if n < 1 or len(self.num_heads) != n or len(self.local_ws) != n:
            raise ValueError(
                f"depths, num_heads and local_ws need one entry per stage, got "
                f"{len(self.depths)}, {len(self.num_heads)}, {len(self.local_ws)}"
            )
        if self.embed_dim <= 0 or any(d < 0 for d in self.depths):
            raise ValueError("embed_dim must be positive and depths non-negative")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
        for i, (heads, ws) in enumerate(zip(self.num_heads, self.local_ws)):
            dim = self.stage_dim(i)
            if ws < 0:
                raise ValueError(f"stage {i + 1}: window size must be >= 0, got {ws}")
            if ws > 0 and (heads <= 0 or dim % heads):
                raise ValueError(f"stage {i + 1}: dim {dim} is not divisible by {heads} heads")
        if self.num_classes < 0:
            raise ValueError("num_classes must be >= 0")

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    def stage_dim(self, i: int) -> int:
        return self.embed_dim * 2**i

    @property
    def num_features(self) -> int:
        return self.stage_dim(self.num_stages - 1)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("depths", "num_heads", "local_ws"):
            d[k] = list(d[k])
        return d

    def replace(self, **changes) -> LITv2Config:
        return replace(self, **changes)


def split_heads(num_heads: int, alpha: float, window_size: int) -> tuple[int, int]:
    """(hifi_heads, lofi_heads) of a HiLo layer, as the authors split them (truncating)."""
    lofi_heads = num_heads if window_size == 1 else int(num_heads * alpha)
    return num_heads - lofi_heads, lofi_heads


# ----------------------------------------------------------------------------------------------
# Preprocessing
# ----------------------------------------------------------------------------------------------

PREPROCESS_MODES = ("crop", "resize", "whole")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos", "box", "hamming")


@dataclass(frozen=True)
class Preprocess:
    """How images are prepared for a model (the authors' evaluation transform by default).

    mode "crop": shorter side to int(256 / 224 * res), centre crop res x res (the released
    classifiers); "resize": plain resize to res x res (litv2_b_384); "whole": shorter side to res,
    no crop (`--no-crop`). Then RGB / 255, minus `mean`, divided by `std`."""

    mode: str = "crop"
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.mode not in PREPROCESS_MODES:
            raise ValueError(
                f"preprocessing mode must be one of {', '.join(PREPROCESS_MODES)}, "
                f"got {self.mode!r}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                f"got {self.interpolation!r}"
            )
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need 3 entries each, std positive")

    def with_crop(self, crop: bool) -> Preprocess:
        """`--no-crop` (crop=False) keeps the whole image; crop=True keeps this preprocessing."""
        return self if crop else replace(self, mode="whole")

    def describe(self) -> str:
        how = {
            "crop": "shorter side to int(256/224*res), centre crop res x res",
            "resize": "plain resize to res x res",
            "whole": "shorter side to res, no crop",
        }
        norm = (
            "ImageNet mean/std"
            if (self.mean, self.std) == (IMAGENET_MEAN, IMAGENET_STD)
            else f"mean {list(self.mean)}, std {list(self.std)}"
        )
        return f"{how[self.mode]}, {self.interpolation}, {norm}"

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
        }


# ----------------------------------------------------------------------------------------------
# Variants
# ----------------------------------------------------------------------------------------------

_RELEASE = "https://github.com/ziplab/LITv2/releases/download"
_S = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
_B = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))


@dataclass(frozen=True)
class Variant:
    name: str
    cfg: LITv2Config
    url: str
    top1: float | None = None  # ImageNet-1k top-1 reported by the authors
    preprocess: Preprocess = Preprocess()  # how the authors evaluated it


def _variants() -> dict[str, Variant]:
    v = {
        "litv2_s": Variant("litv2_s", LITv2Config(**_S), f"{_RELEASE}/v1.0/litv2_s.pth", 82.0),
        "litv2_m": Variant(
            "litv2_m",
            LITv2Config(**{**_S, "depths": (2, 2, 18, 2)}),
            f"{_RELEASE}/v1.0/litv2_m.pth",
            83.3,
        ),
        "litv2_b": Variant("litv2_b", LITv2Config(**_B), f"{_RELEASE}/v1.0/litv2_b.pth", 83.6),
        "litv2_b_384": Variant(
            "litv2_b_384",
            LITv2Config(**_B, img_size=384),
            f"{_RELEASE}/v1.0/litv2_b_384.pth",
            84.7,
            Preprocess(mode="resize"),
        ),  # evaluated without the centre crop
    }
    alpha_top1 = {
        0.0: 81.16,
        0.2: 81.89,
        0.4: 81.81,
        0.5: 81.88,
        0.7: 81.94,
        0.9: 82.03,
        1.0: 81.89,
    }
    for alpha, top1 in alpha_top1.items():
        file = f"alpha_{alpha:g}.pth"  # alpha_0.pth, alpha_0.2.pth, ..., alpha_1.pth
        name = f"litv2_s_alpha{alpha:.1f}"
        v[name] = Variant(name, LITv2Config(**_S, alpha=alpha), f"{_RELEASE}/v1.1/{file}", top1)
    return v


VARIANTS: dict[str, Variant] = _variants()
DEFAULT_MODEL = "litv2_s"  # the variant a run builds when neither --model nor --checkpoint says


def get_variant(name: str) -> Variant:
    """The released variant called `name`; ValueError listing the known names otherwise."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(VARIANTS)}") from None


def variant_config(variant: Variant, window_sizes=None, head_dim: int | None = None) -> LITv2Config:
    """A released variant's config with `--window-sizes` applied; UsageError when an option does
    not fit it (`--head-dim` must equal its own: that option is for inferring checkpoints)."""
    cfg = variant.cfg
    if head_dim is not None:
        own = {
            cfg.stage_dim(i) // h for i, (h, w) in enumerate(zip(cfg.num_heads, cfg.local_ws)) if w
        }
        if own != {head_dim}:
            raise UsageError(
                f"--head-dim {head_dim} conflicts with {variant.name}, whose heads "
                f"are {'/'.join(map(str, sorted(own)))}-dimensional (--head-dim is "
                "for checkpoint files without --model)"
            )
    if window_sizes is None:
        return cfg
    try:
        return cfg.replace(local_ws=tuple(window_sizes))
    except ValueError as exc:
        raise UsageError(
            f"--window-sizes {','.join(map(str, window_sizes))} does not fit {variant.name}: {exc}"
        ) from None
