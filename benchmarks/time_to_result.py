"""Time to result: hilo's one-image and 48-image runs against the work no run can avoid.

    python benchmarks/time_to_result.py [--repeats 3] [--figures-at 224,1024] [--skip-figures]

The bare work ("bare"): a fresh Python that imports torch, builds LITv2-S (random init, the same
seed), decodes the same image(s) with PIL (resize shorter side to 256, centre crop 224, normalise)
and forwards them (batches of 16, as `hilo spectrum`). Every hilo run is a fresh `python -m
hilocli` with `--random-init` (time does not depend on the weights). Bare and hilo runs are
interleaved, case by case, `--repeats` times after one untimed run of each (bytecode cached as in
any installed Python: see CHILD_ENV); each time is the best (smallest) of its repeats, so a
burst of load from other jobs on a shared machine hurts both sides alike; the median over the
repeats of each pair's ratio is printed beside it. Wall time is the goal;
CPU time (user + system of the process and its children, also best of the repeats) is printed
beside it because it moves far less with the load of other jobs. Cases:

  spectrum, 1 image    hilo spectrum chelsea.jpg --random-init --layer 3      goal <= 1.5x
  attn-map, 1 image    hilo attn-map chelsea.jpg --random-init                goal <= 2.0x
  spectrum, 48 images  hilo spectrum DIR --random-init (48 JPEGs of 256 px)   goal <= 1.35x

`--no-bytecode-cache` runs the children as this project's VM shells do (PYTHONDONTWRITEBYTECODE=1).

The 48 images are crops and rescales of the four samples, written to a temp folder. Then, in this
process, the default figures of each command (and of `hilo compare`) are drawn once per input size
in `--figures-at`, and each is timed from the Figure's creation to the end of its `savefig`
(building + saving) and its file size reported. `--workers-check` adds `hilo spectrum DIR` with
`--workers 1` against `--workers 0` (on 2 cores the default is 0: `hilocli.batches`).
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
SAMPLES = ROOT / "samples"

BARE = """
import sys
import numpy as np
import torch
from PIL import Image
from hilocli.models.config import get_variant
from hilocli.models.litv2 import LITv2

torch.manual_seed(0)
net = LITv2(get_variant("litv2_s").cfg).eval()
mean = np.array([0.485, 0.456, 0.406], np.float32)
std = np.array([0.229, 0.224, 0.225], np.float32)

def decode(path):
    img = Image.open(path).convert("RGB")
    w, h = img.size
    k = 256 / min(w, h)
    img = img.resize((max(224, round(w * k)), max(224, round(h * k))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - 224) // 2, (h - 224) // 2
    arr = np.asarray(img.crop((left, top, left + 224, top + 224)), np.float32) / 255
    return torch.from_numpy(((arr - mean) / std).transpose(2, 0, 1).copy())  # (3, 224, 224)

paths = sys.argv[1:]
with torch.inference_mode():
    for i in range(0, len(paths), 16):
        net(torch.stack([decode(p) for p in paths[i : i + 16]]))  # (B, 3, 224, 224)
"""

GOALS = {"spectrum, 1 image": 1.5, "attn-map, 1 image": 2.0, "spectrum, 48 images": 1.35}


def make_images(folder: Path, n: int = 48, side: int = 256) -> list[Path]:
    """n JPEGs of side x side px: crops at several scales and places of the four samples."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(SAMPLES.glob("*.jpg"))
    paths = []
    for k in range(n):
        img = Image.open(sources[k % len(sources)]).convert("RGB")
        w, h = img.size
        scale = (0.45, 0.6, 0.75, 0.9)[(k // len(sources)) % 4]
        c = int(min(w, h) * scale)
        fx, fy = ((k // 16) % 3) / 2, ((k // 4) % 3) / 2  # left/centre/right, top/middle/bottom
        box = (int(fx * (w - c)), int(fy * (h - c)), int(fx * (w - c)) + c, int(fy * (h - c)) + c)
        path = folder / f"img{k:02d}.jpg"
        img.crop(box).resize((side, side), Image.BICUBIC).save(path, quality=90)
        paths.append(path)
    return paths


# Python as installed anywhere: modules compiled once and their bytecode cached. A shell that sets
# PYTHONDONTWRITEBYTECODE (this project's VMs do) recompiles every imported module of a source
# checkout on every run, a cost no installed hilo pays; the children run without it.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the process and its children) of one run."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=CHILD_ENV)
    _, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{err.decode()[-2000:]}")
    return wall, _children_cpu()


_cpu_seen = [0.0]


def _children_cpu() -> float:
    """CPU seconds of the children reaped since the last call (os.times counts them all)."""
    t = os.times()
    total = t.children_user + t.children_system
    took, _cpu_seen[0] = total - _cpu_seen[0], total
    return took


def cases(tmp: Path, images: list[Path], workers_check: bool) -> list[tuple[str, list, list]]:
    py, hilo = sys.executable, [sys.executable, "-m", "hilocli"]
    chelsea = str(SAMPLES / "chelsea.jpg")
    folder = str(images[0].parent)
    out = [
        (
            "spectrum, 1 image",
            [py, "-c", BARE, chelsea],
            hilo + ["spectrum", chelsea, "--random-init", "--layer", "3"],
        ),
        (
            "attn-map, 1 image",
            [py, "-c", BARE, chelsea],
            hilo + ["attn-map", chelsea, "--random-init"],
        ),
        (
            "spectrum, 48 images",
            [py, "-c", BARE, *map(str, images)],
            hilo + ["spectrum", folder, "--random-init"],
        ),
    ]
    if workers_check:  # "bare" here: hilo with --workers 0; ratio > 1: the worker costs time
        out.append(
            (
                "spectrum, 48 images, --workers 1 against --workers 0",
                hilo + ["spectrum", folder, "--random-init", "--workers", "0"],
                hilo + ["spectrum", folder, "--random-init", "--workers", "1"],
            )
        )
    return [
        (name, bare, cmd + ["--out", str(tmp / f"out{k}")])
        for k, (name, bare, cmd) in enumerate(out)
    ]


def ratios(tmp: Path, images: list[Path], repeats: int, workers_check: bool) -> None:
    """Print, per case, the best wall and CPU times of each side and their ratios, and the median
    of the ratios of each repeat's pair (bare and hilo run one after the other: a slow spell of
    a shared machine falls on both runs of a pair, where best-of can take the sides' minima from
    different spells)."""
    runs = cases(tmp, images, workers_check)
    # per case, one entry per repeat: ((bare wall, bare CPU), (hilo wall, hilo CPU))
    times: dict[str, list] = {name: [] for name, _, _ in runs}
    for _, bare, cmd in runs:  # untimed: the bytecode cache written, the files in the page cache
        timed(bare), timed(cmd)
    _children_cpu()
    for r in range(repeats):
        for name, bare, cmd in runs:  # interleaved: bare, hilo, next case, ...
            times[name].append([timed(bare), timed(cmd)])
        print(f"  repeat {r + 1}/{repeats} done", file=sys.stderr)
    print(
        "\n| run | bare work | hilo | ratio | paired (median) | goal | CPU: bare | hilo | ratio |"
        "\n|---|---|---|---|---|---|---|---|---|"
    )
    for name, pairs in times.items():
        t = np.array(pairs)  # (repeats, side, [wall, cpu])
        (bw, bc), (hw, hc) = t.min(axis=0)
        paired = float(np.median(t[:, 1, 0] / t[:, 0, 0]))
        goal = f"<= {GOALS[name]:.2f}x" if name in GOALS else "-"
        print(
            f"| {name} | {bw:.2f} s | {hw:.2f} s | {hw / bw:.2f}x | {paired:.2f}x | {goal} "
            f"| {bc:.2f} s | {hc:.2f} s | {hc / bc:.2f}x |"
        )


def two_checkpoints(tmp: Path) -> list[str]:
    """Two random-init LITv2-S checkpoints (seeds 0 and 1) for `hilo compare`."""
    import torch

    from hilocli.models import create_model

    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = tmp / f"litv2_s_seed{seed}.pth"
        torch.save(create_model("litv2_s").state_dict(), path)
        paths.append(str(path))
    return paths


def figure_times(tmp: Path, images: list[Path], sizes: list[int]) -> None:
    """Draw and save the default figures of each command in this process; print a table of
    (command, input px, file, KiB, seconds from Figure() to the end of savefig)."""
    import matplotlib.figure

    from hilocli.cli import app
    from hilocli.output import OutputSet

    born: dict[int, float] = {}
    rows: list[tuple[str, int, str, float, float]] = []
    init, save = matplotlib.figure.Figure.__init__, OutputSet.figure
    where = {"command": "", "size": 0}

    def timed_init(self, *args, **kwargs):
        born[id(self)] = time.perf_counter()
        init(self, *args, **kwargs)

    def timed_save(self, name, fig, **kwargs):
        path = save(self, name, fig, **kwargs)
        took = time.perf_counter() - born.pop(id(fig))
        rows.append((where["command"], where["size"], name, self._stage(name).stat().st_size, took))
        return path

    matplotlib.figure.Figure.__init__, OutputSet.figure = timed_init, timed_save
    chelsea = str(SAMPLES / "chelsea.jpg")
    checkpoints = two_checkpoints(tmp)
    try:
        for size in sizes:
            res = ["--resolution", str(size)]
            for command, argv in (
                ("spectrum 1", ["spectrum", chelsea, "--layer", "3"]),
                ("attn-map 1", ["attn-map", chelsea]),
                ("spectrum 48", ["spectrum", str(images[0].parent)]),
                ("compare 1", ["compare", chelsea, "-c", checkpoints[0], "-c", checkpoints[1]]),
            ):
                if command == "spectrum 48" and size != sizes[0]:
                    continue  # 48 images at 1024 px: the same figures, a long forward
                where.update(command=command, size=size)
                out = tmp / f"fig-{command.replace(' ', '')}-{size}"
                weights = [] if command.startswith("compare") else ["--random-init"]
                args = [*argv, *weights, *res, "--out", str(out)]
                try:
                    app(args, standalone_mode=False)
                except SystemExit as exc:  # a failure prints its line; keep the other rows
                    print(f"{command} at {size}: exit {exc.code}", file=sys.stderr)
    finally:
        matplotlib.figure.Figure.__init__, OutputSet.figure = init, save
    print("\n| command | input px | figure | size | draw + save |\n|---|---|---|---|---|")
    for command, size, name, nbytes, took in rows:
        print(f"| {command} | {size} | {name} | {nbytes / 1024:.0f} KiB | {took:.2f} s |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--figures-at", default="224,1024", help="input sizes of the figure table")
    ap.add_argument("--skip-figures", action="store_true")
    ap.add_argument("--skip-ratios", action="store_true")
    ap.add_argument("--workers-check", action="store_true")
    ap.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="run the children with PYTHONDONTWRITEBYTECODE=1 (every module compiled every run)",
    )
    args = ap.parse_args()
    if args.no_bytecode_cache:
        CHILD_ENV["PYTHONDONTWRITEBYTECODE"] = "1"
    import torch

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} cores, python {sys.version.split()[0]}, bytecode cache "
        f"{'off' if args.no_bytecode_cache else 'on'}, "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}"
    )
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        images = make_images(tmp / "images48")
        if not args.skip_ratios:
            ratios(tmp, images, args.repeats, args.workers_check)
        if not args.skip_figures:
            figure_times(tmp, images, [int(s) for s in args.figures_at.split(",")])


if __name__ == "__main__":
    main()
