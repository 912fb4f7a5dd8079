"""--dtype / --tf32 (hilocli.runtime.Precision): resolution rules, autocast numerics against
float32 within the tolerances measured in docs/benchmarks.md, what the record says, and that
analysis functions keep tensors on the device they were given. --compile: the auto rule, the
record, failures as one line, a compiled spectrum equal to eager (torch.compile's "eager"
backend: dynamo traces the model and its capture hooks in seconds) and inductor's frozen forward
of a tiny model equal to eager (the whole model is timed by benchmarks/forward.py --compile).
The host allocator: kept only where asked, never as a side effect of choosing a device."""

from __future__ import annotations

import functools
import platform

import numpy as np
import pytest
import torch

from hilocli import compilation, runtime
from hilocli.compilation import compile_decision
from hilocli.errors import HiloError, UsageError
from hilocli.runtime import forward_context, resolve_precision
from tests.conftest import SAMPLES, TINY_CKPT, assert_one_line_error, hilo

TINY = ("--checkpoint", str(TINY_CKPT), "--resolution", "64", "--device", "cpu")
# measured bfloat16 - float32 deviations (docs/benchmarks.md), with headroom
HF_FRACTION_ATOL = 0.01  # Hi-Fi and layer-input hf_fraction (measured <= 0.0066 tiny, 5e-4 S)
ATTN_RTOL = 0.02  # attention distance / received (measured <= 0.0074 relative)
ENTROPY_RTOL = 1e-3  # attention entropy (measured <= 3.1e-5 relative)


def test_precision_resolution_rules():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # no CUDA needed to name a device
    assert resolve_precision("auto", cpu).dtype == "float32"
    assert resolve_precision("auto", cuda).dtype == "bfloat16"
    assert resolve_precision("auto", cuda, auto="float32").dtype == "float32"  # spectrum
    p = resolve_precision("bfloat16", cpu, tf32=True)
    assert p.autocast and p.to_dict() == {
        "dtype": "bfloat16",
        "dtype_requested": "bfloat16",
        "autocast": True,
        "tf32": True,
    }
    assert resolve_precision("float16", cuda).dtype == "float16"
    with pytest.raises(UsageError, match="float16 needs CUDA"):
        resolve_precision("float16", cpu)  # also when --device auto fell back to the CPU
    with pytest.raises(UsageError, match="--dtype must be one of"):
        resolve_precision("float64", cpu)


def test_bfloat16_forward_runs_in_bfloat16_and_stays_near_float32(tiny_model):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    with forward_context(resolve_precision("float32", "cpu")):
        ref = tiny_model(x)
        assert not torch.is_grad_enabled()
    with forward_context(resolve_precision("bfloat16", "cpu")):
        low = tiny_model(x)
    assert ref.dtype == torch.float32 and low.dtype == torch.bfloat16
    err = (low.float() - ref).abs().max().item()
    assert 0 < err < 0.05 * ref.abs().max().item()  # rounded, not broken


def test_float16_on_cpu_is_a_usage_error_before_any_work(tmp_path):
    for cmd, target in (("spectrum", SAMPLES), ("attn-map", SAMPLES / "astronaut.jpg")):
        out = tmp_path / cmd
        res = hilo(cmd, target, *TINY, "--dtype", "float16", "--out", out)
        assert_one_line_error(res, 2, "--dtype float16 needs CUDA")
        assert not out.exists()


@functools.cache
def _spectrum_record(dtype: str, compile: str = "auto"):
    """(record, result) of a 2-image spectrum run of the tiny model (cached: read, never
    changed)."""
    from hilocli.spectrum import SpectrumRequest, run
    from hilocli.weights import WeightsRequest

    weights = WeightsRequest(checkpoint=TINY_CKPT, default_pretrained=True)
    req = SpectrumRequest(
        inputs=(SAMPLES,),
        weights=weights,
        resolution=64,
        device="cpu",
        dtype=dtype,
        limit=2,
        compile=compile,
    )
    result = run(req)
    return result.to_record().to_dict(), result


def test_spectrum_bfloat16_within_tolerance_and_recorded():
    (ref, ref_result), (low, low_result) = _spectrum_record("auto"), _spectrum_record("bfloat16")
    assert ref["settings"]["dtype"] == "float32" and ref["settings"]["autocast"] is False
    assert (
        low["settings"]["dtype"] == "bfloat16" and low["settings"]["dtype_requested"] == "bfloat16"
    )
    for rec in (ref, low):
        env = rec["environment"]
        assert "TF32 off unless --tf32" in env["tf32_policy"]
        assert env["cuda_matmul_allow_tf32"] is False
        assert env["float32_matmul_precision"] == torch.get_float32_matmul_precision()
    lofi_moves = 0.0
    for a, b in zip(ref_result.layers, low_result.layers, strict=True):
        for branch in ("hifi", "control"):
            x, y = a.branch(branch).per_image, b.branch(branch).per_image
            np.testing.assert_allclose(x["hf_fraction"], y["hf_fraction"], atol=HF_FRACTION_ATOL)
    for a, b in zip(ref["results"]["layers"], low["results"]["layers"]):
        x, y = a["branches"]["lofi"]["mean"], b["branches"]["lofi"]["mean"]
        lofi_moves = max(lofi_moves, abs(x["hf_fraction"] - y["hf_fraction"]))
    # why spectrum's auto is float32: bfloat16 rounding moves Lo-Fi's share (its small non-DC
    # power) by more than the tolerance the other branches meet
    assert lofi_moves > HF_FRACTION_ATOL


def _attn_layers(dtype: str) -> list[dict]:
    from hilocli.attn_map import AttnMapRequest, run
    from hilocli.weights import WeightsRequest

    weights = WeightsRequest(checkpoint=TINY_CKPT, default_pretrained=True)
    req = AttnMapRequest(
        image=SAMPLES / "astronaut.jpg", weights=weights, resolution=64, device="cpu", dtype=dtype
    )
    rec = run(req).to_record().to_dict()
    assert rec["settings"]["dtype"] == dtype
    return rec["results"]["layers"]


def test_attention_measures_bfloat16_within_tolerance():
    for a, b in zip(_attn_layers("float32"), _attn_layers("bfloat16")):
        for branch in ("hifi", "lofi"):
            x, y = a.get(branch), b.get(branch)
            if x is None:
                continue
            assert y["entropy_nats"] == pytest.approx(x["entropy_nats"], rel=ENTROPY_RTOL)
            assert y["mean_distance_px"] == pytest.approx(x["mean_distance_px"], rel=ATTN_RTOL)


def test_analysis_functions_return_tensors_on_the_given_device():
    """The 'meta' device: any tensor made on the host inside would fail to mix with them."""
    from hilocli.attn_map.summaries import _Sums
    from hilocli.hilo.core import attention_probs
    from hilocli.models.dcn import deform_conv2d_tokens
    from hilocli.spectrum.analyse import spectra
    from hilocli.spectrum.measures import frequency_axes, radial_profile

    meta = torch.device("meta")
    spec = spectra(torch.randn(2, 8, 8, 4, device=meta), None, "hann")
    power = spec.power  # (B, H, W)
    assert power.device == meta and power.dtype == torch.float32
    axes = frequency_axes(8, 8, window_size=2, device=meta)
    assert radial_profile(power, axes).device == meta
    q, k = torch.randn(3, 2, 4, 8, device=meta), torch.randn(3, 2, 5, 8, device=meta)
    assert attention_probs(q, k, 0.3).device == meta
    sums = _Sums(2, meta)
    sums.add(q, k, 0.3, torch.randn(3, 4, 5, device=meta), torch.ones(3, 4, device=meta))
    assert sums.distance.device == meta and sums.entropy.device == meta
    x = torch.randn(2, 36, 4, device=meta)  # (B, H*W, C)
    off = torch.randn(2, 8, 3, 3, device=meta)
    w, bias = torch.randn(5, 4, 2, 2, device=meta), torch.randn(5, device=meta)
    assert deform_conv2d_tokens(x, 6, 6, off, w, bias, stride=2).device == meta


def test_compile_auto_rule():
    cpu, cuda = compilation.CPU_COMPILE_MIN_IMAGES, compilation.CUDA_COMPILE_MIN_IMAGES
    assert not compile_decision("off", 10**9, "cpu").used
    assert compile_decision("on", 1, "cpu").used
    assert not compile_decision("auto", cpu - 1, "cpu").used
    assert compile_decision("auto", cpu, "cpu").used
    assert not compile_decision("auto", cuda - 1, "cuda").used
    assert compile_decision("auto", cuda, "cuda").used
    assert cpu <= cuda  # compiling is assumed to pay later on a GPU (unmeasured)
    kept = compile_decision("auto", 10**9, "cpu", freed_memory_kept=True)  # glibc, every command
    assert not kept.used and "keeps freed memory" in kept.reason
    assert compile_decision("auto", cuda, "cuda", freed_memory_kept=True).used
    assert compile_decision("on", 1, "cpu", freed_memory_kept=True).used
    no_crop = compile_decision("auto", 10**9, "cpu", fixed_size=False)
    assert not no_crop.used and "--no-crop" in no_crop.reason
    short = compile_decision("auto", 2, "cpu").to_dict()
    assert short == {
        "requested": "auto",
        "used": False,
        "reason": short["reason"],
        "backend": None,
        "mode": None,
        "freezing": False,
    }
    assert f"2 images < {cpu}" in short["reason"]
    assert compile_decision("on", 1, "cpu").to_dict()["freezing"]  # inductor: frozen
    with pytest.raises(UsageError, match="--compile must be one of"):
        compile_decision("always", 1, "cpu")


def test_missing_toolchain_is_an_error_with_on_and_eager_with_auto(monkeypatch):
    monkeypatch.setattr(compilation, "compile_toolchain_problem", lambda *a: "no C++ compiler")
    monkeypatch.setattr(compilation, "freed_memory_kept", lambda: False)  # else auto never compiles
    model = torch.nn.Linear(2, 2)
    with pytest.raises(HiloError, match="--compile on: no C\\+\\+ compiler; use --compile off"):
        compilation.maybe_compile(model, "on", 1, torch.device("cpu"))
    same, decision = compilation.maybe_compile(model, "auto", 10**9, torch.device("cpu"))
    assert same is model and not decision.used and "no C++ compiler" in decision.reason


def test_compiled_spectrum_equals_eager_and_is_recorded(monkeypatch):
    """Dynamo traces the forward with the capture hooks in it: per-image numbers as eager."""
    monkeypatch.setattr(compilation, "COMPILE_BACKEND", "eager")
    eager, eager_result = _spectrum_record("auto")
    compiled, compiled_result = _spectrum_record("auto", compile="on")
    assert eager["settings"]["compile"]["used"] is False
    reason = eager["settings"]["compile"]["reason"]
    assert ("keeps freed memory" if runtime.freed_memory_kept() else "2 images < ") in reason
    assert compiled["settings"]["compile"] == {
        "requested": "on",
        "used": True,
        "reason": "--compile on",
        "backend": "eager",
        "mode": "default",
        "freezing": False,
    }
    atol = 1e-6  # the same torch ops, traced
    for a, b in zip(eager_result.layers, compiled_result.layers, strict=True):
        for branch in ("hifi", "lofi", "control"):
            x, y = a.branch(branch).per_image, b.branch(branch).per_image
            # the tiny model's Lo-Fi is near silent (0.01% of the power): its share is the shape
            # of a residue and moves with summation order 10x more
            tol = atol * (10 if branch == "lofi" else 1)
            np.testing.assert_allclose(y["hf_fraction"], x["hf_fraction"], rtol=0, atol=tol)
    np.testing.assert_allclose(compiled_result.deltas, eager_result.deltas, rtol=0, atol=atol)


def test_inductor_freezing_forward_equals_eager():
    """`compile_as` with inductor freezes the weights into the compiled inference graph: on a
    tiny ConvFFN (linear, depthwise conv, GELU, linear) the output equals eager's to float
    rounding."""
    decision = compilation.CompileDecision("on", True, "--compile on", "inductor")
    problem = compilation.compile_toolchain_problem("cpu", "inductor")
    if problem is not None:
        pytest.skip(problem)
    from hilocli.models.litv2 import ConvFFN

    torch.manual_seed(0)
    model = ConvFFN(8, 16).eval()
    x = torch.randn(2, 36, 8)  # (B, N, C) on a 6 x 6 grid
    with torch.no_grad():
        eager = model(x, 6, 6)
        compilation.compile_as(model, decision)
        with compilation.compile_errors(decision):
            frozen = model(x, 6, 6)
    assert decision.freezing and decision.to_dict()["freezing"] is True
    torch.testing.assert_close(frozen, eager, rtol=1e-5, atol=1e-5)


def test_compile_failure_reads_as_one_error_line():
    def broken_backend(graph, inputs):
        raise RuntimeError("no working C++ compiler")

    decision = compilation.CompileDecision("on", True, "--compile on", "broken")
    double = torch.compile(lambda x: 2 * x, backend=broken_backend)
    with pytest.raises(HiloError, match="torch.compile \\(broken\\) failed: .*use --compile off"):
        with compilation.compile_errors(decision):
            double(torch.ones(2))


_FAULTS_SCRIPT = """
import ctypes, resource, sys
from hilocli.runtime import freed_memory_kept, keep_freed_memory, resolve_device
if sys.argv[1] == "keep":
    keep_freed_memory()
else:
    resolve_device("cpu")  # choosing a device leaves the allocator alone
applied = freed_memory_kept()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
faults = []
for _ in range(3):  # malloc, touch and free 64 MB three times (what torch's CPU allocator does)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(64 * 2**20)
    ctypes.memset(block, 1, 64 * 2**20)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, faults[-1])
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_kept_memory_is_reused_without_page_faults():
    """A freed 64 MB block: by default glibc unmaps it and the next one faults in all 16,384 of
    its pages again, also after resolve_device; after keep_freed_memory (what the `hilo` entry
    sets) it is reused. Each in a fresh process (the setting is process-wide)."""
    import subprocess
    import sys

    def last_faults(mode: str) -> tuple[str, int]:
        out = subprocess.run(
            [sys.executable, "-c", _FAULTS_SCRIPT, mode], capture_output=True, text=True, check=True
        ).stdout.split()
        return out[0], int(out[1])

    applied, faults = last_faults("device")
    assert applied == "False" and faults > 15_000  # 64 MB / 4 KiB pages = 16,384
    applied, faults = last_faults("keep")
    assert applied == "True" and faults < 500
    assert runtime.keep_freed_memory()  # as the `hilo` entry does (hilocli.cli.main); recorded:
    assert runtime.environment()["host_allocator"].startswith("glibc, freed memory kept")


def test_collection_is_deferred_until_the_model_is_loaded():
    """The `hilo` entry pauses cyclic garbage collection (`defer_collection`); the one loader
    freezes what is alive and turns it back on. A process that paused collection itself keeps
    it paused: only hilo's own pause is lifted."""
    import gc

    from hilocli.weights import WeightsRequest

    try:
        runtime.defer_collection()
        assert not gc.isenabled()
        WeightsRequest(checkpoint=TINY_CKPT).load("cpu")
        assert gc.isenabled() and gc.get_freeze_count() > 0
        gc.disable()
        runtime.freeze_loaded()
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()
