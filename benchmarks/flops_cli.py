"""Wall time of `hilo flops --resolution 1024` (tables printed, Python start included), and of
`hilocli.flops.run` alone, in process.

Goal (issue 5): under 3 s on 2 CPU cores. Runs the real entry point in fresh processes and prints
every run, the median and the spread.

    python benchmarks/flops_cli.py [--runs 7] [--resolution 1024]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from hilocli.flops import FlopsRequest, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--resolution", type=int, default=1024)
    args = ap.parse_args()
    cmd = [sys.executable, "-m", "hilocli", "flops", "--resolution", str(args.resolution)]
    times = []
    for i in range(args.runs + 1):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"failed: {proc.stderr.strip()}")
        if "one attention layer" not in proc.stderr:
            sys.exit("the tables were not printed")
        if i == 0:
            print(f"warm-up run (file cache): {dt:.2f} s")
            continue
        times.append(dt)
        print(f"run {i}: {dt:.2f} s")
    print(
        f"`{' '.join(cmd[1:])}` on {os.cpu_count()} CPUs: "
        f"median {statistics.median(times):.2f} s, min {min(times):.2f} s, "
        f"max {max(times):.2f} s over {len(times)} runs"
    )
    request = FlopsRequest(resolution=args.resolution)
    in_process = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        run(request)
        in_process.append(time.perf_counter() - t0)
    print(
        f"hilocli.flops.run alone: median {statistics.median(in_process) * 1e3:.1f} ms over "
        f"{len(in_process)} runs"
    )


if __name__ == "__main__":
    main()
