"""What `hilo spectrum` is asked to do: `SpectrumRequest`, its options validated (usage errors)
before any file is read or model built."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hilocli.compilation import check_compile
from hilocli.errors import UsageError
from hilocli.models.geometry import check_input_size
from hilocli.runtime import check_dtype
from hilocli.spectrum.control import DEFAULT_CONTROL_SEEDS
from hilocli.spectrum.measures import SpectrumSettings
from hilocli.spectrum.stats import DEFAULT_ALPHA, DEFAULT_MARGIN
from hilocli.weights import WeightsRequest, check_seed

MODES = ("stats", "paper")
CONTROLS = ("none", "random")


@dataclass(frozen=True)
class SpectrumRequest:
    """The options of one `hilo spectrum` run (`validate` before any work)."""

    inputs: tuple[Path, ...]  # image files and/or folders (read recursively)
    weights: WeightsRequest = field(default_factory=lambda: WeightsRequest(default_pretrained=True))
    layers: str | None = None  # --layer spec; None: every layer with both branches
    resolution: int | None = None  # None: the weights' training size
    crop: bool = True
    batch_size: int = 16
    device: str = "auto"
    limit: int | None = None  # at most this many distinct files (after sorting)
    out: Path | None = None  # where the files go (hilo's own files are never read as inputs)
    mode: str = "stats"  # "stats" | "paper" (also the authors' 8-channel figure)
    control: str = "none"  # "none" | "random" (repeat on a random init: the architecture's prior)
    control_seeds: int = DEFAULT_CONTROL_SEEDS  # random inits in the control: seed+1 .. seed+N
    groups: Path | None = None  # CSV (path, group) of source scenes; None: perceptual hash
    cutoff: float = 0.25
    boundary: str = "hann"  # "hann" (Hann-windowed periodogram) | "none" (plain periodogram)
    alpha: float = DEFAULT_ALPHA
    margin: float = DEFAULT_MARGIN
    depth: bool = False  # Park & Kim's depth curve over every block (main model only)
    matched: bool = False  # matched_ratio_*: each branch over its identity-attention input
    transfer: bool = False  # per-head transfer curves (results.transfer_curves, transfer.png)
    dtype: str = "auto"  # precision of the forward (hilocli.runtime.resolve_precision)
    tf32: bool = False
    workers: int | None = None  # decoding processes; None: hilocli.batches.default_workers
    compile: str = "auto"  # torch.compile of the forward: off | on | auto (hilocli.compilation)

    @property
    def seed(self) -> int:
        return self.weights.seed

    def settings(self) -> SpectrumSettings:
        return SpectrumSettings(
            cutoff=self.cutoff,
            boundary=self.boundary,
            significance=self.alpha,
            margin=self.margin,
            depth=self.depth,
            matched=self.matched,
            transfer=self.transfer,
        )

    def validate(self) -> SpectrumRequest:
        """UsageError for a bad option, before any file is read or model built."""
        if not self.inputs:
            raise UsageError("give at least one image file or folder")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.workers is not None and not 0 <= self.workers <= 64:
            raise UsageError(f"--workers must lie in 0..64, got {self.workers}")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit must be >= 1, got {self.limit}")
        if self.resolution is not None:
            check_input_size(self.resolution, self.resolution)
        if self.mode not in MODES:
            raise UsageError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.control not in CONTROLS:
            raise UsageError(
                f"--control must be one of {', '.join(CONTROLS)}, got {self.control!r}"
            )
        if not 0.0 < self.alpha < 0.5:
            raise UsageError(f"--alpha must lie strictly between 0 and 0.5, got {self.alpha}")
        if not 0.0 <= self.margin < 1.0:
            raise UsageError(f"--margin must lie in [0, 1), got {self.margin}")
        if not 1 <= self.control_seeds <= 1000:
            raise UsageError(f"--control-seeds must lie in 1..1000, got {self.control_seeds}")
        if self.groups is not None and not self.groups.is_file():
            raise UsageError(f"--groups: no such file: {self.groups}")
        self.settings()  # --cutoff and --boundary: SpectrumSettings' own checks, one wording
        check_dtype(self.dtype, self.device)
        check_compile(self.compile)
        self.weights.validate()
        if self.control == "random":  # seeds --seed+1 .. --seed+N must be seeds too
            check_seed(self.seed + self.control_seeds, "--seed plus --control-seeds")
        return self

    def seeds_of_control(self) -> list[int]:
        """The random inits' seeds (none without --control random)."""
        return control_seeds(self.seed, self.control_seeds) if self.control == "random" else []

    def to_dict(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "crop": self.crop,
            "batch_size": self.batch_size,
            "limit": self.limit,
            "mode": self.mode,
            "control": self.control,
            "control_seeds": self.seeds_of_control(),
            "seed": self.seed,
            "boundary": self.boundary,
            "groups": None if self.groups is None else str(self.groups),
            "alpha": self.alpha,
            "margin": self.margin,
        }


def control_seeds(seed: int, count: int) -> list[int]:
    """Seeds of the random-init control: seed+1 .. seed+count, so never the main model's seed
    (also when the main model is itself a random init)."""
    return [seed + 1 + k for k in range(count)]
