"""LITv2 forward speed: explicit vs fused (SDPA) vs compiled attention paths, float32 vs
bfloat16, with the share of the machine's matmul peak measured in the same run.

    python benchmarks/forward.py [--model litv2_s] [--batch 8] [--resolution 224] [--repeats 5]
                                 [--compile] [--dtypes float32,bfloat16] [--baseline DIR]

Eval mode, no_grad, random-init weights (speed does not depend on the values). Each row: warm-up
runs until two consecutive times agree within 10% (at most 5), then `--repeats` timed runs; the
median and the spread (min..max). CUDA rows (when a GPU is present) are timed with CUDA events.

Peak: the median GFLOP/s of a large square matmul (float32 and bfloat16) in the
same process. Model FLOP utilisation (MFU) = 2 x analytic MACs (hilocli.flops, the authors'
convention) x images/s / peak of the dtype's matmul. `--compile` adds torch.compile rows and
prints the compile time (first call) apart. `--baseline DIR` (a hilocli tree, e.g. from
`git archive 3ed431e hilocli | tar -x -C DIR`) adds that tree's model for a same-run ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from hilocli.flops.analytic import model_cost
from hilocli.flops.kernels import matmul_peak, seconds_of
from hilocli.models import create_model
from hilocli.runtime import forward_context, resolve_precision


def timer(device: torch.device):
    """A function (call) -> seconds that is honest on the device (CUDA events on a GPU)."""
    cuda = device.type == "cuda"
    return lambda call: seconds_of(call, cuda)


def measure(call, device: torch.device, repeats: int) -> list[float]:
    clock = timer(device)
    prev = clock(call)
    for _ in range(5):  # warm up until two runs agree within 10%
        now = clock(call)
        if abs(now - prev) <= 0.1 * min(now, prev):
            break
        prev = now
    return [clock(call) for _ in range(repeats)]


def load_baseline(tree: Path, cfg):
    """The LITv2 class of another hilocli tree (for a same-run comparison)."""
    spec = importlib.util.spec_from_file_location("baseline_litv2", tree / "models" / "litv2.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.LITv2(cfg).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="litv2_s")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile")
    ap.add_argument("--baseline", type=Path, help="another hilocli tree to compare against")
    args = ap.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    con = Console()
    for device in devices:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        peaks = {"float32": matmul_peak(device, "float32", args.repeats)}
        peaks["bfloat16"] = matmul_peak(device, "bfloat16", args.repeats)
        if device.type == "cuda":
            peaks["float16"] = peaks["bfloat16"]
        model = create_model(args.model).eval().to(device)
        res = args.resolution
        gflop_per_img = model_cost(model.cfg, res).flops / 1e9
        x = torch.randn(args.batch, 3, res, res, device=device)
        table = Table(
            title=f"{args.model} forward, batch {args.batch} at {res}x{res} on {name} "
            f"(torch {torch.__version__}, {torch.get_num_threads()} threads); "
            f"{gflop_per_img:.2f} GFLOP/img analytic; matmul peak "
            + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items())
            + " GFLOP/s"
        )
        for col in ("path", "dtype", "img/s", "spread", "GFLOP/s", "share of peak", "vs fused"):
            table.add_column(col, justify="right")
        runs = []
        base = load_baseline(args.baseline, model.cfg).to(device) if args.baseline else None
        if base is not None:
            base.load_state_dict(model.state_dict())
        for dtype in args.dtypes.split(","):
            prec = resolve_precision(dtype, device)
            paths = [("fused", model, False), ("explicit", model, True)]
            if base is not None:
                paths.append(("baseline tree (fused)", base, False))
            if args.compile:
                paths.append(("compiled (fused)", torch.compile(model), False))
            fused_rate = None
            for label, net, explicit in paths:
                getattr(net, "set_need_weights", model.set_need_weights)(explicit)
                with forward_context(prec):
                    if label.startswith("compiled"):
                        t0 = time.perf_counter()
                        out = net(x)
                        con.print(f"{dtype}: compile + first call {time.perf_counter() - t0:.1f} s")
                        diff = (out.float() - model(x).float()).abs().max().item()
                        con.print(f"{dtype}: compiled vs eager logits, max |diff| {diff:.2e}")
                    times = measure(lambda net=net, x=x: net(x), device, args.repeats)
                rate = args.batch / statistics.median(times)
                fused_rate = rate if label == "fused" else fused_rate
                gflops = rate * gflop_per_img
                runs.append((label, dtype, rate))
                table.add_row(
                    label,
                    dtype,
                    f"{rate:.2f}",
                    f"{args.batch / max(times):.2f}-{args.batch / min(times):.2f}",
                    f"{gflops:.0f}",
                    f"{gflops / peaks[prec.dtype]:.0%}",
                    f"{rate / fused_rate:.2f}x" if fused_rate else "-",
                )
        con.print(table)


if __name__ == "__main__":
    main()
