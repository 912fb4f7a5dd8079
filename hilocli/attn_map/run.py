"""`hilo attn-map` as a function: `run(AttnMapRequest) -> AttnMapResult` (no printing, no files).

One forward pass on the fused attention path records each chosen layer's input (`capture`); the
queries and keys are recomputed with the layer's own projections, and softmax rows are computed
only for what is needed: the chosen query tokens (maps) and every real token in chunks
(summaries). The whole matrices only with `save_raw`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from hilocli.attn_map.heads import HeadColumn, head_columns, parse_heads
from hilocli.attn_map.maps import QueryMap, layer_qk, query_map_distances, query_maps
from hilocli.attn_map.queries import Query, default_queries, parse_query, user_queries
from hilocli.attn_map.raw import full_matrices, raw_budget
from hilocli.attn_map.summaries import DEFAULT_CHUNK_SIZE, LayerSummary, summarise_layer
from hilocli.errors import HiloError, UsageError
from hilocli.hilo.capture import capture
from hilocli.images import load_prepared
from hilocli.models.geometry import MAX_INPUT_SIDE, LayerGeometry, check_input_size
from hilocli.option_lists import parse_int_list
from hilocli.output import InputsRecord, RunRecord
from hilocli.runtime import (
    check_dtype,
    environment,
    forward_context,
    resolve_device,
    resolve_precision,
    to_device,
)
from hilocli.terminal import human_bytes
from hilocli.weights import WeightsRequest

DEFINITIONS = {
    "coordinates": "model-input pixels (the image as the model saw it, after resize/crop); "
    "queries are also given in original-image pixels; (x, y) = (right, down), "
    "tokens and grids (row, col)",
    "mean_distance_px": "mean over real query tokens of sum_k w_k * |centre(query token) - "
    "centre(key)|; Lo-Fi keys are pooled s x s windows (their centre), Hi-Fi "
    "keys the tokens of the query's window",
    "uniform_distance_px": "the same with uniform weights over the same keys (a reference: "
    "below it a head prefers near keys)",
    "entropy_nats": "mean over real query tokens of -sum_k w_k ln w_k",
    "entropy_normalised": "entropy_nats / ln(number of keys): 1 = uniform, 0 = one key "
    "(undefined with one key)",
    "attention_received": "Lo-Fi only: mean over real query tokens of the weight each pooled "
    "key gets (sums to 1 per head), row-major over the pooled grid",
    "queries": "only real tokens are queries (padded positions are cropped by the model); "
    "padded keys are kept, since the model attends to them",
}

Progress = Callable[[int, int], None]  # (layers done, layers in all)


@dataclass(frozen=True)
class AttnMapRequest:
    """Everything `hilo attn-map` needs; `validate()` checks it without touching the image or
    the weights' contents."""

    image: Path
    weights: WeightsRequest = field(default_factory=lambda: WeightsRequest(default_pretrained=True))
    layers: str | None = None  # 'all', an index or a comma list; None: `default_layers`
    queries: tuple[str, ...] = ()  # 'X,Y' in original-image pixels; () = the defaults
    heads: str = "all"  # 'all', 'mean' or head indices
    resolution: int | None = None  # None: the weights' training size
    crop: bool = True
    device: str = "auto"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    save_raw: bool = False
    max_raw_mb: int = 2048
    dtype: str = "auto"  # precision of the model forward; q/k and summaries stay float32
    tf32: bool = False

    @property
    def query_points(self) -> list[tuple[Fraction, Fraction]]:
        return [parse_query(q) for q in self.queries]

    @property
    def head_spec(self) -> str | tuple[int, ...]:
        return parse_heads(self.heads)

    def validate(self) -> AttnMapRequest:
        """UsageError for bad options (HiloError for a missing image), before any work."""
        self.weights.validate()
        check_dtype(self.dtype, self.device)
        if self.resolution is not None and not 1 <= self.resolution <= MAX_INPUT_SIDE:
            raise UsageError(f"--resolution must be 1..{MAX_INPUT_SIDE} px, got {self.resolution}")
        if self.chunk_size < 1:
            raise UsageError(f"--chunk-size must be >= 1, got {self.chunk_size}")
        if self.max_raw_mb < 1:
            raise UsageError(f"--max-raw-mb must be >= 1, got {self.max_raw_mb}")
        spec = self.layers
        if (
            spec is not None
            and spec.strip().lower() != "all"
            and not parse_int_list(spec, "--layer")
        ):
            raise UsageError("--layer needs 'all' or at least one index")
        for text in self.queries:
            parse_query(text)
        parse_heads(self.heads)
        image = Path(self.image)
        if not image.is_file():
            raise HiloError(
                f"{image}: no such file" if not image.exists() else f"{image}: not a file"
            )
        return self


@dataclass
class LayerResult:
    geometry: LayerGeometry
    columns: list[HeadColumn]
    summary: LayerSummary
    maps: list[QueryMap]  # one per query, in order
    raw: dict[str, Any] | None = None  # full matrices (numpy) with save_raw

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary.to_dict(),
            "queries": [
                {
                    "query": k,
                    **m.to_dict(),
                    "distance_px": query_map_distances(self.geometry, m).tolist(),
                }
                for k, m in enumerate(self.maps)
            ],
            "columns": [c.to_dict() for c in self.columns],
        }


@dataclass
class AttnMapResult:
    request: AttnMapRequest
    model_name: str
    weights: Any  # hilocli.checkpoint.Provenance
    environment: dict[str, Any]
    resolution: int
    image: Any  # hilocli.images.PreparedImage
    queries: list[Query]
    layers: list[LayerResult]
    precision: dict[str, Any] = field(default_factory=dict)  # Precision.to_dict()

    def settings(self) -> dict[str, Any]:
        r = self.request
        return {
            "layers": [lr.geometry.layer.index for lr in self.layers],
            "heads": r.head_spec,
            "resolution": self.resolution,
            "crop": r.crop,
            "chunk_size": r.chunk_size,
            "save_raw": r.save_raw,
            "max_raw_mb": r.max_raw_mb,
            "device": self.environment.get("device"),
            "seed": r.weights.seed,
            **self.precision,
        }

    def results(self) -> dict[str, Any]:
        img = self.image
        return {
            "model": self.model_name,
            "image": {
                "path": str(self.request.image),
                "original_size": img.original_size,
                "input_size": img.input_size,
                "crop": self.request.crop,
                "crop_box": img.crop_box,
            },
            "definitions": DEFINITIONS,
            "queries": [q.to_dict() for q in self.queries],
            "layers": [lr.to_dict() for lr in self.layers],
        }

    def to_record(self, files: dict[str, Any] | None = None) -> RunRecord:
        return RunRecord(
            command="attn-map",
            settings=self.settings(),
            weights=self.weights.to_dict(),
            environment=self.environment,
            results=self.results(),
            inputs=InputsRecord(analysed=[str(self.request.image)]),
            files={k: str(v) for k, v in (files or {}).items()},
        )


def _check_raw_budget(request: AttnMapRequest, geoms, smallest: int, resolution: int) -> None:
    budget = raw_budget(geoms, request.max_raw_mb * 2**20, resolution, smallest)
    if budget.fits:
        return
    hint = (
        f"--resolution {budget.fitting_resolution} would fit"
        if budget.fitting_resolution
        else "no resolution fits"
    )
    w, h = geoms[0].input_size
    raise HiloError(
        f"--save-raw needs {human_bytes(budget.needed)} for the full attention "
        f"matrices of {len(geoms)} layer(s) at {w}x{h} (budget "
        f"{human_bytes(budget.budget)}, --max-raw-mb); {hint}, or choose fewer "
        "--layer or raise --max-raw-mb"
    )


def default_layers(infos) -> list[int]:
    """Positions in `infos` of the last attention layer of each stage (a model without stages:
    its first and last layer): a compact overview; `--layer all` shows every layer."""
    last = {info.stage: k for k, info in enumerate(infos)}  # later layers overwrite
    if set(last) == {None}:
        return sorted({0, len(infos) - 1})
    return sorted(last.values())


def run(request: AttnMapRequest, progress: Progress | None = None) -> AttnMapResult:
    """Maps, summaries (and with save_raw the full matrices) of the chosen layers, one image."""
    request.validate()
    dev = resolve_device(request.device)
    precision = resolve_precision(request.dtype, dev, request.tf32)
    loaded = request.weights.load(dev)
    layers = loaded.choose(request.layers, default_layers([x.info for x in loaded.layers]))
    res = request.resolution or loaded.default_resolution
    check_input_size(res, res, loaded.min_input_size)
    prepared = load_prepared(
        Path(request.image), res, crop=request.crop, preprocess=loaded.preprocess
    )
    w_in, h_in = prepared.input_size
    check_input_size(h_in, w_in, loaded.min_input_size)
    points = request.query_points
    queries = user_queries(prepared, points) if points else default_queries(prepared)
    columns = [head_columns(layer.info, request.head_spec) for layer in layers]

    x = to_device(prepared.tensor.unsqueeze(0), dev)  # (1, 3, H, W)
    with (
        forward_context(precision),
        capture(loaded.model, layers, verify=True, stop_early=True) as cap,
    ):
        # inputs captured in float32, pooling rule verified; q, k below in float32
        cap.forward(loaded.model, x)
    recs = [cap.records[layer.index] for layer in layers]
    geoms = [lay.geometry(r.grid, prepared.input_size, r.pooling) for lay, r in zip(layers, recs)]
    if request.save_raw:
        _check_raw_budget(request, geoms, loaded.min_input_size, res)
    results = []
    if progress:
        progress(0, len(layers))
    for k, (layer, g, rec) in enumerate(zip(layers, geoms, recs)):
        qk = layer_qk(layer, rec.control, g)
        rec.control = None  # one layer's input at a time
        results.append(
            LayerResult(
                geometry=g,
                columns=columns[k],
                summary=summarise_layer(qk, request.chunk_size),
                maps=query_maps(qk, [q.token(g) for q in queries]),
                raw=full_matrices(qk, request.chunk_size) if request.save_raw else None,
            )
        )
        del qk
        if progress:
            progress(k + 1, len(layers))
    return AttnMapResult(
        request=request,
        model_name=loaded.name,
        weights=loaded.provenance,
        environment=environment(dev),
        resolution=res,
        image=prepared,
        queries=queries,
        layers=results,
        precision=precision.to_dict(),
    )
