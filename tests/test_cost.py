"""hilocli.flops: analytic cost against the authors' published numbers, the model and torch's FLOP
counter; the reference attention layers; the benchmark runner and its stability rule."""

from __future__ import annotations

import pytest

from hilocli.errors import UsageError
from hilocli.flops import analytic, attention, bench, runner
from hilocli.flops.conventions import AS_RUN, AUTHORS, FVCORE, get_convention
from hilocli.flops.layer import hilo_cost
from hilocli.models import get_variant
from hilocli.models.geometry import grid_sizes

VARIANT_NAMES = [
    "litv2_s",
    "litv2_m",
    "litv2_b",
    "litv2_b_384",
    "litv2_s_alpha0.0",
    "litv2_s_alpha0.2",
    "litv2_s_alpha0.4",
    "litv2_s_alpha0.5",
    "litv2_s_alpha0.7",
    "litv2_s_alpha0.9",
    "litv2_s_alpha1.0",
]


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_published_macs_and_params(name, manifest):
    entry = manifest[name]
    res = entry["config"]["img_size"]
    mc = analytic.model_cost(get_variant(name).cfg, res, res, AUTHORS)
    assert mc.macs == entry["official_macs"]
    assert mc.params == entry["num_params"]
    assert mc.flops == 2 * entry["official_macs"]


def test_litv2_s_headline():
    assert analytic.model_cost(get_variant("litv2_s").cfg, 224).macs == 3_734_401_596


def test_hilo_layer_reference():
    hc = hilo_cost(384, 12, 14, 14, window_size=2, alpha=0.5)
    assert (hc.macs, hc.hifi_macs, hc.lofi_macs) == (83_467_776, 50_878_464, 32_589_312)
    assert (hc.hifi_heads, hc.lofi_heads) == (6, 6)


def test_single_layer_benchmark_numbers():
    rows = {
        a.name: a
        for a in attention.attention_comparison(
            768, 12, 14, 14, alpha=0.9, window_size=2, sr_ratio=2, local_window=7, convention=FVCORE
        )
    }
    assert rows["MSA"].macs == 521_428_992
    assert rows["Window"].macs == 477_173_760
    assert rows["SRA"].macs == 419_559_168
    assert rows["HiLo"].macs == 298_296_320
    assert rows["HiLo"].params == 2_198_528
    assert rows["SRA"].params == 4_723_968
    # what makes SRA's figure: its LayerNorm on the 7x7 reduced grid at fvcore's 5 MACs/element
    sra_authors = attention.sra_cost(768, 12, 14, 14, 2, convention=AUTHORS)
    assert (
        rows["SRA"].macs - (sra_authors.product_macs + sra_authors.other_macs)
        == 49 * 768 * 4 - 49 * 768
    )


def test_attention_memory_counts():
    rows = {
        a.name: a
        for a in attention.attention_comparison(
            64, 4, 10, 10, alpha=0.5, window_size=2, batch_size=3, bytes_per_element=2
        )
    }
    assert rows["MSA"].attn_matrix_elements == 4 * 100 * 100
    assert rows["SRA"].attn_matrix_elements == 4 * 100 * 25
    assert rows["Window"].padded_grid == (14, 14)  # 10 -> padded to multiples of 7
    assert rows["Window"].attn_matrix_elements == 4 * 4 * 49 * 49
    assert rows["HiLo"].attn_matrix_elements == 25 * 2 * 16 + 2 * 100 * 25
    assert rows["MSA"].attn_matrix_bytes == 4 * 100 * 100 * 3 * 2


def test_hilo_pads_to_window_multiples():
    odd = hilo_cost(64, 4, 15, 13, window_size=2, alpha=0.5)
    even = hilo_cost(64, 4, 16, 14, window_size=2, alpha=0.5)
    assert odd.padded_grid == (16, 14)
    assert odd.macs == even.macs
    msa = hilo_cost(64, 4, 15, 13, window_size=1)
    assert msa.padded_grid == (15, 13) and msa.hifi_heads == 0 and msa.hifi_rows == ()


def test_params_match_the_model(tiny_cfg):
    import torch

    from hilocli.models import LITv2

    # (litv2_s itself: its params are checked against the released state dict above)
    for cfg in (
        get_variant("litv2_s_alpha0.0").cfg,
        tiny_cfg,
        tiny_cfg.replace(num_classes=0, final_norm=False, stage_norms=True, alpha=1.0),
    ):
        with torch.device("meta"):
            model = LITv2(cfg)
        assert analytic.model_cost(cfg, 64, 64).params == sum(p.numel() for p in model.parameters())


def test_authors_quirks_are_exactly_the_difference():
    """authors - as-run = offset conv counted with 12 instead of 8 channels (+ their bias) + the
    final norm on (H0*W0)//16 instead of the real stage-4 tokens - the patch-embedding bias."""
    cfg = get_variant("litv2_s").cfg
    for h, w in ((224, 224), (256, 320)):
        grids = grid_sizes(cfg, h, w)
        dtm = sum(
            (g[0] // 2) * (g[1] // 2) * (4 * 4 * 96 * 2**i + 4) for i, g in enumerate(grids[:3])
        )
        final = ((grids[0][0] * grids[0][1]) // 16 - grids[3][0] * grids[3][1]) * 768
        embed_bias = grids[0][0] * grids[0][1] * 96
        diff = (
            analytic.model_cost(cfg, h, w, AUTHORS).macs
            - analytic.model_cost(cfg, h, w, AS_RUN).macs
        )
        assert diff == dtm + final - embed_bias


def test_component_sums_and_validation():
    mc = analytic.model_cost(get_variant("litv2_s").cfg, 400, 200)
    assert sum(s.macs for s in mc.stages) + mc.patch_embed_macs + mc.head_macs == mc.macs
    assert sum(r.macs for r in mc.rows) == mc.macs
    assert mc.stages[2].grid == (25, 12) and mc.stages[2].attn_grid == (26, 12)  # padded, s=2
    assert mc.stages[2].macs_by_component["Hi-Fi"] > 0
    assert "MSA" in mc.stages[3].macs_by_component and "MSA" not in mc.stages[2].macs_by_component
    with pytest.raises(UsageError, match=r"32\.\.8192 px"):
        analytic.model_cost(get_variant("litv2_s").cfg, 16, 224)
    with pytest.raises(UsageError, match="8192"):
        analytic.model_cost(get_variant("litv2_s").cfg, 100_000, 224)
    with pytest.raises(ValueError):
        attention.attention_comparison(100, 12, 14, 14)
    with pytest.raises(UsageError, match="too small"):
        attention.attention_comparison(64, 4, 1, 5)
    with pytest.raises(UsageError):
        get_convention("nope")


def test_attention_site_and_sweep():
    cfg = get_variant("litv2_s").cfg
    site = attention.attention_site(cfg, 224, 224)
    assert (site.stage, site.dim, site.num_heads, site.grid, site.window_size) == (
        3,
        384,
        12,
        (14, 14),
        2,
    )
    points = attention.sweep(cfg, [224, 320])
    assert [p.model_macs for p in points][0] == 3_734_401_596
    assert points[1].grid == (20, 20) and points[1].stage == 3
    assert {a.name for a in points[0].attention} == set(attention.ATTENTION_TYPES)


def test_counted_flops_equal_twice_analytic():
    """(Non-square 200x328 with another alpha and window: tests/test_cli_flops.py.)"""
    from hilocli.flops.counted import count_flops

    cc = count_flops(get_variant("litv2_s").cfg, 224, 224)
    mismatched = [(c.label, c.analytic_flops, c.counted_flops) for c in cc.checks if not c.match]
    assert mismatched == []
    labels = [c.label for c in cc.checks]
    assert "stage 3: attention products (Hi-Fi + Lo-Fi)" in labels
    assert "stage 4 MSA: attention products" in labels
    assert "stage 1 token merging: deformable conv" in labels
    assert all(c.counted_flops > 0 for c in cc.checks)
    assert cc.total_counted_flops == cc.total_analytic_product_flops
    assert isinstance(cc.sdpa_counted_cpu, bool) and cc.sdpa_counted_meta


def test_reference_layers_params_and_shapes():
    import torch

    from hilocli.models.baselines import build_attention

    dim, heads, H, W = 48, 4, 9, 11
    expected = {
        a.name: a.params for a in attention.attention_comparison(dim, heads, H, W, alpha=0.5)
    }
    x = torch.randn(2, H * W, dim)  # (B, N, C)
    for name in attention.ATTENTION_TYPES:
        layer = build_attention(name, dim, heads, alpha=0.5, window_size=2)
        assert sum(p.numel() for p in layer.parameters()) == expected[name], name
        with torch.no_grad():
            assert layer(x, H, W).shape == (2, H * W, dim)


def test_window_attention_is_local():
    """Changing a token in one window leaves the other windows' outputs unchanged."""
    import torch

    from hilocli.models.baselines import WindowAttention

    torch.manual_seed(0)
    layer = WindowAttention(16, 2, window=3).eval()
    x = torch.randn(1, 36, 16)  # (B, N, C): 6 x 6 grid, four 3x3 windows
    y = x.clone()
    y[0, 0] += 1.0  # token (0, 0): top-left window
    with torch.no_grad():
        a, b = layer(x, 6, 6).reshape(6, 6, 16), layer(y, 6, 6).reshape(6, 6, 16)
    assert torch.allclose(a[3:], b[3:]) and torch.allclose(a[:, 3:], b[:, 3:])
    assert not torch.allclose(a[:3, :3], b[:3, :3])


# ----------------------------------------------------------------------------------------------
# Benchmarks: the stability rule on planted timings, warm-up, a real case and OOM
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "seconds, spread, unstable",
    [
        ([0.1] * 5, 0.0, False),
        ([1.0, 1.0, 1.0, 1.0, 10.0], 0.0, False),  # one outlier: the median and IQR ignore it
        ([1.0, 1.1, 1.2, 1.3, 1.4], 0.2 / 1.2, False),  # Q1 1.1, Q3 1.3, median 1.2
        ([1.0, 1.0, 1.25, 1.5, 1.5], 0.5 / 1.25, True),
        ([0.01, 0.5, 0.5, 2.0, 2.0, 2.0], (2.0 - 0.5) / 1.25, True),  # 8.6 .. 512 img/s style noise
    ],
)
def test_stability_rule_on_planted_timings(seconds, spread, unstable):
    st = bench.timing_stats(seconds, batch_size=2)
    assert st.spread == pytest.approx(spread)
    assert st.unstable is unstable
    med = (
        sorted(seconds)[len(seconds) // 2]
        if len(seconds) % 2
        else sum(sorted(seconds)[len(seconds) // 2 - 1 : len(seconds) // 2 + 1]) / 2
    )
    assert st.img_per_s == pytest.approx(2 / med)
    assert st.img_per_s_min == pytest.approx(2 / max(seconds))
    assert st.img_per_s_max == pytest.approx(2 / min(seconds))


def test_stability_threshold_is_strict():
    # Q1 = 1.125, Q3 = 1.375, median 1.25 (exact binary values): spread exactly 0.2 is stable
    assert bench.timing_stats([1.0, 1.125, 1.25, 1.375, 1.5]).spread == 0.2
    assert not bench.timing_stats([1.0, 1.125, 1.25, 1.375, 1.5]).unstable
    assert bench.timing_stats([1.0, 1.125, 1.25, 1.4, 1.5]).unstable


def _fake_clock(durations):
    """A clock and a call: each call advances the clock by the next planted duration."""
    now = [0.0]
    it = iter(durations)

    def call():
        now[0] += next(it)

    return call, (lambda: now[0])


def test_warm_up_until_settled():
    assert bench.is_settled([5.0, 1.0, 1.05, 0.98]) and not bench.is_settled([1.0, 1.2, 1.0])
    call, clock = _fake_clock([5.0, 3.0, 1.0, 1.05, 1.0, 1.0])
    assert bench.warm_up(call, 2, clock=clock) == (5, True)  # stops once 3 runs agree
    call, clock = _fake_clock([1.0] * 10)
    assert bench.warm_up(call, 4, clock=clock) == (4, True)  # at least min_runs
    call, clock = _fake_clock([1.0, 2.0] * 50)
    assert bench.warm_up(call, 0, max_runs=7, max_seconds=1e9, clock=clock) == (7, False)
    call, clock = _fake_clock([1.0, 2.0] * 50)
    assert bench.warm_up(call, 1, max_seconds=4.5, clock=clock) == (4, False)  # time cap


def test_benchmark_case_and_oom():
    ok = runner.run_case(
        bench.BenchCase(
            "attention", "HiLo", 8, 8, dim=32, num_heads=2, warmup=1, repeats=5, threads=1
        )
    )
    assert ok.status == "ok" and ok.img_per_s > 0 and len(ok.seconds) == 5
    assert ok.img_per_s_min <= ok.img_per_s <= ok.img_per_s_max
    assert ok.unstable == (ok.spread > bench.UNSTABLE_SPREAD)
    assert ok.label == ("unstable" if ok.unstable else "ok")
    assert 1 <= ok.warmup_runs <= bench.MAX_WARMUP_RUNS
    assert ok.peak_memory_bytes is not None and ok.threads == 1
    # a batch no address space can hold: the allocation fails at once -> recorded, not raised
    oom = runner.run_case(
        bench.BenchCase(
            "attention",
            "MSA",
            14,
            14,
            batch_size=10**9,
            dim=768,
            num_heads=12,
            warmup=0,
            repeats=5,
            threads=1,
        )
    )
    assert oom.status == "OOM" and oom.img_per_s is None and oom.label == "OOM"
    assert runner.classify_failure(-9, "") == "OOM"
    assert runner.classify_failure(1, "boom\nValueError: bad") == "error: ValueError: bad"
