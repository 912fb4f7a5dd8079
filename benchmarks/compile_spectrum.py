"""`hilo spectrum --compile on` (inductor) against eager: the per-image numbers, the compile time
and whether dynamo traced the capture hooks without graph breaks.

    python benchmarks/compile_spectrum.py [FOLDER] [--checkpoint tests/fixtures/litv2_tiny_a.pth]
                                          [--resolution 64] [--limit 2] [--backend inductor]

The test suite checks the same equality with torch.compile's "eager" backend (seconds);
inductor compiles for minutes on a CPU, so its check lives here. Prints the wall time of both runs
(the compiled one includes compiling), the max |compiled - eager| per branch over the per-image
hf_fraction of every layer, the recorded `settings.compile`, and dynamo's graph and graph-break
counts.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from hilocli import compilation
from hilocli.spectrum import SpectrumRequest, run
from hilocli.weights import WeightsRequest

ROOT = Path(__file__).parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", type=Path, default=ROOT / "samples")
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "tests/fixtures/litv2_tiny_a.pth")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--limit", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default=compilation.COMPILE_BACKEND)
    args = ap.parse_args()
    compilation.COMPILE_BACKEND = args.backend
    weights = WeightsRequest(checkpoint=args.checkpoint, default_pretrained=True)
    results = {}
    for choice in ("off", "on"):
        request = SpectrumRequest(
            inputs=(args.folder,),
            weights=weights,
            resolution=args.resolution,
            device=args.device,
            limit=args.limit,
            compile=choice,
        )
        t0 = time.perf_counter()
        results[choice] = run(request)
        print(f"--compile {choice}: {time.perf_counter() - t0:.1f} s")
        print(f"  settings.compile: {results[choice].to_record().settings['compile']}")
    worst = {}
    for a, b in zip(results["off"].layers, results["on"].layers, strict=True):
        for branch in ("hifi", "lofi", "control"):
            if a.branch(branch) is None:
                continue
            x = np.asarray(a.branch(branch).per_image["hf_fraction"], dtype=float)
            y = np.asarray(b.branch(branch).per_image["hf_fraction"], dtype=float)
            diff = float(np.nanmax(np.abs(x - y))) if np.isfinite(x).any() else 0.0
            worst[branch] = max(worst.get(branch, 0.0), diff)
    print(
        "max |compiled - eager| of per-image hf_fraction:",
        {k: f"{v:.1e}" for k, v in worst.items()},
    )
    counters = torch._dynamo.utils.counters
    print(f"dynamo: {dict(counters['stats'])}, graph breaks: {dict(counters['graph_break']) or 0}")


if __name__ == "__main__":
    main()
