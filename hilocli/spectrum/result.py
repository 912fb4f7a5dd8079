"""What `hilo spectrum` found: `SpectrumResult` (the measured layers, the verdict, the scenes,
the inputs) and its run record (`to_record`, written as spectrum.json)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hilocli.output import InputsRecord, RunRecord
from hilocli.scenes import SceneGroups
from hilocli.spectrum.collect import LayerSpectra
from hilocli.spectrum.control import ControlResult
from hilocli.spectrum.export import COLUMNS, FILE_NAME
from hilocli.spectrum.measures import SpectrumSettings
from hilocli.spectrum.request import SpectrumRequest
from hilocli.spectrum.stats import Judged, Verdict


@dataclass
class SpectrumResult:
    request: SpectrumRequest
    settings: SpectrumSettings
    model_name: str
    weights: Any  # hilocli.checkpoint.Provenance
    resolution: int
    device: str
    layers: list[LayerSpectra]
    judged: Judged  # tested layers, deltas per image and scene, verdict, sensitivity, line
    scenes: SceneGroups  # which analysed image belongs to which source scene
    blank: np.ndarray  # (n_images,) bool: no spatial content (excluded from the verdict)
    inputs: InputsRecord
    environment: dict[str, Any]
    control: ControlResult | None = None
    depth: Any = None  # hilocli.spectrum.depth.DepthCurve with --depth
    precision: dict[str, Any] = field(default_factory=dict)  # Precision.to_dict()
    control_layers: list[list[LayerSpectra]] = field(default_factory=list)  # per control seed
    sha256: dict[str, str] = field(default_factory=dict)  # analysed path -> content SHA-256
    processes: dict[str, Any] = field(default_factory=dict)  # workers, world size, launcher
    compile_decision: dict[str, Any] = field(default_factory=dict)  # CompileDecision.to_dict()

    @property
    def n(self) -> int:
        return len(self.inputs.analysed)

    @property
    def tested(self) -> list[int]:
        return self.judged.tested

    @property
    def deltas(self) -> np.ndarray:
        return self.judged.deltas

    @property
    def verdict(self) -> Verdict | None:
        return self.judged.verdict

    @property
    def verdict_line(self) -> str:
        return self.judged.line

    def settings_dict(self) -> dict[str, Any]:
        return {
            **self.precision,
            **self.settings.to_dict(),
            **self.request.to_dict(),
            "layers": [s.layer.index for s in self.layers],
            "tested_layers": self.tested,
            "resolution": self.resolution,
            "device": self.device,
            **self.processes,
            "compile": self.compile_decision,
        }

    def to_record(self, files: dict[str, str] | None = None) -> RunRecord:
        results = {
            "model": self.model_name,
            "n": self.n,
            "n_images": self.n,
            "n_scenes": self.scenes.n_groups,
            "n_blank": int(self.blank.sum()),
            "scenes": self.scenes.to_dict(),
            "tested_layers": self.tested,
            "per_image": {  # the values themselves: one CSV row per image, weights, layer, branch
                "file": FILE_NAME,
                "columns": list(COLUMNS),
            },
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
            "verdict_sensitivity": None
            if self.judged.sensitivity is None
            else self.judged.sensitivity.to_dict(),
            "verdict_line": self.verdict_line,
            "layers": [s.to_dict() for s in self.layers],
            "random_control": None if self.control is None else self.control.to_dict(),
            "depth_curve": None if self.depth is None else self.depth.to_dict(),
            "transfer_curves": transfer_curves(self.layers) if self.settings.transfer else None,
        }
        return RunRecord(
            command="spectrum",
            settings=self.settings_dict(),
            weights=self.weights.to_dict(),
            environment=self.environment,
            results=results,
            inputs=self.inputs,
            files=dict(files or {}),
        )


def transfer_curves(layers: list[LayerSpectra]) -> list[dict[str, Any]]:
    """results.transfer_curves: per measured layer its index, name and transfer curves."""
    return [
        {"index": s.layer.index, "name": s.layer.name, **s.transfer}
        for s in layers
        if s.transfer is not None
    ]
