"""Wall time and peak memory of `hilo attn-map` at several resolutions, one subprocess per run.

    python benchmarks/attn_map.py [--model litv2_s] [--sizes 224,512,1024] [--device cpu]
                                  [--chunk-size 256] [--unchunked] [--heads all]

Weights: random init (time and memory do not depend on the weight values). Image: a synthetic
1600 x 1200 JPEG written to a temp folder (centre crop to each size). Every run is a fresh
process; peak memory is its peak resident set size (ru_maxrss from wait4), so it counts the
Python interpreter, torch, the model, the forward pass, the attention analysis and the figures.
Rows:

  idle       import torch + hilocli, build the model: the fixed floor
  forward    idle + one forward at the size (fused attention): what any command pays
  analysis   forward + capture + the whole-image summaries of every HiLo layer (no figures),
             with the pure functions of `hilocli.attn_map`: the part chunking bounds
  attn-map   the whole command (default layers: all; default queries; figures, JSON)

growth = (analysis peak - idle) at the size / the same at the previous size; feature = stage-3
tokens at the size / at the previous size (the feature map's growth). growth / feature <= 1 means
peak memory grows no faster than the feature map. `--unchunked` adds a run with one chunk holding
every query (the whole (heads, N, M) matrix of each layer at once) for comparison.
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
from rich.console import Console
from rich.table import Table

IDLE = """
import torch
from hilocli.weights import WeightsRequest
loaded = WeightsRequest(model={model!r}, pretrained=False).load({device!r}, progress=False)
m = loaded.model
"""
FORWARD = (
    IDLE
    + """
x = torch.randn(1, 3, {size}, {size}, device={device!r})
with torch.no_grad():
    m(x)
"""
)
ANALYSIS = FORWARD.replace(
    "    m(x)\n",
    """    from hilocli.attn_map.maps import layer_qk
    from hilocli.attn_map.summaries import summarise_layer
    from hilocli.hilo.capture import capture
    with capture(m, loaded.layers, verify=True) as cap:
        m(x)
    for layer in loaded.layers:
        rec = cap.records[layer.index]
        g = layer.geometry(rec.grid, ({size}, {size}), rec.pooling)
        qk = layer_qk(layer, rec.control, g)
        summarise_layer(qk, {chunk})
        del qk
""",
)


def run(cmd: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit code) of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.stderr.write(proc.stderr.read().decode() + "\n")
    return wall, usage.ru_maxrss / 1024, proc.returncode  # Linux: ru_maxrss in KiB


def synthetic_image(folder: Path) -> Path:
    from PIL import Image

    y, x = np.mgrid[0:1200, 0:1600]
    rng = np.random.default_rng(0)
    base = 127 + 80 * np.sin(x / 23.0) * np.cos(y / 31.0) + rng.normal(0, 20, (1200, 1600))
    rgb = np.stack([base, base[::-1], base[:, ::-1]], -1).clip(0, 255).astype(np.uint8)
    path = folder / "bench.jpg"
    Image.fromarray(rgb).save(path, quality=90)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="litv2_s")
    ap.add_argument("--sizes", default="224,512,1024")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--heads", default="all")
    ap.add_argument("--unchunked", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    py = sys.executable
    console = Console(stderr=False, width=200)

    import torch

    from hilocli.models import get_variant, grid_sizes, split_heads

    cfg = get_variant(args.model).cfg
    stage3 = [grid_sizes(cfg, s, s)[2] for s in sizes]
    lofi_heads = split_heads(cfg.num_heads[2], cfg.alpha, cfg.local_ws[2])[1]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        image = synthetic_image(Path(tmp))
        idle_wall, idle_rss, _ = run([py, "-c", IDLE.format(model=args.model, device=args.device)])
        for size, grid in zip(sizes, stage3):
            fwd_wall, fwd_rss, _ = run(
                [py, "-c", FORWARD.format(model=args.model, size=size, device=args.device)]
            )
            cmd = [
                py,
                "-m",
                "hilocli",
                "attn-map",
                str(image),
                "--model",
                args.model,
                "--random-init",
                "--resolution",
                str(size),
                "--device",
                args.device,
                "--heads",
                args.heads,
                "--out",
                str(Path(tmp) / f"out{size}"),
            ]
            wall, rss, code = run(cmd + ["--chunk-size", str(args.chunk_size)])
            an_wall, an_rss, _ = run(
                [
                    py,
                    "-c",
                    ANALYSIS.format(
                        model=args.model, size=size, device=args.device, chunk=args.chunk_size
                    ),
                ]
            )
            rows.append((f"{size}", grid, fwd_wall, fwd_rss, wall, rss, code, an_wall, an_rss))
        if args.unchunked:
            size, grid = sizes[-1], stage3[-1]
            wall, rss, code = run(
                cmd[:-2] + ["--out", str(Path(tmp) / "outU"), "--chunk-size", str(10**9)]
            )
            an_wall, an_rss, _ = run(
                [
                    py,
                    "-c",
                    ANALYSIS.format(model=args.model, size=size, device=args.device, chunk=10**9),
                ]
            )
            rows.append(
                (f"{size} unchunked", grid, fwd_wall, fwd_rss, wall, rss, code, an_wall, an_rss)
            )

    table = Table(
        title=f"hilo attn-map, {args.model} (random init), {args.device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"chunk {args.chunk_size} queries, --heads {args.heads}",
        title_justify="left",
    )
    for col in (
        "size",
        "stage-3 grid",
        "forward s",
        "forward MiB",
        "analysis s",
        "analysis MiB",
        "analysis - forward MiB",
        "attn-map s",
        "attn-map MiB",
        "growth",
        "feature",
        "growth/feature",
        "full Lo-Fi matrix / layer",
    ):
        table.add_column(col, justify="right")
    prev = None  # the previous (chunked) size: growth is measured step by step
    for label, grid, fwd_wall, fwd_rss, wall, rss, code, an_wall, an_rss in rows:
        tokens = grid[0] * grid[1]
        extra = an_rss - idle_rss
        if prev is None or prev[1] < 32:  # nothing measurable above idle to grow from
            growth = feature = ratio = "-" if prev is None else "n/a (<32 MiB before)"
        else:
            g = extra / max(prev[1], 1.0)
            f = tokens / prev[0]
            growth, feature, ratio = f"{g:.2f}x", f"{f:.2f}x", f"{g / f:.2f}"
        full = f"{4 * lofi_heads * tokens * tokens // 4 / 2**20:.1f} MiB" if lofi_heads else "-"
        table.add_row(
            label if code == 0 else f"{label} (exit {code})",
            f"{grid[0]}x{grid[1]}",
            f"{fwd_wall:.1f}",
            f"{fwd_rss:.0f}",
            f"{an_wall:.1f}",
            f"{an_rss:.0f}",
            f"{an_rss - fwd_rss:.0f}",
            f"{wall:.1f}",
            f"{rss:.0f}",
            growth,
            feature,
            ratio,
            full,
        )
        if "unchunked" not in label:
            prev = (tokens, extra)
    console.print(table)
    console.print(
        f"idle (python + torch + model): {idle_rss:.0f} MiB, {idle_wall:.1f} s. "
        "growth = (analysis peak - idle) relative to the previous size; feature = "
        f"stage-3 tokens relative to the previous size; full Lo-Fi matrix = {lofi_heads} "
        "heads x N x N/4 float32 (what chunking avoids)."
    )


if __name__ == "__main__":
    main()
