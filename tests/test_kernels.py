"""hilocli.flops.kernels: naming the attention kernel that ran, forcing one, MFU inputs."""

from __future__ import annotations

import pytest

from hilocli.flops.bench import BenchCase
from hilocli.flops.kernels import PEAK_SIZES, PeakRuns, forced, label_kernels, matmul_peak
from hilocli.flops.runner import run_case


def test_kernel_labels_from_aten_op_names():
    assert label_kernels({"aten::_scaled_dot_product_flash_attention_for_cpu"}) == ["flash (CPU)"]
    both = {
        "aten::_scaled_dot_product_efficient_attention",
        "aten::_scaled_dot_product_attention_math",
    }
    assert label_kernels(both) == ["math", "memory-efficient"]
    assert label_kernels({"aten::bmm", "aten::_softmax"}) == ["explicit (matmul + softmax)"]
    assert label_kernels({"aten::addmm"}) == ["none"]
    with pytest.raises(ValueError, match="backend must be one of"):
        forced("fastest")


def _hilo_case(backend: str, name: str = "HiLo") -> BenchCase:
    return BenchCase(
        "attention", name, 4, 4, dim=64, num_heads=2, alpha=0.5, window_size=2,
        repeats=5, warmup=1, sdpa_backend=backend, macs=1000,
    )  # fmt: skip


@pytest.mark.slow  # ~25 s on 2 loaded cores: three profiled, settled benchmark cases
def test_forced_backends_are_the_kernels_that_ran_on_cpu():
    math = run_case(_hilo_case("math"))
    assert math.status == "ok" and math.kernels == ["math"] and math.timer == "perf_counter"
    assert math.gflop_per_s == pytest.approx(2 * 1000 * math.img_per_s / 1e9)
    explicit = run_case(_hilo_case("explicit"))
    assert explicit.kernels == ["explicit (matmul + softmax)"]
    # the baselines always use SDPA: forcing the explicit path there is reported, not faked
    assert run_case(_hilo_case("explicit", "MSA")).status == "error: no explicit attention path"


def test_the_peak_is_the_best_size_and_the_highest_run(monkeypatch):
    """matmul_peak times every size in PEAK_SIZES with torch's `@` and keeps the fastest median;
    PeakRuns divides by the highest of its runs and says how far they moved. The clock is a
    stand-in (per product: 1 ms at n = 1024, 5 ms at 2048), so the arithmetic is checked."""
    import hilocli.flops.kernels as kernels

    timed = []

    def fake_seconds(call, cuda):
        n = call().shape[0]
        timed.append(n)
        return {1024: 1e-3, 2048: 5e-3}[n]

    monkeypatch.setattr(kernels, "seconds_of", fake_seconds)
    assert PEAK_SIZES["cpu"] == (1024, 2048)
    peak = matmul_peak("cpu", "float32", repeats=3)
    assert peak == pytest.approx(2 * 2048**3 / 5e-3 / 1e9)  # 2048 beats 1024 here
    assert timed == [1024] * 5 + [2048] * 5  # two warm-ups and three timed products per size
    timed.clear()
    monkeypatch.setattr(kernels, "PEAK_SLOW_S", 0.9e-3)  # 1 ms per product is "slow": no 2048
    assert matmul_peak("cpu", "float32", repeats=3) == pytest.approx(2 * 1024**3 / 1e-3 / 1e9)
    assert timed == [1024] * 5
    runs = PeakRuns("float32", (80.0, 100.0))
    assert runs.gflop_per_s == 100.0 and runs.moved == pytest.approx(0.2)
    assert PeakRuns("bfloat16", (50.0, 50.0)).moved == 0.0
