"""Images/s of litv2_s with the explicit attention path vs the fused (SDPA) path.

    python benchmarks/forward.py [--batch-sizes 8,64] [--resolution 224] [--repeats 5]

Eval mode, no_grad, random-init weights (speed does not depend on the values), one warm-up run,
then `--repeats` timed runs; prints the median and the spread (min..max) per setting. CUDA rows
appear when a GPU is present (synchronised before and after each timed run).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

from hilocli.models import create_model


def time_forward(model, x, explicit: bool, repeats: int, device: torch.device) -> list[float]:
    model.set_need_weights(explicit)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.no_grad():
        model(x)  # warm-up
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            model(x)
            sync()
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="litv2_s")
    ap.add_argument("--batch-sizes", default="8,64")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    table = Table(
        title=f"{args.model} forward at {args.resolution}x{args.resolution}, images/s "
        f"(torch {torch.__version__}, {torch.get_num_threads()} CPU threads)"
    )
    for col in ("device", "batch", "explicit img/s", "fused img/s", "fused/explicit", "spread"):
        table.add_column(col, justify="right")
    for device in devices:
        model = create_model(args.model).to(device)
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            x = torch.randn(batch, 3, args.resolution, args.resolution, device=device)
            rates = {}
            spread = []
            for explicit in (True, False):
                t = time_forward(model, x, explicit, args.repeats, device)
                rates[explicit] = batch / statistics.median(t)
                spread.append(f"{batch / max(t):.1f}-{batch / min(t):.1f}")
            name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
            table.add_row(
                name,
                str(batch),
                f"{rates[True]:.1f}",
                f"{rates[False]:.1f}",
                f"{rates[False] / rates[True]:.2f}x",
                " / ".join(spread),
            )
    Console().print(table)


if __name__ == "__main__":
    main()
