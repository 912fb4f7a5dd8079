"""`hilo info` for a user model (`--model-fn` / `--hub`): its HiLo layers found by structure, the
indices `--layer` takes, how each layer is called and its token grid on one probe input, and the
look-alike modules that were skipped (with the reason)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hilocli.output import RunRecord


def info_record(result, results: dict[str, Any]) -> RunRecord:
    """The `hilo info` record of a result (LITv2 or user model): its settings, weights and
    environment around `results`."""
    return RunRecord(
        command="info",
        settings=result.settings,
        weights=result.weights.to_dict(),
        environment=result.environment,
        results=results,
    )


def in_channels(model) -> int:
    """Input channels of the model: the first Conv2d's, else 3."""
    import torch.nn as nn

    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else 3


@dataclass
class AnyInfoResult:
    name: str
    num_params: int
    input_size: tuple[int, int]  # (height, width) of the probe
    layers: list[dict[str, Any]]
    rejected: list[dict[str, str]]
    weights: Any
    settings: dict[str, Any]
    environment: dict[str, Any]

    def to_record(self) -> RunRecord:
        return info_record(
            self,
            {
                "model": self.name,
                "num_params": self.num_params,
                "input_size": list(self.input_size),
                "hilo_layers": self.layers,
                "rejected": self.rejected,
            },
        )

    def render(self, con) -> None:
        from hilocli.terminal import say, table

        say(con, f"{self.name}  {self.num_params:,} parameters")
        say(con, f"weights: {self.weights.describe()}")
        h, w = self.input_size
        rows = [
            (
                d["index"],
                d["path"],
                d["signature"] or "-",
                "x".join(map(str, d["grid"])) if d["grid"] else "not called",
                d["window_size"],
                f"{d['hifi_heads']}/{d['hifi_heads'] * d['head_dim']}",
                f"{d['lofi_heads']}/{d['lofi_heads'] * d['head_dim']}",
            )
            for d in self.layers
        ]
        con.print(
            table(
                f"HiLo layers found by structure (--layer takes the index; grid at {h}x{w} input)",
                ["--layer", "module", "called as", "grid", "window", "Hi-Fi h/ch", "Lo-Fi h/ch"],
                rows,
                left=["module", "called as"],
            )
        )
        for r in self.rejected:
            say(con, f"skipped {r['path']}: {r['reason']}")


def run_any(request) -> AnyInfoResult:
    import torch

    from hilocli.capture import capture
    from hilocli.models.discover import find_hilo
    from hilocli.runtime import environment, resolve_device

    device = resolve_device(request.device)
    loaded = request.weights.load(device)
    net = loaded.model
    infos, rejected = find_hilo(net)
    h, w = request.size or (224, 224)
    probe = torch.zeros(1, in_channels(net), h, w, device=device)
    with torch.no_grad(), capture(net, [i.index for i in infos]) as cap:
        net(probe)
    layers = []
    for info in infos:
        rec = cap.records[info.index]
        layers.append(
            {
                **info.to_dict(),
                "path": info.path,
                "signature": rec.signature,
                "grid": list(rec.grid) if rec.grid else None,
            }
        )
    return AnyInfoResult(
        name=loaded.name,
        num_params=sum(p.numel() for p in net.parameters()),
        input_size=(h, w),
        layers=layers,
        rejected=[r.to_dict() for r in rejected],
        weights=loaded.provenance,
        settings={
            "model_fn": request.weights.model_fn,
            "hub": request.weights.hub,
            "model_kwargs": request.weights.model_kwargs,
            "checkpoint": request.weights.checkpoint,
            "seed": request.weights.seed,
            "input_size": [h, w],
            "device": str(device),
        },
        environment=environment(device),
    )
