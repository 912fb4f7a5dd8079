"""What `hilo compare` found: one `CompareEntry` per set of weights (its spectrum result,
attention distance and cost, named by its label) and the `CompareResult` they make, with the
record written as compare.json and the note on which layers were compared."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hilocli.compare.request import CompareRequest
from hilocli.output import InputsRecord, RunRecord

if TYPE_CHECKING:  # compare.distance imports torch and the capture
    from hilocli.compare.distance import AttentionDistance

NOT_COMPARABLE = "not comparable"

DEFINITIONS = {
    "n": "images analysed; the verdict pairs them by source scene (verdict.n counts scenes)",
    "estimate": "Hodges-Lehmann estimate over source scenes of the Hi-Fi minus Lo-Fi content "
    "high-frequency fraction, averaged over the tested layers and each scene's images (hilo "
    "spectrum's primary endpoint)",
    "ci": "its exact interval (coverage ci_level); unbounded (null) when there are too few scenes",
    "verdict": "hilo spectrum's word: supported / contradicted / equivalent / inconclusive / "
    "insufficient; 'not comparable' when no compared layer has both branches",
    "hifi_px, lofi_px": "mean attention distance in model-input pixels (hilo attn-map's "
    "mean_distance_px), averaged over the branch's heads, the compared layers and the first "
    "n_images analysed images; null when no compared layer has that branch",
    "macs": "analytic multiply-accumulates of the whole model for one res x res image, the "
    "authors' convention (hilo flops); FLOPs = 2 x MACs",
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
    """Every set of weights measured on the same images at one resolution."""

    request: CompareRequest
    resolution: int
    device: str
    entries: list[CompareEntry]
    inputs: InputsRecord
    environment: dict[str, Any]
    precision: dict[str, Any] = field(default_factory=dict)

    @property
    def layers_note(self) -> str:
        """Which layers were compared, and whether they differ (`layers_notes`), in one line."""
        return "; ".join(layers_notes(self.entries))

    @property
    def n(self) -> int:
        return len(self.inputs.analysed)

    @property
    def scenes(self) -> int:
        """Source scenes among the analysed images: the unit of evidence of every verdict (the
        same images, so the same scenes, for every set of weights)."""
        return self.entries[0].spectrum.scenes.n_groups

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


def default_label(prov) -> str:
    """File name (or variant) and the first 8 hex digits of the SHA-256."""
    name = Path(prov.path).name if prov.source == "file" and prov.path else prov.variant
    return f"{name or 'weights'}@{(prov.sha256 or 'no-sha256')[:8]}"


def architecture_fields(cfg) -> dict[str, Any] | None:
    """The LITv2 config fields that tell architectures apart; None for a model no config states."""
    if cfg is None:
        return None
    return {
        "embed_dim": cfg.embed_dim,
        "depths": list(cfg.depths),
        "num_heads": list(cfg.num_heads),
        "alpha": cfg.alpha,
        "local_ws": list(cfg.local_ws),
    }


def layers_notes(entries: list[CompareEntry]) -> list[str]:
    """Which layers were compared, and whether they differ between the sets of weights: the
    first note says which layers, any further one how head splits or architectures differ."""

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
        return [
            "layers compared differ between the sets of weights: "
            + "; ".join(f"{e.label}: {describe(e)}" for e in entries)
        ]
    notes = [f"layers compared: {describe(entries[0])}, the same for every set of weights"]
    if len({split(e) for e in entries}) > 1:
        notes.append("head splits differ: " + ", ".join(f"{e.label} {split(e)}" for e in entries))
    if len({repr(e.architecture) for e in entries}) > 1:
        notes.append("the architectures differ (see each set's architecture)")
    return notes
