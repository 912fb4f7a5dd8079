"""Images/s of `hilo spectrum` end to end over a folder, by decoding workers and processes, and
peak memory against the number of images.

    python benchmarks/throughput.py [--images 1000] [--model tiny|litv2_s] [--resolution 64]
                                    [--batch-size 32] [--device cpu|cuda] [--rss-at 250,1000]

Each row is one fresh `hilo spectrum` process (or one `torchrun` of N processes) on the same
folder of `--images` synthetic JPEGs (320 x 240, written once into a temp folder), timed from
start to exit: import, weights, decoding, forward, analysis, statistics, figures and files
(what a user waits for). Weights: the tiny test checkpoint (`--model tiny`, default: decoding
dominates, which is what workers change) or a random-init released architecture.

Rows:
  workers 0/1/2     one process, N decoding workers
  processes 2       torchrun --nproc_per_node 2 (gloo on the CPU; NCCL with --device cuda),
                    1 worker each, OMP_NUM_THREADS = cores / 2
  rss at K images   the same one-process run on the first K images: peak RSS of the largest
                    process (flat = memory does not grow with the number of images)
On CUDA (--device cuda) it also times the bare forward on the same batches (no decoding) and
prints the share of the end-to-end time the GPU would wait for data.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "fixtures" / "litv2_tiny_a.pth"


def write_folder(folder: Path, count: int) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:240, 0:320]
    for i in range(count):
        base = 127 + 80 * np.sin(x / (3 + i % 7)) * np.cos(y / (5 + i % 5))
        base = base + rng.normal(0, 25, base.shape)
        rgb = np.stack([base, base[::-1], base[:, ::-1]], -1).clip(0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"img{i:04d}.jpg", quality=90)
    return folder


def timed_process(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB of the largest process in its tree) of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr.read().decode()}")
    return wall, usage.ru_maxrss / 1024  # Linux: KiB


def bare_forward_seconds(args) -> float:
    """Seconds the model's forward alone takes for --images images (random inputs, no decoding,
    no analysis), after one warm-up batch: what end to end is compared with."""
    import torch

    from hilocli.runtime import resolve_device
    from hilocli.weights import WeightsRequest

    device = resolve_device(args.device)
    if args.model == "tiny":
        request = WeightsRequest(checkpoint=TINY)
    else:
        request = WeightsRequest(model=args.model, pretrained=False)
    model = request.load(device).model.eval()
    x = torch.randn(args.batch_size, 3, args.resolution, args.resolution, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        model(x)
        sync()
        start = time.perf_counter()
        for _ in range(-(-args.images // args.batch_size)):
            model(x)
        sync()
    return time.perf_counter() - start


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--model", default="tiny", help="tiny (test checkpoint) or a released name")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--rss-at", default="250,1000")
    ap.add_argument("--repeats", type=int, default=1, help="rounds over the rows (median)")
    args = ap.parse_args()
    con = Console(stderr=True)
    weights = ["--checkpoint", str(TINY)]
    if args.model != "tiny":
        weights = ["--model", args.model, "--random-init"]
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(Path(tmp) / "images", args.images)
        common = [str(folder), *weights, "--resolution", str(args.resolution), "--batch-size",
                  str(args.batch_size), "--device", args.device]  # fmt: skip
        env = {**os.environ, "MPLBACKEND": "Agg"}
        rows = []

        def spectrum(extra: list[str], limit: int | None = None, procs: int = 1):
            out = Path(tmp) / "out"
            tail = [*common, *extra, "--out", str(out)]
            if limit is not None:
                tail += ["--limit", str(limit)]
            if procs == 1:
                return timed_process([sys.executable, "-m", "hilocli", "spectrum", *tail], env)
            run_env = {**env, "OMP_NUM_THREADS": str(max(1, cores // procs))}
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs),
                   "-m", "hilocli", "spectrum", *tail]  # fmt: skip
            return timed_process(cmd, run_env)

        configs = [(f"1 process, workers {w}", ["--workers", str(w)], None, 1, args.images)
                   for w in [int(v) for v in args.workers.split(",")]]  # fmt: skip
        if args.processes > 1:
            name = f"{args.processes} processes (torchrun), workers 1"
            configs.append((name, ["--workers", "1"], None, args.processes, args.images))
        for k in [int(v) for v in args.rss_at.split(",")]:
            configs.append((f"1 process, workers 1, first {k} images", ["--workers", "1"], k, 1, k))
        walls: dict[str, list[float]] = {c[0]: [] for c in configs}
        peaks: dict[str, float] = {}
        for _round in range(args.repeats):  # interleaved: load changes hit every row alike
            for name, extra, limit, procs, _n in configs:
                wall, rss = spectrum(extra, limit, procs)
                walls[name].append(wall)
                peaks[name] = max(peaks.get(name, 0.0), rss)
                con.print(f"{name}: {wall:.1f} s")
        rows += [(name, n, float(np.median(walls[name])), peaks[name])
                 for name, _e, _l, _p, n in configs]  # fmt: skip
    forward = bare_forward_seconds(args)
    rows.append(("bare forward (no decoding, no analysis)", args.images, forward, float("nan")))
    best = min(wall for name, n, wall, _ in rows if n == args.images and "bare" not in name)
    table = Table(
        title=f"hilo spectrum end to end: {args.images} JPEGs 320x240, {args.model}, "
        f"{args.resolution} px, batch {args.batch_size}, {args.device}, {cores} cores"
    )
    for col in ("run", "images", "wall s", "images/s", "peak RSS MiB"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for name, n, wall, rss in rows:
        table.add_row(name, str(n), f"{wall:.1f}", f"{n / wall:.1f}", f"{rss:.0f}")
    Console().print(table)
    Console().print(
        f"best end to end vs bare forward: {forward / best:.0%} of the wall time is the forward; "
        f"the device waits (start-up, decoding, analysis, files) {1 - forward / best:.0%} of it"
    )


if __name__ == "__main__":
    main()
