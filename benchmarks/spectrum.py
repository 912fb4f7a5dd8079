"""Images/s of `hilo spectrum` end to end vs the bare model forward on the same images.

    python benchmarks/spectrum.py [FOLDER] [--model litv2_s] [--images 32] [--batch-size 16]
                                  [--resolution 224] [--repeats 3] [--device cpu|cuda|auto]

Without FOLDER, `--images` synthetic JPEGs (500 x 375, textured) are written to a temp folder.
Weights: random init (speed does not depend on the values). Rows, all on the same images, device
and batch size, median of `--repeats` runs after one warm-up:

  decode      load_many(): read, resize, crop, normalise (no model)
  forward     model(x) on pre-decoded batches (fused attention path): the baseline
  fwd+anal.   SpectrumCollector.add_batch(x): forward + capture + FFT statistics, default layers
              (its forward stops after the last chosen layer, so it can undercut `forward`)
  + <option>  the same with one optional measure of SpectrumSettings switched on (each apart)
  verdict     the statistics alone: signed-rank test, Hodges-Lehmann, Westfall-Young on (n, layers)
  end to end  `hilocli.spectrum.run` on the folder (decode, forward, analysis, verdict) and
              `render.write_outputs` (figure and JSON); model construction excluded (timed apart)

analysis overhead = fwd+anal. / forward - 1 (target <= 30%); end-to-end overhead likewise against
decode + forward.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table


def synthetic_folder(folder: Path, count: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:375, 0:500]
    for i in range(count):
        base = (
            127
            + 80 * np.sin(x / (3 + i % 7)) * np.cos(y / (5 + i % 5))
            + rng.normal(0, 30, (375, 500))
        )
        rgb = np.stack([base, np.roll(base, 40, 0), base[:, ::-1]], -1).clip(0, 255)
        Image.fromarray(rgb.astype(np.uint8)).save(folder / f"img{i:03d}.jpg", quality=90)
    return folder


def timed(fn, repeats: int, device: torch.device) -> list[float]:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    from hilocli.images import find_images, load_many
    from hilocli.runtime import resolve_device
    from hilocli.spectrum import SpectrumCollector, SpectrumRequest, SpectrumSettings, run, verdict
    from hilocli.spectrum.render import write_outputs
    from hilocli.spectrum.run import choose_layers
    from hilocli.weights import WeightsRequest

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", type=Path)
    ap.add_argument("--model", default="litv2_s")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or synthetic_folder(Path(tmp) / "images", args.images)
        paths = find_images([folder])[: args.images]
        n = len(paths)
        t0 = time.perf_counter()
        loaded = WeightsRequest(model=args.model, pretrained=False).load(device, progress=False)
        model = loaded.model
        build_s = time.perf_counter() - t0
        layers = [loaded.layers[i] for i in choose_layers(loaded, None)]
        settings = SpectrumSettings()
        request = SpectrumRequest(
            inputs=(folder,),
            weights=WeightsRequest(model=args.model, pretrained=False),
            resolution=args.resolution,
            batch_size=args.batch_size,
            device=device.type,
            limit=n,
        )

        def decode():
            out = []
            for i in range(0, n, args.batch_size):
                prepared, _ = load_many(paths[i : i + args.batch_size], args.resolution, True)
                out.append(torch.stack([p.tensor for p in prepared]))
            return out

        batches = [b.to(device) for b in decode()]

        def forward():
            with torch.no_grad():
                for x in batches:
                    model(x)

        def analyse_with(**flags):
            variant = dataclasses.replace(settings, **flags)

            def go():
                with SpectrumCollector(model, layers, variant, loaded.blocks) as col:
                    for x in batches:
                        col.add_batch(x)
                col.finish()

            return go

        def judge():
            verdict(np.random.default_rng(0).normal(0.1, 0.1, (n, len(layers))))

        optional = [
            f.name
            for f in dataclasses.fields(SpectrumSettings)
            if f.type in ("bool", bool) and f.default is False
        ]

        def end_to_end():
            write_outputs(run(request), Path(tmp) / "out")

        # run() builds its own model: time that apart and take it off
        rows = {
            "decode": timed(decode, args.repeats, device),
            "forward": timed(forward, args.repeats, device),
            "fwd+anal.": timed(analyse_with(), args.repeats, device),
            **{f"+ {o}": timed(analyse_with(**{o: True}), args.repeats, device) for o in optional},
            "verdict": timed(judge, args.repeats, device),
            "end to end": [t - build_s for t in timed(end_to_end, args.repeats, device)],
        }

    rate = {k: n / statistics.median(v) for k, v in rows.items()}
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)"
    )
    table = Table(
        title=f"hilo spectrum, {args.model} random init, {n} images at "
        f"{args.resolution}, batch {args.batch_size}, layers {layers}, {name}, "
        f"torch {torch.__version__}"
    )
    for col in ("stage", "img/s (median)", "spread img/s", "vs forward"):
        table.add_column(col, justify="right")
    for k, v in rows.items():
        spread = f"{n / max(v):.1f}-{n / min(v):.1f}"
        table.add_row(k, f"{rate[k]:.1f}", spread, f"{rate['forward'] / rate[k]:.2f}x time")
    console = Console()
    console.print(table)
    anal = rate["forward"] / rate["fwd+anal."] - 1
    base = 1 / (1 / rate["decode"] + 1 / rate["forward"])
    e2e = base / rate["end to end"] - 1
    console.print(f"analysis overhead on top of forward: {anal:+.1%} (target <= 30%)")
    for o in optional:
        extra = rate["fwd+anal."] / rate[f"+ {o}"] - 1
        console.print(f"optional {o}: {extra:+.1%} on top of the default analysis")
    console.print(
        f"verdict (statistics on {n} images x {len(layers)} layers): "
        f"{statistics.median(rows['verdict']) * 1e3:.1f} ms per run"
    )
    fixed = (
        statistics.median(rows["end to end"])
        - statistics.median(rows["decode"])
        - statistics.median(rows["fwd+anal."])
    )
    console.print(
        f"end-to-end overhead on top of decode + forward ({base:.1f} img/s): {e2e:+.1%} "
        f"(model build {build_s:.2f} s excluded; per-run fixed cost, mostly the "
        f"figure: ~{fixed:.2f} s)"
    )


if __name__ == "__main__":
    main()
