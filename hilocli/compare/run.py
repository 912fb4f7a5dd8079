"""`hilo compare` as one call: `run(CompareRequest) -> CompareResult`.

    request = CompareRequest(inputs=(Path("samples"),), checkpoints=(a, b))
    result = run(request)            # validates, then per weights: spectrum, distance, MACs
    record = result.to_record()      # the RunRecord written as compare.json

The same distinct images (listed and de-duplicated once, hilo's own files excluded) go through
every set of weights, in the order given: `--checkpoint` files first, then `--model` names. Per
set of weights:
- the spectrum measurement and verdict are `hilo spectrum`'s own (`hilocli.spectrum.run.run` on
  a `SpectrumRequest` built by `CompareRequest.spectrum_request`), at one common resolution;
- Hi-Fi and Lo-Fi mean attention distance (`hilocli.compare.distance`) on the first
  `attn_images` analysed images, over the layers that entered the verdict;
- analytic MACs (`hilocli.flops.analytic.model_cost`) for one res x res image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hilocli.compare.distance import AttentionDistance
from hilocli.errors import HiloError, UsageError
from hilocli.output import InputsRecord, RunRecord
from hilocli.spectrum.stats import DEFAULT_ALPHA, DEFAULT_MARGIN
from hilocli.weights import WeightsRequest

Progress = Callable[[int, int], None]  # (steps done, steps in all)
DEFAULT_ATTN_IMAGES = 8
NOT_COMPARABLE = "not comparable"

DEFINITIONS = {
    "estimate": "Hodges-Lehmann estimate of the per-image Hi-Fi minus Lo-Fi content "
    "high-frequency fraction, averaged over the tested layers (hilo spectrum's primary endpoint)",
    "ci": "its exact interval (coverage ci_level); unbounded (null) when n is too small",
    "verdict": "hilo spectrum's word: supported / contradicted / equivalent / inconclusive / "
    "insufficient; 'not comparable' when no compared layer has both branches",
    "hifi_px, lofi_px": "mean attention distance in model-input pixels (hilo attn-map's "
    "mean_distance_px), averaged over the branch's heads, the compared layers and the first "
    "n_images analysed images; null when no compared layer has that branch",
    "macs": "analytic multiply-accumulates of the whole model for one res x res image, the "
    "authors' convention (hilo flops); FLOPs = 2 x MACs",
}


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
    ):
        """The `hilo spectrum` request of one set of weights (a new SpectrumRequest field, e.g.
        `workers`, is one more keyword here and one more field above)."""
        from hilocli.spectrum.run import SpectrumRequest

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


@dataclass
class CompareEntry:
    """One set of weights: its spectrum result, attention distance and cost."""

    label: str
    weights: Any  # hilocli.checkpoint.Provenance
    model_name: str
    architecture: dict[str, Any] | None  # LITv2 config fields; None: not a LITv2
    spectrum: Any  # hilocli.spectrum.run.SpectrumResult
    layers: list[Any]  # HiLoLayerInfo of the compared layers (the verdict's, else the measured)
    distance: AttentionDistance
    macs: int | None
    params: int | None
    cost_reason: str | None = None  # why macs is None

    @property
    def verdict(self):
        return self.spectrum.verdict

    @property
    def word(self) -> str:
        return NOT_COMPARABLE if self.verdict is None else self.verdict.word

    @property
    def estimate(self) -> float:
        return math.nan if self.verdict is None else self.verdict.estimate

    @property
    def ci(self) -> tuple[float, float]:
        return (math.nan, math.nan) if self.verdict is None else self.verdict.ci

    def to_dict(self, position: int) -> dict[str, Any]:
        sp, w = self.spectrum, self.weights
        return {
            "position": position,
            "label": self.label,
            "weights": w.describe(),
            "source": w.source,
            "path": w.path,
            "sha256": w.sha256,
            "model": self.model_name,
            "architecture": self.architecture,
            "n": sp.n,
            "measured_layers": [s.layer.index for s in sp.layers],
            "tested_layers": sp.tested,
            "compared_layers": [info.to_dict() for info in self.layers],
            "verdict_word": self.word,
            "estimate": self.estimate,
            "ci": list(self.ci),
            "p": math.nan if self.verdict is None else self.verdict.p,
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
            "verdict_line": sp.verdict_line,
            "attention_distance": self.distance.to_dict(),
            "cost": {
                "resolution": [sp.resolution, sp.resolution],
                "macs": self.macs,
                "flops": None if self.macs is None else 2 * self.macs,
                "params": self.params,
                "convention": "authors (hilo flops)",
                "reason": self.cost_reason,
            },
        }


@dataclass
class CompareResult:
    request: CompareRequest
    resolution: int
    device: str
    entries: list[CompareEntry]
    inputs: InputsRecord
    environment: dict[str, Any]
    layers_note: str
    precision: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.inputs.analysed)

    @property
    def attn_n(self) -> int:
        return min(self.request.attn_images, self.n)

    def settings(self) -> dict[str, Any]:
        first = self.entries[0].spectrum
        return {
            **self.precision,
            **first.settings.to_dict(),
            **self.request.to_dict(),
            "resolution": self.resolution,
            "attn_images_used": self.attn_n,
            "device": self.device,
        }

    def to_record(self, files: dict[str, str] | None = None) -> RunRecord:
        results = {
            "n": self.n,
            "resolution": self.resolution,
            "attn_images": self.attn_n,
            "layers_note": self.layers_note,
            "definitions": DEFINITIONS,
            "checkpoints": [e.to_dict(k + 1) for k, e in enumerate(self.entries)],
        }
        weights = {
            "count": len(self.entries),
            "sets": [{"label": e.label, **e.weights.to_dict()} for e in self.entries],
        }
        return RunRecord(
            command="compare",
            settings=self.settings(),
            weights=weights,
            environment=self.environment,
            results=results,
            inputs=self.inputs,
            files=dict(files or {}),
        )


def default_layers(loaded) -> str | None:
    """None (spectrum's default: layers with both branches) when the model has such a layer;
    otherwise (alpha 0 or 1) its layers with windows (s > 1), where a split would be, so that the
    alpha series' end points are still measured, one branch each."""
    infos = [layer.info for layer in loaded.layers]
    if not infos or any(i.has_both for i in infos):
        return None
    windowed = [i.index for i in infos if i.window_size > 1] or [i.index for i in infos]
    return ",".join(map(str, windowed))


def default_label(prov) -> str:
    """File name (or variant) and the first 8 hex digits of the SHA-256."""
    name = Path(prov.path).name if prov.source == "file" and prov.path else prov.variant
    return f"{name or 'weights'}@{(prov.sha256 or 'no-sha256')[:8]}"


def _architecture(cfg) -> dict[str, Any] | None:
    if cfg is None:
        return None
    return {
        "embed_dim": cfg.embed_dim,
        "depths": list(cfg.depths),
        "num_heads": list(cfg.num_heads),
        "alpha": cfg.alpha,
        "local_ws": list(cfg.local_ws),
    }


def layers_note(entries: list[CompareEntry]) -> str:
    """Which layers were compared, and whether they differ between the sets of weights."""

    def describe(e: CompareEntry) -> str:
        idx = [i.index for i in e.layers]
        span = (
            f"{idx[0]}..{idx[-1]}" if len(idx) > 2 and idx == list(range(idx[0], idx[-1] + 1))
            else ",".join(map(str, idx))
        )  # fmt: skip
        return f"{span} ({len(idx)} layer{'s' if len(idx) != 1 else ''})" if idx else "none"

    def split(e: CompareEntry) -> str:
        pairs = {(i.hifi_heads, i.lofi_heads) for i in e.layers}
        if len(pairs) == 1:
            hi, lo = next(iter(pairs))
            return f"{hi} Hi-Fi / {lo} Lo-Fi heads"
        return "Hi-Fi / Lo-Fi heads " + ", ".join(
            f"{i.hifi_heads}/{i.lofi_heads}" for i in e.layers
        )

    indices = {tuple((i.index, i.name) for i in e.layers) for e in entries}
    if len(indices) > 1:
        return "layers compared differ between the sets of weights: " + "; ".join(
            f"{e.label}: {describe(e)}" for e in entries
        )
    note = f"layers compared: {describe(entries[0])}, the same for every set of weights"
    if len({split(e) for e in entries}) > 1:
        note += "; head splits differ: " + ", ".join(f"{e.label} {split(e)}" for e in entries)
    if len({repr(e.architecture) for e in entries}) > 1:
        note += "; the architectures differ (see each set's architecture)"
    return note


def _check_duplicate_files(request: CompareRequest) -> list[str]:
    """SHA-256 of each checkpoint; UsageError when two files hold the same bytes."""
    from hilocli.output import sha256_file

    digests: list[str] = []
    for p in request.checkpoints:
        digest = sha256_file(Path(p))
        if digest in digests:
            first = request.checkpoints[digests.index(digest)]
            raise UsageError(
                f"--checkpoint {p} holds the same weights as {first} (sha256 {digest[:16]}...); "
                "compare each set of weights once"
            )
        digests.append(digest)
    return digests


def run(request: CompareRequest, progress: Progress | None = None) -> CompareResult | None:
    """Measure every set of weights on the same images (see the module docstring). Under
    torchrun/srun the images of each set are shared out as in `hilo spectrum`; rank 0 gets the
    result, the other ranks None."""
    from hilocli.compare.distance import attention_distance
    from hilocli.distributed import agree, from_main, placement, process_group, rank_device
    from hilocli.images import InputSet
    from hilocli.runtime import environment, resolve_device, resolve_precision
    from hilocli.spectrum.run import run as spectrum_run
    from hilocli.spectrum.sweep import listed_inputs

    request.validate()
    where = placement()
    device = rank_device(resolve_device(request.device), where)
    precision = resolve_precision(request.dtype, device, request.tf32, auto="float32")
    sets = request.weights()
    labels = list(request.labels) or [None] * len(sets)
    entries: list[CompareEntry] = []
    resolution = request.resolution
    analysed: list[str] | None = None
    decode_skipped: list[dict[str, str]] = []
    seen: list[tuple[str | None, str]] = []  # (sha256, label) of the sets loaded so far
    with process_group(where, device):  # one group for every set (torchrun/srun)
        found, paths = listed_inputs(where, request.inputs, request.limit)
        paths = tuple(paths)
        from_main(where, lambda: _check_duplicate_files(request))  # before any set is loaded
        # every set's spectrum run gets these files, hashed once here
        listed = InputSet(
            list(paths), sha256=found.sha256, sizes=found.sizes, transparent=found.transparent
        )
        total = len(sets) * len(paths)
        for k, weights in enumerate(sets):
            loaded = agree(where, lambda weights=weights: weights.load(device))
            prov = loaded.provenance
            label = labels[k] or default_label(prov)
            same = next((lab for sha, lab in seen if prov.sha256 and sha == prov.sha256), None)
            if same is not None:  # every rank knows: all stop here together
                raise UsageError(
                    f"{prov.describe()} holds the same weights as {same}; "
                    "compare each set of weights once"
                )
            seen.append((prov.sha256, label))
            if resolution is None:  # the first weights' training size, for every set
                resolution = loaded.default_resolution
            sub = None
            if progress is not None:

                def sub(done: int, _n: int, k: int = k) -> None:
                    progress(k * len(paths) + done, total)

            layer_spec = request.layers if request.layers is not None else default_layers(loaded)
            spectrum = spectrum_run(
                request.spectrum_request(weights, paths, layer_spec, resolution),
                sub,
                loaded,
                listed,
            )
            if spectrum is None:  # not rank 0 under torchrun/srun: its share is measured
                continue
            if analysed is None:
                analysed = spectrum.inputs.analysed
                decode_skipped = [s for s in spectrum.inputs.skipped if s not in _skipped(found)]
            elif spectrum.inputs.analysed != analysed:  # the same decoder on the same files
                raise HiloError(f"{prov.describe()} analysed other images than the first weights")
            infos = [layer.info for layer in loaded.layers]
            compared = spectrum.tested or [s.layer.index for s in spectrum.layers]
            distance = attention_distance(
                loaded,
                compared,
                analysed[: request.attn_images],
                resolution,
                request.crop,
                device,
                precision,
                request.batch_size,
            )
            macs = params = reason = None
            cost = loaded.analytic_cost(resolution, resolution)
            if cost is not None:
                macs, params = cost.macs, cost.params
            else:
                reason = "not a LITv2: no analytic cost"
            entries.append(
                CompareEntry(
                    label=label,
                    weights=prov,
                    model_name=loaded.name,
                    architecture=_architecture(loaded.config),
                    spectrum=spectrum,
                    layers=[infos[i] for i in compared],
                    distance=distance,
                    macs=macs,
                    params=params,
                    cost_reason=reason,
                )
            )
            del loaded
    if not where.is_main:
        return None
    inputs = InputsRecord(
        analysed=list(analysed or []),
        skipped=[*_skipped(found), *decode_skipped],
        duplicates=[{"path": str(p), "same_as": str(q)} for p, q in found.duplicates],
    )
    return CompareResult(
        request=request,
        resolution=int(resolution),
        device=str(device),
        entries=entries,
        inputs=inputs,
        environment=environment(device),
        layers_note=layers_note(entries),
        precision=precision.to_dict(),
    )


def _skipped(found) -> list[dict[str, str]]:
    return [{"path": str(p), "reason": r} for p, r in found.skipped]
