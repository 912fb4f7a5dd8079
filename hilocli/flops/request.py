"""What a `hilo flops` run asks for: `FlopsRequest`, validated before anything is loaded or built,
and the architecture it names (a variant, or a checkpoint read for its config only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hilocli.errors import UsageError
from hilocli.flops.bench import MIN_REPEATS
from hilocli.flops.conventions import CONVENTIONS
from hilocli.flops.kernels import BACKENDS
from hilocli.models.config import LITv2Config, get_variant
from hilocli.models.geometry import (
    MAX_INPUT_SIDE,
    check_input_size,
    min_input_size,
    requested_size,
)
from hilocli.runtime import Precision, check_dtype, resolve_precision
from hilocli.weights import WeightsRequest

NEVER_USES_WEIGHTS = "architecture only: flops never uses weight values"


def parse_tokens(text: str) -> tuple[int, int]:
    """'14x14' or '14' -> (14, 14); UsageError otherwise."""
    parts = text.lower().replace(" ", "").split("x")
    try:
        if len(parts) > 2:
            raise ValueError
        return int(parts[0]), int(parts[-1])
    except ValueError:
        raise UsageError(f"--tokens must look like HxW (e.g. 14x14), got {text!r}") from None


@dataclass(frozen=True)
class Architecture:
    cfg: LITv2Config  # with --alpha / --window applied
    name: str
    weights: dict[str, Any]  # the run record's `weights` block


@dataclass(frozen=True)
class FlopsRequest:
    model: str | None = None
    checkpoint: Path | None = None  # read for its architecture only
    resolution: int | None = None
    height: int | None = None
    width: int | None = None
    alpha: float | None = None
    window: int | None = None
    dim: int | None = None  # attention comparison (default: the model's attention site)
    heads: int | None = None
    tokens: tuple[int, int] | None = None
    sweep: tuple[int, ...] | None = None
    convention: str = "authors"
    count: bool = False
    benchmark: bool = False
    device: str = "auto"
    batch_size: int = 1
    dtype: str = "auto"  # the forward's precision (--dtype; resolved by `precision()`)
    repeats: int = 10
    warmup: int = 3  # minimum warm-up runs; more until the times settle
    threads: int | None = None
    isolate: bool = True  # CPU benchmark cases each in a fresh process
    sdpa_backends: tuple[str, ...] = ("default",)  # each case once per forced SDPA backend
    model_fn: str | None = None  # a model no config states (--model-fn / --hub): counted as it runs
    hub: str | None = None
    model_kwargs: str | None = None

    @property
    def counts_a_loaded_model(self) -> bool:
        """Does the request name a model's code (no config: counted on the model, not analytic)?"""
        return any(v is not None for v in (self.model_fn, self.hub, self.model_kwargs))

    @property
    def writes_files(self) -> bool:
        return self.sweep is not None or self.counts_a_loaded_model

    def weights_request(self) -> WeightsRequest:
        return WeightsRequest(
            model=self.model,
            checkpoint=self.checkpoint,
            model_fn=self.model_fn,
            hub=self.hub,
            model_kwargs=self.model_kwargs,
        )

    def precision(self, device: Any = None) -> Precision:
        """--dtype resolved as in every command (auto: bfloat16 on CUDA, float32 on the CPU)
        against `device`, the device the benchmark runs on. Without one (no model runs) against
        --device as named, `auto` counting as the CPU: resolving it would import torch. float16
        on the CPU is a UsageError."""
        if device is None:
            device = "cuda" if self.device == "cuda" else "cpu"
        return resolve_precision(self.dtype, device)

    def validate(self) -> FlopsRequest:
        """UsageError for any bad or conflicting option, before anything is loaded or built."""
        self.weights_request().validate()
        if self.counts_a_loaded_model:
            return self._validate_loaded()
        _check(
            self.convention in CONVENTIONS,
            f"--convention must be one of {', '.join(CONVENTIONS)}, got {self.convention!r}",
        )
        _check(self.device in ("auto", "cpu", "cuda"), "--device must be auto, cpu or cuda")
        check_dtype(self.dtype, self.device)
        if not self.benchmark:  # with --benchmark, `run` resolves against the device it finds
            self.precision()
        _check(self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}")
        _check(
            self.repeats >= MIN_REPEATS,
            f"--repeats must be >= {MIN_REPEATS} (a median and spread need them)",
        )
        _check(self.warmup >= 0, f"--warmup must be >= 0, got {self.warmup}")
        _check(
            bool(self.sdpa_backends) and set(self.sdpa_backends) <= set(BACKENDS),
            f"--sdpa-backends takes a comma list of {', '.join(BACKENDS)}",
        )
        _check(self.threads is None or self.threads >= 1, "--threads must be >= 1")
        _check(self.alpha is None or 0.0 <= self.alpha <= 1.0, "--alpha must lie in [0, 1]")
        _check(self.window is None or self.window >= 1, "--window must be >= 1")
        _check((self.dim is None) == (self.heads is None), "--dim and --heads go together")
        if self.dim is not None:
            _check(
                self.dim > 0 and self.heads > 0 and self.dim % self.heads == 0,
                f"--dim {self.dim} must be a positive multiple of --heads {self.heads}",
            )
        if self.tokens is not None:
            h, w = self.tokens
            _check(
                2 <= h <= MAX_INPUT_SIDE and 2 <= w <= MAX_INPUT_SIDE,
                f"--tokens {h}x{w} is out of range: each side must be 2..{MAX_INPUT_SIDE} "
                "tokens (SRA reduces the grid by 2)",
            )
        requested_size(self.resolution, self.height, self.width)  # the shared rule
        _check(self.sweep is None or len(self.sweep) > 0, "--sweep needs at least one resolution")
        # the architecture is known without loading anything unless a checkpoint gives it
        cfg = None if self.checkpoint is not None else self._variant_cfg()
        self.check_sizes(cfg)
        return self

    def _validate_loaded(self) -> FlopsRequest:
        """A model's code named: the options of the analytic count (a config's) do not apply."""
        analytic_only = {
            "--alpha": self.alpha is not None,
            "--window": self.window is not None,
            "--dim/--heads": self.dim is not None or self.heads is not None,
            "--tokens": self.tokens is not None,
            "--sweep": self.sweep is not None,
            "--count": self.count,
            "--benchmark": self.benchmark,
            "--convention": self.convention != "authors",
        }
        for flag, given in analytic_only.items():
            _check(
                not given,
                f"{flag} is for LITv2's analytic count; a --model-fn / --hub model is counted as "
                "it runs (FLOPs of every product, analytic MACs per HiLo layer)",
            )
        self.check_sizes(None)
        return self

    def _variant_cfg(self) -> LITv2Config:
        return self._adjusted(get_variant(self.model or "litv2_s").cfg)

    def _adjusted(self, cfg: LITv2Config) -> LITv2Config:
        changes: dict[str, Any] = {}
        if self.alpha is not None:
            changes["alpha"] = self.alpha
        if self.window is not None:
            changes["local_ws"] = tuple(self.window if ws > 1 else ws for ws in cfg.local_ws)
        return cfg.replace(**changes) if changes else cfg

    def input_size(self, cfg: LITv2Config | None) -> tuple[int, int] | None:
        """(height, width) in pixels; None while the architecture (default size) is unknown."""
        if self.height is not None:
            return self.height, self.width
        if self.resolution is not None:
            return self.resolution, self.resolution
        return None if cfg is None else (cfg.img_size, cfg.img_size)

    def check_sizes(self, cfg: LITv2Config | None) -> None:
        """Input size and sweep entries within the model's limits (1 px while `cfg` is unknown)."""
        smallest = 1 if cfg is None else min_input_size(cfg)
        size = self.input_size(cfg)
        if size is not None:
            check_input_size(*size, smallest)
        for r in self.sweep or ():
            try:
                check_input_size(r, r, smallest)
            except UsageError as exc:
                raise UsageError(f"--sweep entry {r}: {exc}") from None

    def architecture(self) -> Architecture:
        """The config (a checkpoint is loaded for it, its weights unused) and the weights block."""
        if self.checkpoint is None:
            cfg = self._variant_cfg()
            name = self.model or "litv2_s"
            weights = {
                "source": "architecture only",
                "variant": name,
                "trained": False,
                "description": f"{name} architecture, no weights loaded",
                "note": NEVER_USES_WEIGHTS,
            }
            return Architecture(cfg, name, weights)
        loaded = self.weights_request().load("cpu", progress=False)
        weights = {**loaded.provenance.to_dict(), "note": NEVER_USES_WEIGHTS}
        return Architecture(self._adjusted(loaded.model.cfg), loaded.name, weights)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)
