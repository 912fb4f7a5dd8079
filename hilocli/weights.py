"""What weights a run asks for (`WeightsRequest`), validated before any work, and loading them.

Validating imports no torch (the analytic `hilo flops` and `hilo info --list` stay torch-free), so
the loader (`hilocli.checkpoint`, `hilocli.usermodel`, which build models) is imported where a
model is loaded. The loader never imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hilocli.errors import HiloError, UsageError
from hilocli.inputs import refuse_special
from hilocli.model_source import ModelSource, check_user_options, parse_hub, parse_model_fn
from hilocli.models import DEFAULT_MODEL, VARIANTS, min_input_size, variant_config

if TYPE_CHECKING:  # the loader imports torch
    from hilocli.loaded import LoadedModel


@dataclass(frozen=True)
class WeightsRequest:
    """`--model`, `--checkpoint`, `--pretrained/--random-init`, `--window-sizes`, `--head-dim`,
    `--seed`. `pretrained` None means the command's default (`default_pretrained`)."""

    model: str | None = None
    checkpoint: Path | None = None
    pretrained: bool | None = None
    window_sizes: tuple[int, ...] | None = None
    head_dim: int | None = None  # None: inferred from the checkpoint
    seed: int = 0
    default_pretrained: bool = False
    model_fn: str | None = None  # `file.py:function` or `package.module:function`
    model_kwargs: str | None = None  # JSON object passed to model_fn / the hub entry
    hub: str | None = None  # `DIR:ENTRY` of a local hubconf.py
    mean: tuple[float, ...] | None = None  # a user model's input normalisation (--mean/--std)
    std: tuple[float, ...] | None = None

    @property
    def user_source(self) -> ModelSource | None:
        """What --model-fn / --hub name, or None (LITv2)."""
        if self.model_fn is not None:
            return parse_model_fn(self.model_fn, self.model_kwargs)
        if self.hub is not None:
            return parse_hub(self.hub, self.model_kwargs)
        return None

    @property
    def use_pretrained(self) -> bool:
        if self.checkpoint is not None:
            return False
        return self.default_pretrained if self.pretrained is None else self.pretrained

    def validate(self) -> WeightsRequest:
        """Usage errors for conflicting or impossible options; touches no file beyond stat."""
        check_seed(self.seed)
        if self.checkpoint is not None:  # a FIFO or device: never opened, also for --model-fn
            refuse_special(Path(self.checkpoint), f"--checkpoint {self.checkpoint}")
        if self.mean is not None or self.std is not None:
            if self.model_fn is None and self.hub is None:
                raise UsageError("--mean/--std are for your own model (--model-fn or --hub)")
        if self.model_fn is not None or self.hub is not None or self.model_kwargs is not None:
            if check_user_options(self):
                return self
        if self.checkpoint is not None and self.pretrained is not None:
            flag = "--pretrained" if self.pretrained else "--random-init"
            raise UsageError(f"--checkpoint and {flag} conflict: a checkpoint is its own weights")
        if self.model is not None and self.model not in VARIANTS:
            raise UsageError(f"unknown model {self.model!r}; known: {', '.join(VARIANTS)}")
        if self.checkpoint is not None:
            p = Path(self.checkpoint)
            if not p.exists():
                raise UsageError(f"--checkpoint {p}: no such file")
            if p.is_dir():
                raise UsageError(f"--checkpoint {p} is a folder, not a file")
        if self.head_dim is not None and self.head_dim < 1:
            raise UsageError(f"--head-dim must be >= 1, got {self.head_dim}")
        if self.window_sizes is not None and any(s < 0 for s in self.window_sizes):
            raise UsageError(f"--window-sizes must be >= 0, got {list(self.window_sizes)}")
        if self.checkpoint is None or self.model is not None:  # a released architecture
            variant_config(VARIANTS[self.model or DEFAULT_MODEL], self.window_sizes, self.head_dim)
        return self

    def known_min_input_size(self) -> int:
        """The smallest input side of the architecture asked for, where it is known before
        loading (a released variant); 1 while a file or a user's code decides."""
        if self.checkpoint is not None or self.model_fn is not None or self.hub is not None:
            return 1
        return min_input_size(VARIANTS[self.model or DEFAULT_MODEL].cfg)

    def settings(self) -> dict[str, Any]:
        """The weights options a run record's settings show."""
        if self.model_fn is not None or self.hub is not None:
            keys = ("model_fn", "hub", "model_kwargs", "checkpoint", "seed")
        else:
            keys = ("model", "checkpoint", "window_sizes", "head_dim", "seed")
        return {k: getattr(self, k) for k in keys}

    def load(self, device: Any = "cpu", progress: bool = True) -> LoadedModel:
        """The model (eval mode, on `device`) with its provenance: a `LoadedModel`."""
        from hilocli.checkpoint import load_model  # the loader (torch): see the module docstring
        from hilocli.usermodel import load_user_model

        self.validate()
        source = self.user_source
        if source is not None:
            loaded = load_user_model(
                source, self.checkpoint, self.seed, device, self.mean, self.std
            )
            check_finite_weights(loaded.model, loaded.provenance.describe())
            return loaded
        loaded = load_model(
            self.model,
            self.checkpoint,
            self.use_pretrained,
            list(self.window_sizes) if self.window_sizes is not None else None,
            self.head_dim,
            device,
            seed=self.seed,
            progress=progress,
        )
        if self.checkpoint is not None or self.use_pretrained:  # hilo's own init is finite
            check_finite_weights(loaded.model, loaded.provenance.describe())
        return loaded


def random_init_like(loaded: LoadedModel, seed: int, device: Any = "cpu") -> LoadedModel:
    """A seeded random init of `loaded`'s architecture (the random control): a LoadedModel."""
    from hilocli.checkpoint import Provenance, random_litv2  # the loader (torch)
    from hilocli.loaded import loaded_model
    from hilocli.usermodel import UserProvenance, build

    source = getattr(loaded.provenance, "model_source", None)
    if source is not None:  # a user model: its own function, seeded
        net, prov = build(source, seed), UserProvenance(source, seed=seed)
    else:
        net = random_litv2(loaded.config, seed)
        prov = Provenance(source="random init", variant=loaded.provenance.variant, seed=seed)
    net = net.eval().to(device)
    return loaded_model(net, prov, loaded.name, loaded.preprocess, loaded.config)


MAX_SEED = 2**63 - 1  # torch.manual_seed, numpy and every int64 take 0..MAX_SEED


def check_seed(seed: int, what: str = "--seed") -> None:
    """UsageError unless 0 <= seed <= MAX_SEED."""
    if not 0 <= seed <= MAX_SEED:
        raise UsageError(f"{what} must lie in 0..{MAX_SEED} (2**63 - 1), got {seed}")


def check_finite_weights(model, source: str = "the model") -> None:
    """HiloError naming the first parameter or buffer with a NaN or infinite value."""
    import torch  # here, not at the top: validating a request never imports torch

    named = [
        (name, t)
        for name, t in [*model.named_parameters(), *model.named_buffers()]
        if t.is_floating_point()
    ]
    if not named:
        return
    finite = torch.stack([torch.isfinite(t).all() for _, t in named]).tolist()  # one host sync
    for (name, _), ok in zip(named, finite):
        if not ok:
            raise HiloError(
                f"non-finite values (NaN or inf) in weight {name} of {source}; refusing to analyse"
            )


def check_finite(tensor, what: str) -> None:
    """HiloError when an activation holds NaN or inf; `what` names it ('layer 3 Hi-Fi output')."""
    if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
        raise HiloError(f"non-finite values (NaN or inf) in {what}; refusing to analyse")
