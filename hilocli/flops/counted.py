"""FLOPs counted by torch's FlopCounterMode, checked against the analytic count.

Counting runs the model on the meta device: shapes only, no memory, no arithmetic, so any
resolution takes well under a second. torch's counter sees matrix products and convolutions only
(2 FLOPs per multiply-add, bias not included); everything else is listed in `NOT_COUNTED`.
Imports torch, unlike the analytic modules: `hilocli.flops.run` loads it only for `--count`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from hilocli.flops.analytic import model_cost
from hilocli.flops.conventions import AS_RUN
from hilocli.flops.kernels import set_explicit
from hilocli.flops.layer import CostRow
from hilocli.models.config import LITv2Config
from hilocli.models.litv2 import HiLo, LITv2

NOT_COUNTED = (
    "LayerNorm and BatchNorm (the analytic count adds 1 MAC per element)",
    "bias additions (the analytic count adds 1 MAC per conv output element)",
    "softmax and the attention scale",
    "average pooling of the Lo-Fi keys/values",
    "GELU, residual adds, zero padding, the mean over tokens",
    "the bilinear sampling of the deformable conv (only its matmul with the weights is counted)",
)


@dataclass(frozen=True)
class CountCheck:
    """Counted FLOPs of some modules beside 2 x the analytic product MACs (as-run convention)."""

    label: str
    modules: tuple[str, ...]
    analytic_flops: int
    counted_flops: int

    @property
    def match(self) -> bool:
        return self.analytic_flops == self.counted_flops


@dataclass(frozen=True)
class CountedCost:
    height: int
    width: int
    total_counted_flops: int
    total_analytic_product_flops: int  # 2 x product MACs, as-run convention
    checks: tuple[CountCheck, ...]
    by_module: dict[str, int]  # inclusive counted FLOPs per module name
    sdpa_counted_meta: bool  # does the counter see the fused attention path on meta tensors?
    sdpa_counted_cpu: bool  # ... on CPU tensors (a tiny HiLo layer)
    not_counted: tuple[str, ...]
    torch_version: str

    @property
    def all_match(self) -> bool:
        return (
            all(c.match for c in self.checks)
            and self.total_counted_flops == self.total_analytic_product_flops
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": {"height": self.height, "width": self.width},
            "units": "FLOPs counted by torch.utils.flop_counter (2 per multiply-add of products)",
            "total_counted_flops": self.total_counted_flops,
            "total_analytic_product_flops": self.total_analytic_product_flops,
            "all_match": self.all_match,
            "checks": [{**asdict(c), "match": c.match} for c in self.checks],
            "sdpa_counted_meta": self.sdpa_counted_meta,
            "sdpa_counted_cpu": self.sdpa_counted_cpu,
            "not_counted": list(self.not_counted),
            "torch": self.torch_version,
        }


def counted_flops(fn: Callable[[], Any]) -> dict[str, int]:
    """Run fn() under FlopCounterMode; {module name without the root: inclusive FLOPs}, the
    whole count under ""."""
    with FlopCounterMode(display=False, depth=None) as counter, torch.no_grad():
        fn()
    out = {}
    for name, ops in counter.get_flop_counts().items():
        key = "" if name == "Global" else (name.split(".", 1)[1] if "." in name else "")
        out[key] = int(sum(ops.values()))
    return out


def sdpa_counted(device: str) -> bool:
    """Does the counter see F.scaled_dot_product_attention on `device`? (tiny HiLo, both paths)"""
    with torch.device(device):
        layer = HiLo(32, 2, 2, 0.5).eval()
        x = torch.zeros(1, 16, 32)  # (B, N, C) on a 4 x 4 grid
    totals = []
    for flag in (False, True):
        set_explicit(layer, flag)
        totals.append(counted_flops(lambda: layer(x, 4, 4))[""])
    return totals[0] == totals[1]


def _label(rows: list[CostRow]) -> str:
    first = rows[0]
    if len(rows) > 1:  # Hi-Fi and Lo-Fi attention products of the same layers
        return f"stage {first.stage}: {first.part} ({' + '.join(r.component for r in rows)})"
    if first.stage is None:
        return f"{first.component}: {first.part}"
    return f"stage {first.stage} {first.component}: {first.part}"


def count_flops(cfg: LITv2Config, height: int, width: int) -> CountedCost:
    """Count FLOPs of a LITv2 forward at height x width on the meta device and check every analytic
    product row (linear layers, convs, attention products) against them."""
    analytic = model_cost(cfg, height, width, AS_RUN)
    with torch.device("meta"):
        model = LITv2(cfg).eval()
    set_explicit(model, True)  # explicit q @ k^T and attn @ v, visible to the counter everywhere
    x = torch.empty(1, cfg.in_chans, height, width, device="meta")  # (B, C, H, W)
    counts = counted_flops(lambda: model(x))

    # group analytic rows by the modules they live in (Hi-Fi and Lo-Fi attention products share
    # the attention module) and subtract the counted FLOPs of other rows' sub-modules
    groups: dict[tuple[str, ...], list[CostRow]] = {}
    for r in analytic.rows:
        if r.product_macs:
            groups.setdefault(r.modules, []).append(r)
    row_modules = {m for mods in groups for m in mods}

    def exclusive(m: str) -> int:
        return counts.get(m, 0) - sum(
            counts.get(d, 0) for d in row_modules if d.startswith(m + ".")
        )

    checks = tuple(
        CountCheck(
            _label(rows),
            mods,
            2 * sum(r.product_macs for r in rows),
            sum(exclusive(m) for m in mods),
        )
        for mods, rows in groups.items()
    )
    return CountedCost(
        height,
        width,
        counts.get("", 0),
        2 * sum(r.product_macs for r in analytic.rows),
        checks,
        {k: v for k, v in counts.items() if k and k.count(".") <= 1},
        sdpa_counted("meta"),
        sdpa_counted("cpu"),
        NOT_COUNTED,
        torch.__version__,
    )
