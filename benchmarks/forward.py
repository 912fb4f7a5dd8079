"""LITv2 forward speed: explicit vs fused (SDPA) vs compiled attention paths, float32 vs
bfloat16, with the share of the machine's matmul peak measured in the same rounds, and optionally
the authors' own model in the same run.

    python benchmarks/forward.py [--model litv2_s] [--batch 8] [--resolution 224] [--rounds 7]
                                 [--compile] [--dtypes float32,bfloat16] [--baseline DIR]
                                 [--authors DIR] [--default-allocator]

Eval mode, no_grad, random-init weights (speed does not depend on the values). Every path is
warmed up as `hilo flops --benchmark` warms up (hilocli.flops.bench.warm_up: until the last 3 runs
agree within 10%, at least 2 and at most 30 runs or 30 s). Then `--rounds` rounds:
each measures the dtype's matmul peak (hilocli.flops.kernels.matmul_peak: best of two sizes) and
times one batch of every path, in turn. A path's img/s is its median over the rounds (spread:
slowest..fastest); its share of peak is the median over rounds of (its GFLOP/s / that round's
peak), and "vs" is the median over rounds of its speed / the reference path's speed in the same
round. Interleaving is the point: on a shared machine the load moves between seconds, and a peak
or a reference timed minutes apart from a path compares two different machines. GFLOP/s = 2 x
analytic MACs (hilocli.flops, the authors' convention) x img/s: what the model needs, not what the
kernels execute (the Hi-Fi softmax, GELU, norms' arithmetic are not counted). CUDA rows (when a
GPU is present) are timed with CUDA events.

The process keeps freed host memory (hilocli.runtime.keep_freed_memory, as the `hilo` command
does; it applies to every model in the process alike); `--default-allocator` leaves glibc's
default, which returns large blocks to the kernel on every free.

`--compile` adds a row compiled as `hilo spectrum --compile on` compiles it
(hilocli.compilation.compile_as: inductor with freezing) and prints the compile time (first call)
apart. `--baseline DIR` (the `hilocli` folder of another tree, e.g. from `git archive 3ed431e
hilocli | tar -x -C /tmp/b`: DIR is /tmp/b/hilocli) adds that tree's model, imported as that
tree's own package and prepared as that tree's commands load it (its `keep_weights_packed`
where it has one). `--authors DIR` adds the authors' LITv2 (DIR: the `classification` folder of
a clone of ziplab/LITv2; needs `timm` and `torchvision` installed, which hilo itself never
imports): their deformable convolution is a compiled CUDA extension behind NVIDIA apex, so on
the CPU two stand-ins take its place, `apex.amp.float_function` (run in float32, as apex does)
and `DCN.deform_conv2d_forward` as `torchvision.ops.deform_conv2d` (DCNv1, the same semantics:
docs/benchmarks.md). The authors' model gets hilo's weights (strict load) and its logits are
compared with hilo's before timing. The "vs" columns: per round, a path's speed over the
authors' code's and the baseline tree's, where given (else over hilo's fused path); medians.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import statistics
import sys
import time
import types
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from hilocli.compilation import CompileDecision, compile_as
from hilocli.flops.analytic import model_cost
from hilocli.flops.bench import warm_up
from hilocli.flops.kernels import matmul_peak, seconds_of, set_explicit
from hilocli.models import create_model
from hilocli.runtime import environment, forward_context, keep_freed_memory, resolve_precision


def load_baseline(tree: Path, cfg):
    """The LITv2 of another hilocli tree (for a same-run comparison), imported as that tree's own
    `hilocli` package (this one's modules set aside meanwhile, then restored), with its weights
    kept packed where that tree's commands kept them (`keep_weights_packed`)."""
    ours = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] == "hilocli"}
    sys.path.insert(0, str(tree.resolve().parent))
    try:
        litv2 = importlib.import_module("hilocli.models.litv2")
        model = litv2.LITv2(litv2.LITv2Config(**vars(cfg))).eval()
        try:
            model = importlib.import_module("hilocli.models.onednn").keep_weights_packed(model)
        except ModuleNotFoundError:
            pass
    finally:
        sys.path.pop(0)
        for k in [k for k in sys.modules if k.split(".")[0] == "hilocli"]:
            del sys.modules[k]
        sys.modules.update(ours)
    return model


def install_authors_stand_ins() -> None:
    """`apex.amp` and the compiled `DCN` module the authors' DCN imports, for the CPU."""
    from torchvision.ops import deform_conv2d

    def float_function(fn):
        """apex's amp.float_function: the wrapped function runs in float32 under mixed precision."""

        def in_float32(*args):
            args = [a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
            with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
                return fn(*args)

        return in_float32

    amp = types.ModuleType("apex.amp")
    amp.float_function = float_function
    apex = types.ModuleType("apex")
    apex.amp = amp
    dcn = types.ModuleType("DCN")

    def deform_conv2d_forward(x, weight, bias, offset, kh, kw, sh, sw, ph, pw, dh, dw, *_):
        # (groups, deformable groups, im2col step): read off weight and offset shapes by torchvision
        return deform_conv2d(
            x, offset, weight, bias, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw)
        )

    dcn.deform_conv2d_forward = deform_conv2d_forward
    sys.modules.update({"apex": apex, "apex.amp": amp, "DCN": dcn})


def load_authors(tree: Path, cfg, resolution: int):
    """The authors' LITv2 (their classification/models/litv2.py) built with cfg's settings."""
    install_authors_stand_ins()
    sys.path.insert(0, str(tree))
    from models.litv2 import LITv2 as AuthorsLITv2  # the authors' package name: `models`

    return AuthorsLITv2(
        img_size=resolution,
        patch_size=cfg.patch_size,
        in_chans=cfg.in_chans,
        num_classes=cfg.num_classes,
        embed_dim=cfg.embed_dim,
        depths=list(cfg.depths),
        num_heads=list(cfg.num_heads),
        mlp_ratio=cfg.mlp_ratio,
        qkv_bias=cfg.qkv_bias,
        drop_path_rate=0.0,
        has_msa=[int(ws > 0) for ws in cfg.local_ws],
        alpha=cfg.alpha,
        local_ws=list(cfg.local_ws),
    ).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="litv2_s")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timed rounds")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile")
    ap.add_argument("--baseline", type=Path, help="another hilocli tree to compare against")
    ap.add_argument("--authors", type=Path, help="ziplab/LITv2's classification folder")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: both when present)")
    ap.add_argument("--default-allocator", action="store_true", help="do not keep freed memory")
    args = ap.parse_args()
    if not args.default_allocator:
        keep_freed_memory()
    if args.device:
        devices = [torch.device(args.device)]
    else:
        devices = [torch.device("cpu")]
        devices += [torch.device("cuda")] if torch.cuda.is_available() else []
    con = Console()
    for device in devices:
        run_device(device, args, con)


def run_device(device: torch.device, args, con: Console) -> None:
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    torch.manual_seed(0)
    model = create_model(args.model).eval().to(device)
    res = args.resolution
    gflop_per_img = model_cost(model.cfg, res).flops / 1e9
    x = torch.randn(args.batch, 3, res, res, device=device)
    extra = []  # (label, module): other implementations of the same network, same weights
    if args.baseline:
        extra.append(("baseline tree (fused)", load_baseline(args.baseline, model.cfg)))
    if args.authors:
        extra.append(("authors' code", load_authors(args.authors, model.cfg, res)))
    for label, net in extra:
        net.load_state_dict(model.state_dict(), strict=True)
        net.to(device)
        with torch.no_grad():
            diff = (net(x) - model(x)).abs().max().item()
        con.print(f"{label}: logits vs hilo (float32), max |diff| {diff:.2e}")
    # "vs" columns: the authors' code and the baseline tree where given, else hilo's fused path
    references = [label for label, _ in reversed(extra)] or ["fused"]
    for dtype in args.dtypes.split(","):
        prec = resolve_precision(dtype, device)
        # (label, module, explicit attention: hilo's models switch, the others have one path)
        paths = [("fused", model, False), ("explicit", model, True)]
        paths += [(label, net, None) for label, net in extra]
        if args.compile:
            frozen = copy.deepcopy(model)  # compiled in place; `model` stays eager
            set_explicit(frozen, False)
            compile_as(frozen, CompileDecision("on", True, "benchmark", "inductor"))
            paths.append(("compiled (inductor, freezing)", frozen, None))
        calls = {}
        for label, net, explicit in paths:

            def call(net=net, explicit=explicit):
                if explicit is not None:
                    set_explicit(net, explicit)
                return net(x)

            with forward_context(prec):
                if label.startswith("compiled"):
                    t0 = time.perf_counter()
                    out = call()
                    con.print(f"{dtype}: compile + first call {time.perf_counter() - t0:.1f} s")
                    set_explicit(model, False)
                    diff = (out.float() - model(x).float()).abs().max().item()
                    con.print(f"{dtype}: compiled vs eager logits, max |diff| {diff:.2e}")
                warm_up(lambda call=call: (call(), cuda and torch.cuda.synchronize()), 2)
            calls[label] = call
        peaks, times = [], {label: [] for label in calls}
        for _ in range(args.rounds):
            peaks.append(matmul_peak(device, prec.dtype, repeats=3))
            for label, call in calls.items():
                with forward_context(prec):
                    times[label].append(seconds_of(call, cuda))
        set_explicit(model, False)
        con.print(result_table(args, name, dtype, gflop_per_img, peaks, times, references))


def result_table(args, name, dtype, gflop_per_img, peaks, times, references) -> Table:
    med = statistics.median
    env = environment()
    table = Table(
        title=f"{args.model} forward, batch {args.batch} at {args.resolution}x{args.resolution}"
        f" on {name}, {dtype} (torch {torch.__version__}, {torch.get_num_threads()} threads); "
        f"{gflop_per_img:.2f} GFLOP/img analytic; host allocator: "
        f"{env['host_allocator']}; {args.rounds} interleaved "
        f"rounds; {dtype} "
        f"matmul peak per round {min(peaks):.0f}..{max(peaks):.0f} GFLOP/s (median "
        f"{med(peaks):.0f})"
    )
    columns = ("path", "img/s", "spread", "GFLOP/s", "share of peak")
    for col in (*columns, *(f"vs {r}" for r in references)):
        table.add_column(col, justify="right")
    for label, seconds in times.items():
        rate = args.batch / med(seconds)
        share = med(args.batch / s * gflop_per_img / p for s, p in zip(seconds, peaks))
        vs = [f"{med(r / s for s, r in zip(seconds, times[ref])):.2f}x" for ref in references]
        table.add_row(
            label,
            f"{rate:.2f}",
            f"{args.batch / max(seconds):.2f}-{args.batch / min(seconds):.2f}",
            f"{rate * gflop_per_img:.0f}",
            f"{share:.0%}",
            *vs,
        )
    return table


if __name__ == "__main__":
    main()
