"""hilocli.flops.kernels: naming the attention kernel that ran, forcing one, MFU inputs."""

from __future__ import annotations

import pytest

from hilocli.flops.bench import BenchCase, run_case
from hilocli.flops.kernels import forced, label_kernels


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
