"""The cases `hilo flops --benchmark` times: each attention type on the compared grid, then the
whole model, per forced SDPA backend and per sweep resolution."""

from __future__ import annotations

from hilocli.flops.analytic import model_cost
from hilocli.flops.attention import ATTENTION_TYPES, attention_comparison, attention_site
from hilocli.flops.bench import BenchCase
from hilocli.flops.request import FlopsRequest
from hilocli.models.config import LITv2Config


def benchmark_cases(
    request: FlopsRequest,
    cfg: LITv2Config,
    name: str,
    size: tuple[int, int],
    layer: tuple[int, int],
    device: str,
    dtype: str,
) -> list[BenchCase]:
    """Each attention type on the compared grid with `layer` = (dim, heads), then the whole
    model, at the input size or at every sweep resolution; the forward autocast to `dtype` (the
    resolved --dtype)."""
    common = dict(
        batch_size=request.batch_size,
        device=device,
        dtype=dtype,
        threads=request.threads,
        warmup=request.warmup,
        repeats=request.repeats,
    )
    cases = []
    for r in request.sweep or (None,):
        height, width = size if r is None else (r, r)
        site = attention_site(cfg, height, width)
        grid = request.tokens if (r is None and request.tokens) else site.grid
        costs = attention_comparison(
            layer[0], layer[1], *grid, cfg.alpha, site.window_size, qkv_bias=cfg.qkv_bias
        )
        macs = {c.name: c.macs for c in costs}
        for backend in request.sdpa_backends:
            cases += [
                BenchCase(
                    "attention",
                    kind,
                    *grid,
                    dim=layer[0],
                    num_heads=layer[1],
                    alpha=cfg.alpha,
                    window_size=site.window_size,
                    sdpa_backend=backend,
                    macs=macs[kind],
                    **common,
                )
                for kind in ATTENTION_TYPES
            ]
            model_macs = model_cost(cfg, height, width).macs
            cases.append(
                BenchCase(
                    "model",
                    name,
                    height,
                    width,
                    cfg=cfg.to_dict(),
                    sdpa_backend=backend,
                    macs=model_macs,
                    **common,
                )
            )
    return cases
