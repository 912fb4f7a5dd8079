"""What `hilo compare` is asked: `CompareRequest`, the sets of weights in order, each one's
`hilo spectrum` request, and the checks made before any file is read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hilocli.errors import UsageError
from hilocli.spectrum.run import SpectrumRequest
from hilocli.spectrum.stats import DEFAULT_ALPHA, DEFAULT_MARGIN
from hilocli.weights import WeightsRequest

DEFAULT_ATTN_IMAGES = 8


@dataclass(frozen=True)
class CompareRequest:
    """Everything `hilo compare` needs; `validate()` checks it before any file is read."""

    inputs: tuple[Path, ...]
    checkpoints: tuple[Path, ...] = ()
    models: tuple[str, ...] = ()  # released variant names (downloaded once)
    labels: tuple[str, ...] = ()  # one per set of weights, in order; () = file/name + sha256
    layers: str | None = None  # --layer spec; None: every layer with both branches
    resolution: int | None = None  # None: the first weights' training size, used for all
    crop: bool = True
    batch_size: int = 16
    device: str = "auto"
    limit: int | None = None
    out: Path | None = None
    alpha: float = DEFAULT_ALPHA
    margin: float = DEFAULT_MARGIN
    seed: int = 0
    dtype: str = "auto"
    tf32: bool = False
    attn_images: int = DEFAULT_ATTN_IMAGES
    workers: int | None = None  # decoding processes (hilo spectrum's --workers)

    def weights(self) -> list[WeightsRequest]:
        """One request per set of weights: checkpoints first, then models, as given."""
        return [WeightsRequest(checkpoint=Path(p), seed=self.seed) for p in self.checkpoints] + [
            WeightsRequest(model=m, pretrained=True, default_pretrained=True, seed=self.seed)
            for m in self.models
        ]

    def spectrum_request(
        self,
        weights: WeightsRequest,
        paths: tuple[Path, ...] = (),
        layers: str | None = None,
        resolution: int | None = None,
    ) -> SpectrumRequest:
        """The `hilo spectrum` request of one set of weights (a new SpectrumRequest field, e.g.
        `workers`, is one more keyword here and one more field above)."""
        return SpectrumRequest(
            inputs=paths or self.inputs,
            weights=weights,
            layers=layers if layers is not None else self.layers,
            resolution=resolution if resolution is not None else self.resolution,
            crop=self.crop,
            batch_size=self.batch_size,
            device=self.device,
            limit=None if paths else self.limit,
            out=self.out,
            alpha=self.alpha,
            margin=self.margin,
            dtype=self.dtype,
            tf32=self.tf32,
            workers=self.workers,
            # eager: the attention-distance pass reuses the same model with other hooks, and a
            # compiled forward would compile again for them
            compile="off",
        )

    def validate(self) -> CompareRequest:
        """UsageError for bad options (exit 2) before any file is read or model built."""
        sets = self.weights()
        if len(sets) < 2:
            raise UsageError(
                f"compare needs at least 2 sets of weights (--checkpoint and/or --model), "
                f"got {len(sets)}"
            )
        if len(set(self.models)) < len(self.models):
            twice = next(m for m in self.models if self.models.count(m) > 1)
            raise UsageError(f"--model {twice} is given twice")
        resolved = [Path(p).resolve() for p in self.checkpoints]
        for k, p in enumerate(resolved):
            if p in resolved[:k]:
                raise UsageError(f"--checkpoint {self.checkpoints[k]} is given twice")
        if self.labels:
            if len(self.labels) != len(sets):
                raise UsageError(
                    f"--label: give one per set of weights ({len(sets)}), got {len(self.labels)}"
                )
            if any(not lab.strip() for lab in self.labels):
                raise UsageError("--label must not be empty")
            if len(set(self.labels)) < len(self.labels):
                raise UsageError("--label values must differ")
        if self.attn_images < 0:
            raise UsageError(f"--attn-images must be >= 0, got {self.attn_images}")
        for w in sets:
            self.spectrum_request(w).validate()  # inputs, sizes, alpha, margin, dtype, weights
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "order": "--checkpoint files first, then --model names, each in the order given",
            "layers": self.layers,
            "resolution": self.resolution,
            "crop": self.crop,
            "batch_size": self.batch_size,
            "limit": self.limit,
            "alpha": self.alpha,
            "margin": self.margin,
            "seed": self.seed,
            "attn_images": self.attn_images,
            "labels": list(self.labels) or None,
        }
