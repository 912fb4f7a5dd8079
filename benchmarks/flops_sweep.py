"""Cost of litv2_s and of each attention type from 224 to 1024 pixels, measured on this machine.

Runs `hilo flops --sweep ... --benchmark` (every case in its own process on CPU), saves the figure
(docs/img/flops_sweep_litv2_s.png by default) and prints a Markdown table for docs/benchmarks.md.

    python benchmarks/flops_sweep.py [--sizes 224,384,512,768,1024] [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


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
    cmd = [sys.executable, "-m", "hilocli", "flops", "--model", args.model, "--sweep", args.sizes,
           "--device", args.device, "--threads", str(args.threads), "--repeats", str(args.repeats),
           "--warmup", str(args.warmup), "--batch-size", str(args.batch_size), "--out",
           str(args.out), "--json"] + ([] if args.no_benchmark else ["--benchmark"])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(proc.stderr.strip())
    d = json.loads(proc.stdout)
    print(f"figure: {d['figure']}")
    print("\nGMACs per image (attention: one layer at the stage-3 map)\n")
    print(f"| resolution | grid | {args.model} | MSA | SRA | Window | HiLo |")
    print("|---|---|---|---|---|---|---|")
    for p in d["sweep"]:
        a = {r["name"]: r["macs"] / 1e9 for r in p["attention"]}
        print(f"| {p['resolution']} | {p['grid'][0]}x{p['grid'][1]} | {p['model_macs'] / 1e9:.2f} | "
              f"{a['MSA']:.3f} | {a['SRA']:.3f} | {a['Window']:.3f} | {a['HiLo']:.3f} |")
    if "benchmark" in d:
        env = d["benchmark"]["environment"]
        print(f"\nmeasured: torch {env['torch']}, {env.get('device')}, "
              f"{d['benchmark']['results'][0]['threads']} threads, batch {args.batch_size}, float32, "
              f"{args.warmup} warm-up + {args.repeats} timed runs (median [min-max])\n")
        print("| what | size | img/s median [min-max] | peak memory growth (MiB) | status |")
        print("|---|---|---|---|---|")
        for r in d["benchmark"]["results"]:
            c = r["case"]
            unit = "px" if c["kind"] == "model" else "tokens"
            rate = ("-" if r["img_per_s"] is None else
                    f"{r['img_per_s']:.1f} [{r['img_per_s_min']:.1f}-{r['img_per_s_max']:.1f}]")
            mem = "-" if r["peak_memory_bytes"] is None else f"{r['peak_memory_bytes'] / 2**20:.1f}"
            print(f"| {c['name']} | {c['height']}x{c['width']} {unit} | {rate} | {mem} | "
                  f"{r['status']} |")


if __name__ == "__main__":
    main()
