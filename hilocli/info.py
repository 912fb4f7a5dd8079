"""`hilo info` as a function: `InfoRequest` in, `InfoResult` out, and its tables.

What a model is (config, parameters, per-stage grids and head splits, the HiLo layers `--layer`
indexes), where its weights came from, and which settings were inferred rather than stated.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from typing import Any

from hilocli.checkpoint import DEFAULT_MODEL
from hilocli.info_any import info_record
from hilocli.models.config import VARIANTS, LITv2Config, Preprocess, split_heads
from hilocli.models.geometry import (
    LayerGeometry,
    check_input_size,
    grid_sizes,
    layer_geometry,
    min_input_size,
    requested_size,
)
from hilocli.output import RunRecord
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
        if size is not None:  # the architecture is known before loading unless a file is read
            known = self.weights.checkpoint is None and self.weights.user_source is None
            cfg = VARIANTS[self.weights.model or DEFAULT_MODEL].cfg if known else None
            check_input_size(*size, min_input_size(cfg) if known else 1)
        return self

    @property
    def size(self) -> tuple[int, int] | None:
        """(height, width) asked for; None: the weights' training size."""
        return requested_size(self.resolution, self.height, self.width)


@dataclass(frozen=True)
class StageInfo:
    stage: int  # 1-based
    grid: tuple[int, int]  # (H, W) tokens
    tokens: int
    dim: int
    depth: int
    attention: str  # "MLP only" | "MSA" | "HiLo"
    window_size: int
    num_heads: int
    head_dim: int
    hifi_heads: int
    hifi_channels: int
    lofi_heads: int
    lofi_channels: int
    token_merging_after: bool

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "grid": list(self.grid)}


def stage_infos(cfg: LITv2Config, height: int, width: int) -> list[StageInfo]:
    """Per-stage facts of a config at a height x width input (torch-free)."""
    out = []
    for i, (H, W) in enumerate(grid_sizes(cfg, height, width)):
        ws, dim = cfg.local_ws[i], cfg.stage_dim(i)
        heads = cfg.num_heads[i] if ws else 0
        head_dim = dim // heads if heads else 0
        hifi, lofi = split_heads(heads, cfg.alpha, ws) if ws else (0, 0)
        out.append(
            StageInfo(
                stage=i + 1,
                grid=(H, W),
                tokens=H * W,
                dim=dim,
                depth=cfg.depths[i],
                attention="MLP only" if not ws else "MSA" if ws == 1 else "HiLo",
                window_size=ws,
                num_heads=heads,
                head_dim=head_dim,
                hifi_heads=hifi,
                hifi_channels=hifi * head_dim,
                lofi_heads=lofi,
                lofi_channels=lofi * head_dim,
                token_merging_after=i < cfg.num_stages - 1,
            )
        )
    return out


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
    cfg: LITv2Config
    num_params: int
    input_size: tuple[int, int]  # (height, width)
    stages: list[StageInfo]
    layers: list[LayerGeometry]
    weights: Any  # Provenance
    preprocess: Preprocess
    settings: dict[str, Any]
    environment: dict[str, Any]

    def to_record(self) -> RunRecord:
        return info_record(
            self,
            {
                "model": self.name,
                "config": self.cfg.to_dict(),
                "num_params": self.num_params,
                "input_size": list(self.input_size),
                "preprocess": self.preprocess.to_dict(),
                "stages": [s.to_dict() for s in self.stages],
                "hilo_layers": [layer_dict(g) for g in self.layers],
            },
        )


def describe_model(model, height: int, width: int) -> tuple[list[StageInfo], list[LayerGeometry]]:
    """Stages and HiLo layers of a LITv2 at a height x width input."""
    cfg = model.cfg
    layers = [layer_geometry(info, cfg, (width, height)) for info in model.hilo_layers()]
    return stage_infos(cfg, height, width), layers


def run(request: InfoRequest) -> InfoResult:
    from hilocli.runtime import environment, resolve_device

    if request.weights.user_source is not None:  # --model-fn / --hub: HiLo found by structure
        from hilocli.info_any import run_any

        return run_any(request)
    device = resolve_device(request.device)
    loaded = request.weights.load(device)
    net, cfg = loaded.model, loaded.model.cfg
    h, w = request.size or (cfg.img_size, cfg.img_size)
    check_input_size(h, w, min_input_size(cfg))
    stages, layers = describe_model(net, h, w)
    settings = {
        "model": request.weights.model,
        "checkpoint": request.weights.checkpoint,
        "window_sizes": request.weights.window_sizes,
        "head_dim": request.weights.head_dim,
        "seed": request.weights.seed,
        "input_size": [h, w],
        "device": str(device),
    }
    return InfoResult(
        name=loaded.name,
        cfg=cfg,
        num_params=sum(p.numel() for p in net.parameters()),
        input_size=(h, w),
        stages=stages,
        layers=layers,
        weights=loaded.provenance,
        preprocess=loaded.preprocess,
        settings=settings,
        environment=environment(device),
    )


# ----------------------------------------------------------------------------------------------
# Released variants (`--list`): the registry only, no torch
# ----------------------------------------------------------------------------------------------


def variants_record() -> RunRecord:
    from hilocli import __version__
    from hilocli.release import release_url

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
    from hilocli.terminal import say, table

    if not isinstance(result, InfoResult):  # a user model's result renders itself
        return result.render(con)
    cfg = result.cfg
    say(
        con,
        f"{result.name}  {result.num_params:,} parameters  (embed {cfg.embed_dim}, depths "
        f"{list(cfg.depths)}, heads {list(cfg.num_heads)}, alpha {cfg.alpha:g}, windows "
        f"{list(cfg.local_ws)}, classes {cfg.num_classes})",
    )
    say(con, f"weights: {result.weights.describe()}")
    say(con, f"preprocessing: {result.preprocess.describe()}")
    if result.weights.inferred:
        say(con, "settings the tensors do not state (setting = value [source]: what else fits):")
        for f in result.weights.inferred:
            note = f": {f.ambiguity}" if f.ambiguity else ""
            say(con, f"  {f.name} = {_value(f.value)} [{f.source}]{note}")
    h, w = result.input_size
    con.print(
        table(
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
    )
    rows = []
    for g in result.layers:
        d = layer_dict(g)
        rows.append(
            (
                d["index"],
                d["name"],
                d["stage"],
                f"{g.grid[0]}x{g.grid[1]}",
                d["window_size"],
                _span(d["hifi_channels"]),
                _span(d["lofi_channels"]),
            )
        )
    con.print(
        table(
            "Attention layers (--layer takes the index)",
            ["--layer", "module", "stage", "grid", "window", "Hi-Fi ch", "Lo-Fi ch"],
            rows,
            left=["module"],
        )
    )


def render_variants(con, record: RunRecord) -> None:
    """The variants table; URLs as their release file (the base once, in the caption), so the
    names it exists to show fit an 80-column terminal whole."""
    import os

    from hilocli.terminal import table

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
