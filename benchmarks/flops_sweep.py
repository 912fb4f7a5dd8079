"""Cost of litv2_s and of each attention type from 224 to 1024 pixels, measured on this machine.

Calls `hilocli.flops.run` with a sweep and benchmarks (every CPU case in its own process), saves
the figure (docs/img/flops_sweep_litv2_s.png by default) and prints Markdown tables for
docs/benchmarks.md. Unstable cases (spread > 20%) are marked, and drawn hollow in the figure.

    python benchmarks/flops_sweep.py [--sizes 224,384,512,768,1024] [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hilocli.flops import FlopsRequest, run
from hilocli.flops.figures import sweep_figure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="litv2_s")
    ap.add_argument("--sizes", default="224,384,512,768,1024")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    ap.add_argument("--no-benchmark", action="store_true", help="analytic figure only")
    args = ap.parse_args()
    request = FlopsRequest(
        model=args.model,
        sweep=tuple(int(s) for s in args.sizes.split(",")),
        benchmark=not args.no_benchmark,
        device=args.device,
        threads=args.threads,
        repeats=args.repeats,
        warmup=args.warmup,
        batch_size=args.batch_size,
    )
    result = run(request, progress=print)
    fig = sweep_figure(result.points, result.arch.name, result.bench, args.batch_size)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"flops_sweep_{result.arch.name}.png"
    fig.savefig(path, bbox_inches="tight")
    print(f"figure: {path}")
    print("\nGMACs per image (attention: one layer at the stage-3 map)\n")
    print(f"| resolution | grid | {args.model} | MSA | SRA | Window | HiLo |")
    print("|---|---|---|---|---|---|---|")
    for p in result.points:
        a = {r.name: r.macs / 1e9 for r in p.attention}
        print(
            f"| {p.resolution} | {p.grid[0]}x{p.grid[1]} | {p.model_macs / 1e9:.2f} | "
            f"{a['MSA']:.3f} | {a['SRA']:.3f} | {a['Window']:.3f} | {a['HiLo']:.3f} |"
        )
    if not result.bench:
        return
    env = result.environment
    if result.busy:
        print(
            f"\nWARNING: busy machine (load average up to {max(result.load_average):.1f} on "
            f"{env.get('cpu_count')} CPUs): other processes slowed these timings; rerun when "
            "the machine is quiet before publishing them"
        )
    print(
        f"\nmeasured: torch {env['torch']}, {env.get('device')}, {result.bench[0].threads} "
        f"threads, batch {args.batch_size}, float32, warm-up until settled (at least "
        f"{args.warmup} runs) + {args.repeats} timed runs (median [min-max], spread = IQR / "
        "median)\n"
    )
    print("| what | size | img/s median [min-max] | spread | peak memory growth (MiB) | status |")
    print("|---|---|---|---|---|---|")
    for r in result.bench:
        c = r.case
        unit = "px" if c.kind == "model" else "tokens"
        rate = (
            "-"
            if r.img_per_s is None
            else f"{r.img_per_s:.1f} [{r.img_per_s_min:.1f}-{r.img_per_s_max:.1f}]"
        )
        spread = "-" if r.spread is None else f"{r.spread:.0%}"
        mem = "-" if r.peak_memory_bytes is None else f"{r.peak_memory_bytes / 2**20:.1f}"
        print(f"| {c.name} | {c.height}x{c.width} {unit} | {rate} | {spread} | {mem} | {r.label} |")


if __name__ == "__main__":
    main()
