"""`hilo flops` for a loaded model whose architecture no config states (`--model-fn` / `--hub`):
FLOPs of the whole model counted by torch's FlopCounterMode on one forward at the input size, and
per HiLo layer (found by structure, grid as it ran) the analytic MACs of the authors' convention
beside the counted FLOPs of that module (matrix products only: 2 FLOPs per MAC, so counted =
2 x analytic when the module computes HiLo's products and nothing else; a fused attention kernel
may not be counted, see docs/flops.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from hilocli.flops.counted import counted_flops
from hilocli.flops.layer import branch_rows
from hilocli.hilo.capture import capture
from hilocli.models.geometry import padded_grid
from hilocli.output import RunRecord
from hilocli.runtime import environment, resolve_device
from hilocli.terminal import human, say, table


def hilo_layer_macs(
    dim: int, hifi_channels: int, lofi_channels: int, window_size: int, grid: tuple[int, int]
) -> tuple[int, int]:
    """(Hi-Fi, Lo-Fi) MACs of one HiLo layer in the authors' count (LITV2_FACTS section 4), on
    the padded grid, from its branches' channels (a user model's split need not follow alpha)."""
    s = max(window_size, 1)
    hifi, lofi = branch_rows(dim, hifi_channels, lofi_channels, padded_grid(grid, s), s)
    return sum(r.macs for r in hifi), sum(r.macs for r in lofi)


@dataclass(frozen=True)
class LayerFlops:
    index: int
    path: str
    grid: tuple[int, int]
    window_size: int
    hifi_macs: int
    lofi_macs: int
    counted_flops: int

    @property
    def match(self) -> bool:
        return self.counted_flops == 2 * (self.hifi_macs + self.lofi_macs)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "grid": list(self.grid), "match": self.match}


@dataclass
class ModelFlopsResult:
    name: str
    input_size: tuple[int, int]  # (height, width)
    num_params: int
    total_counted_flops: int
    layers: list[LayerFlops]
    weights: Any
    settings: dict[str, Any]
    environment: dict[str, Any]

    def to_record(self, files: dict[str, str] | None = None) -> RunRecord:
        return RunRecord(
            command="flops",
            files=dict(files or {}),
            settings=self.settings,
            weights=self.weights.to_dict(),
            environment=self.environment,
            results={
                "model": self.name,
                "input_size": list(self.input_size),
                "num_params": self.num_params,
                "total_counted_flops": self.total_counted_flops,
                "hilo_layers": [lay.to_dict() for lay in self.layers],
                "convention": "analytic: MACs, authors' count; counted: torch FlopCounterMode, "
                "2 FLOPs per multiply-add of matrix products and convolutions",
            },
        )

    def render(self, con) -> None:
        h, w = self.input_size
        say(
            con,
            f"{self.name}  {self.num_params:,} parameters, "
            f"{human(self.total_counted_flops, 'FLOPs')} counted at {h}x{w} "
            f"(weights: {self.weights.describe()})",
        )
        rows = [
            (
                lay.index,
                lay.path,
                f"{lay.grid[0]}x{lay.grid[1]}",
                lay.window_size,
                f"{lay.hifi_macs:,}",
                f"{lay.lofi_macs:,}",
                f"{lay.counted_flops:,}",
                "yes" if lay.match else "no",
            )
            for lay in self.layers
        ]
        con.print(
            table(
                "HiLo layers: analytic MACs and counted FLOPs (= 2 x MACs when they agree)",
                ["--layer", "module", "grid", "s", "Hi-Fi MACs", "Lo-Fi MACs", "counted", "2x?"],
                rows,
                left=["module"],
            )
        )


def run_loaded(weights, size: tuple[int, int] | None, device: str = "cpu") -> ModelFlopsResult:
    """FLOPs of the model `weights` loads at size = (height, width) (None: its default)."""
    dev = resolve_device(device)
    loaded = weights.load(dev)
    height, width = size or (loaded.default_resolution, loaded.default_resolution)
    layers = loaded.require_layers()
    x = torch.zeros(1, loaded.in_channels, height, width, device="meta")  # (1, C, H, W)
    meta = {n: t.to("meta") for n, t in loaded.model.state_dict(keep_vars=True).items()}
    with capture(loaded.model, layers) as cap:  # the counted forward also gives the grids
        counts = counted_flops(lambda: torch.func.functional_call(loaded.model, meta, (x,)))
    records = cap.records
    rows = []
    for layer in layers:
        rec, info = records[layer.index], layer.info
        if rec.grid is None:
            continue  # not called by the forward
        d = info.head_dim
        hifi, lofi = hilo_layer_macs(
            layer.channels, info.hifi_heads * d, info.lofi_heads * d, info.window_size, rec.grid
        )
        rows.append(
            LayerFlops(
                info.index, info.path, rec.grid, info.window_size, hifi, lofi,
                counts.get(info.path, 0),
            )
        )  # fmt: skip
    return ModelFlopsResult(
        name=loaded.name,
        input_size=(height, width),
        num_params=loaded.num_params,
        total_counted_flops=counts.get("", 0),
        layers=rows,
        weights=loaded.provenance,
        settings={**weights.settings(), "input_size": [height, width]},
        environment=environment(dev),
    )
