"""`hilo info` as a function: `InfoRequest` in, `InfoResult` out, and its tables.

What a model is (config, parameters, per-stage grids and head splits, the HiLo layers `--layer`
indexes), where its weights came from, and which settings were inferred rather than stated.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Any

from hilocli import __version__
from hilocli.models.config import VARIANTS, LITv2Config, Preprocess
from hilocli.models.geometry import (
    LayerGeometry,
    StageInfo,
    check_input_size,
    requested_size,
)
from hilocli.output import RunRecord
from hilocli.release import release_url
from hilocli.runtime import environment, resolve_device
from hilocli.terminal import say, table
from hilocli.weights import WeightsRequest


@dataclass(frozen=True)
class InfoRequest:
    weights: WeightsRequest
    resolution: int | None = None
    height: int | None = None
    width: int | None = None
    device: str = "cpu"

    def validate(self) -> InfoRequest:
        """Usage errors before any file is read or model built."""
        self.weights.validate()
        size = self.size
        if size is not None:  # checked again against the model once it is loaded
            check_input_size(*size, self.weights.known_min_input_size())
        return self

    @property
    def size(self) -> tuple[int, int] | None:
        """(height, width) asked for; None: the weights' training size."""
        return requested_size(self.resolution, self.height, self.width)


def layer_dict(geom: LayerGeometry) -> dict[str, Any]:
    """A HiLo layer's geometry plus its channel ranges in the concatenated attention output
    (Hi-Fi first, then Lo-Fi)."""
    lay = geom.layer
    h_dim, dim = lay.hifi_heads * lay.head_dim, lay.num_heads * lay.head_dim
    return {
        **geom.to_dict(),
        "hifi_channels": [0, h_dim - 1] if lay.hifi_heads else None,
        "lofi_channels": [h_dim, dim - 1] if lay.lofi_heads else None,
    }


@dataclass
class InfoResult:
    name: str
    num_params: int
    input_size: tuple[int, int]  # (height, width)
    config: LITv2Config | None  # what the architecture states (LITv2), else None
    stages: list[StageInfo]  # per stage, where a config states them
    layers: list[LayerGeometry]  # every HiLo layer on the probe input
    signatures: list[str | None]  # per layer: how the module took its input (None: not called)
    rejected: list[dict[str, str]]  # look-alike modules skipped, with the reason
    weights: Any  # Provenance
    preprocess: Preprocess
    settings: dict[str, Any]
    environment: dict[str, Any]

    def to_record(self) -> RunRecord:
        results = {
            "model": self.name,
            **({"config": self.config.to_dict()} if self.config is not None else {}),
            "num_params": self.num_params,
            "input_size": list(self.input_size),
            "preprocess": self.preprocess.to_dict(),
            "stages": [s.to_dict() for s in self.stages],
            "hilo_layers": [
                {**layer_dict(g), "path": g.layer.path, "signature": sig}
                for g, sig in zip(self.layers, self.signatures)
            ],
            "rejected": self.rejected,
        }
        return RunRecord(
            command="info",
            settings=self.settings,
            weights=self.weights.to_dict(),
            environment=self.environment,
            results=results,
        )


def run(request: InfoRequest) -> InfoResult:
    """Load the weights, probe one forward at the input size (no arithmetic: on the meta device
    where the model allows) and describe every HiLo layer on the grid it ran."""
    from hilocli.hilo.capture import probe  # torch: `hilo info --list` never imports it

    device = resolve_device(request.device)
    loaded = request.weights.load(device)
    h, w = request.size or (loaded.default_resolution, loaded.default_resolution)
    check_input_size(h, w, loaded.min_input_size)
    records = probe(loaded.model, loaded.layers, loaded.in_channels, h, w)
    layers, signatures = [], []
    for layer in loaded.layers:
        rec = records[layer.index]
        called = rec.grid is not None  # a layer the forward never called has no grid
        layers.append(layer.geometry(rec.grid, (w, h), None) if called else _uncalled(layer, w, h))
        signatures.append(rec.signature)
    return InfoResult(
        name=loaded.name,
        num_params=loaded.num_params,
        input_size=(h, w),
        config=loaded.config,
        stages=loaded.stages(h, w),
        layers=layers,
        signatures=signatures,
        rejected=[r.to_dict() for r in loaded.rejected],
        weights=loaded.provenance,
        preprocess=loaded.preprocess,
        settings={
            **request.weights.settings(),
            "input_size": [h, w],
            "device": str(device),
        },
        environment=environment(device),
    )


def _uncalled(layer, w: int, h: int) -> LayerGeometry:
    return LayerGeometry(layer.info, (0, 0), layer.stride or 0, (w, h), None)


# ----------------------------------------------------------------------------------------------
# Released variants (`--list`): the registry only, no torch
# ----------------------------------------------------------------------------------------------


def variants_record() -> RunRecord:
    rows = [
        {
            "name": v.name,
            "embed_dim": v.cfg.embed_dim,
            "depths": list(v.cfg.depths),
            "num_heads": list(v.cfg.num_heads),
            "alpha": v.cfg.alpha,
            "img_size": v.cfg.img_size,
            "top1": v.top1,
            "preprocess": v.preprocess.to_dict(),
            "url": release_url(v),
        }
        for v in VARIANTS.values()
    ]
    env = {
        "hilo": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    return RunRecord(
        command="info",
        settings={"list": True},
        weights=None,
        environment=env,
        results={"variants": rows},
    )


# ----------------------------------------------------------------------------------------------
# Tables (stderr)
# ----------------------------------------------------------------------------------------------


def render(con, result: InfoResult) -> None:
    cfg = result.config
    arch = (
        f"  (embed {cfg.embed_dim}, depths {list(cfg.depths)}, heads {list(cfg.num_heads)}, "
        f"alpha {cfg.alpha:g}, windows {list(cfg.local_ws)}, classes {cfg.num_classes})"
        if cfg is not None
        else ""
    )
    say(con, f"{result.name}  {result.num_params:,} parameters{arch}")
    say(con, f"weights: {result.weights.describe()}")
    say(con, f"preprocessing: {result.preprocess.describe()}")
    if getattr(result.weights, "inferred", ()):
        say(con, "settings the tensors do not state (setting = value [source]: what else fits):")
        for f in result.weights.inferred:
            note = f": {f.ambiguity}" if f.ambiguity else ""
            say(con, f"  {f.name} = {_value(f.value)} [{f.source}]{note}")
    if result.stages:
        con.print(_stage_table(result))
    con.print(_layer_table(result))
    for r in result.rejected:
        say(con, f"skipped {r['path']}: {r['reason']}")


def _stage_table(result: InfoResult):
    h, w = result.input_size
    return table(
        f"Stages at {h}x{w} input (height x width)",
        ["stage", "grid", "dim", "depth", "attention", "window", "Hi-Fi h/ch", "Lo-Fi h/ch"],
        [
            (
                s.stage,
                f"{s.grid[0]}x{s.grid[1]}",
                s.dim,
                s.depth,
                s.attention,
                s.window_size or "-",
                f"{s.hifi_heads}/{s.hifi_channels}",
                f"{s.lofi_heads}/{s.lofi_channels}",
            )
            for s in result.stages
        ],
    )


def _layer_table(result: InfoResult):
    rows = []
    for g, sig in zip(result.layers, result.signatures):
        d = layer_dict(g)
        rows.append(
            (
                d["index"],
                d["name"],
                "-" if d["stage"] is None else d["stage"],
                sig or "-",
                f"{g.grid[0]}x{g.grid[1]}" if sig else "not called",
                d["window_size"],
                _span(d["hifi_channels"]),
                _span(d["lofi_channels"]),
            )
        )
    h, w = result.input_size
    return table(
        f"Attention layers (--layer takes the index; grid at {h}x{w} input)",
        ["--layer", "module", "stage", "called as", "grid", "window", "Hi-Fi ch", "Lo-Fi ch"],
        rows,
        left=["module", "called as"],
    )


def render_variants(con, record: RunRecord) -> None:
    """The variants table; URLs as their release file (the base once, in the caption), so the
    names it exists to show fit an 80-column terminal whole."""
    urls = [r["url"] for r in record.results["variants"]]
    base = os.path.commonprefix([u.rsplit("/", 2)[0] + "/" for u in urls])
    shown = table(
        "Released LITv2 variants",
        ["name", "depths", "alpha", "size", "prep", "top-1", "file"],
        [
            (
                r["name"],
                ",".join(map(str, r["depths"])),
                f"{r['alpha']:g}",
                r["img_size"],
                r["preprocess"]["mode"],
                r["top1"],
                r["url"][len(base) :],
            )
            for r in record.results["variants"]
        ],
        caption=f"file: under {base}; widths and full URLs: --json",
        left=["name", "prep", "file"],
    )
    shown.columns[0].min_width = max(len(r["name"]) for r in record.results["variants"])
    con.print(shown)


def _span(rng: list[int] | None) -> str:
    return f"{rng[0]}..{rng[1]}" if rng else "-"


def _value(value: Any) -> str:
    if hasattr(value, "describe"):
        return value.describe()
    return (
        ",".join(map(str, value))
        if isinstance(value, tuple)
        else f"{value:g}"
        if isinstance(value, float)
        else str(value)
    )
