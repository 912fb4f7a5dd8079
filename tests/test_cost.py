"""Analytic cost (hilocli.cost) against the authors' published numbers, the model, and torch's
FLOP counter; the reference attention layers; the benchmark runner."""

from __future__ import annotations

import pytest

from hilocli import cost
from hilocli.cost import AS_RUN, AUTHORS, FVCORE

VARIANT_NAMES = ["litv2_s", "litv2_m", "litv2_b", "litv2_b_384", "litv2_s_alpha0.0",
                 "litv2_s_alpha0.2", "litv2_s_alpha0.4", "litv2_s_alpha0.5", "litv2_s_alpha0.7",
                 "litv2_s_alpha0.9", "litv2_s_alpha1.0"]


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_published_macs_and_params(name, manifest):
    from hilocli.models import get_variant

    entry = manifest[name]
    res = entry["config"]["img_size"]
    mc = cost.model_cost(get_variant(name).cfg, res, res, AUTHORS)
    assert mc.macs == entry["official_macs"]
    assert mc.params == entry["num_params"]
    assert mc.flops == 2 * entry["official_macs"]


def test_litv2_s_headline():
    from hilocli.models import get_variant

    assert cost.model_cost(get_variant("litv2_s").cfg, 224).macs == 3_734_401_596


def test_hilo_layer_reference():
    hc = cost.hilo_cost(384, 12, 14, 14, window_size=2, alpha=0.5)
    assert (hc.macs, hc.hifi_macs, hc.lofi_macs) == (83_467_776, 50_878_464, 32_589_312)
    assert (hc.h_heads, hc.l_heads) == (6, 6)


def test_single_layer_benchmark_numbers():
    rows = {a.name: a for a in cost.attention_comparison(768, 12, 14, 14, alpha=0.9, window_size=2,
                                                         sr_ratio=2, local_window=7,
                                                         convention=FVCORE)}
    assert rows["MSA"].macs == 521_428_992
    assert rows["Window"].macs == 477_173_760
    assert rows["SRA"].macs == 419_559_168
    assert rows["HiLo"].macs == 298_296_320
    assert rows["HiLo"].params == 2_198_528
    assert rows["SRA"].params == 4_723_968
    # what makes SRA's figure: its LayerNorm on the 7x7 reduced grid at fvcore's 5 MACs/element
    sra_authors = cost.sra_cost(768, 12, 14, 14, 2, convention=AUTHORS)
    assert rows["SRA"].macs - (sra_authors[0] + sra_authors[1]) == 49 * 768 * 4 - 49 * 768


def test_attention_memory_counts():
    rows = {a.name: a for a in cost.attention_comparison(64, 4, 10, 10, alpha=0.5, window_size=2,
                                                         batch_size=3, bytes_per_element=2)}
    assert rows["MSA"].attn_matrix_elements == 4 * 100 * 100
    assert rows["SRA"].attn_matrix_elements == 4 * 100 * 25
    assert rows["Window"].padded_grid == (14, 14)  # 10 -> padded to multiples of 7
    assert rows["Window"].attn_matrix_elements == 4 * 4 * 49 * 49
    assert rows["HiLo"].attn_matrix_elements == 25 * 2 * 16 + 2 * 100 * 25
    assert rows["MSA"].attn_matrix_bytes == 4 * 100 * 100 * 3 * 2


def test_hilo_pads_to_window_multiples():
    odd = cost.hilo_cost(64, 4, 15, 13, window_size=2, alpha=0.5)
    even = cost.hilo_cost(64, 4, 16, 14, window_size=2, alpha=0.5)
    assert odd.padded_grid == (16, 14)
    assert odd.macs == even.macs
    msa = cost.hilo_cost(64, 4, 15, 13, window_size=1)
    assert msa.padded_grid == (15, 13) and msa.h_heads == 0 and msa.hifi_rows == ()


@pytest.mark.parametrize("size", [(224, 224), (225, 301), (97, 130), (32, 32), (1024, 512)])
def test_geometry_matches_model(size, tiny_cfg):
    from hilocli.models import create_model, get_variant, split_heads

    for cfg in (get_variant("litv2_s").cfg, tiny_cfg):
        model = create_model(cfg) if cfg is tiny_cfg else None
        if model is not None:
            assert cost.grid_sizes(cfg, *size) == model.grid_sizes(*size)
            assert cost.min_input_size(cfg) == model.min_input_size()
    for heads, alpha, ws in ((12, 0.9, 2), (12, 0.0, 2), (12, 1.0, 2), (24, 0.9, 1), (3, 0.5, 4)):
        assert cost.split_heads(heads, alpha, ws) == split_heads(heads, alpha, ws)


def test_params_match_the_model(tiny_cfg):
    import torch

    from hilocli.models import LITv2, get_variant

    for cfg in (get_variant("litv2_s").cfg, get_variant("litv2_s_alpha0.0").cfg, tiny_cfg,
                tiny_cfg.replace(num_classes=0, final_norm=False, stage_norms=True, alpha=1.0)):
        with torch.device("meta"):
            model = LITv2(cfg)
        assert cost.model_cost(cfg, 64, 64).params == sum(p.numel() for p in model.parameters())


def test_authors_quirks_are_exactly_the_difference():
    """authors - as-run = offset conv counted with 12 instead of 8 channels (+ their bias) + the
    final norm on (H0*W0)//16 instead of the real stage-4 tokens - the patch-embedding bias."""
    from hilocli.models import get_variant

    cfg = get_variant("litv2_s").cfg
    for h, w in ((224, 224), (256, 320)):
        grids = cost.grid_sizes(cfg, h, w)
        dtm = sum((g[0] // 2) * (g[1] // 2) * (4 * 4 * 96 * 2**i + 4) for i, g in enumerate(grids[:3]))
        final = ((grids[0][0] * grids[0][1]) // 16 - grids[3][0] * grids[3][1]) * 768
        embed_bias = grids[0][0] * grids[0][1] * 96
        diff = cost.model_cost(cfg, h, w, AUTHORS).macs - cost.model_cost(cfg, h, w, AS_RUN).macs
        assert diff == dtm + final - embed_bias


def test_component_sums_and_validation():
    from hilocli.models import get_variant

    mc = cost.model_cost(get_variant("litv2_s").cfg, 400, 200)
    assert sum(s.macs for s in mc.stages) + mc.patch_embed_macs + mc.head_macs == mc.macs
    assert mc.stages[2].grid == (25, 12) and mc.stages[2].attn_grid == (26, 12)  # padded, s=2
    assert mc.macs_of("Hi-Fi") > 0 and mc.macs_of("MSA", stage=4) > 0 and mc.macs_of("MSA", 3) == 0
    with pytest.raises(ValueError):
        cost.model_cost(get_variant("litv2_s").cfg, 16, 224)
    with pytest.raises(ValueError):
        cost.attention_comparison(100, 12, 14, 14)
    with pytest.raises(ValueError):
        cost.get_convention("nope")


@pytest.mark.parametrize("size", [(224, 224), (200, 328)])
def test_counted_flops_equal_twice_analytic(size):
    from hilocli.cost_measure import count_flops
    from hilocli.models import get_variant

    cc = count_flops(get_variant("litv2_s").cfg, *size)
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
    expected = {a.name: a.params for a in cost.attention_comparison(dim, heads, H, W, alpha=0.5)}
    x = torch.randn(2, H * W, dim)  # (B, N, C)
    for name in cost.ATTENTION_TYPES:
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
    x = torch.randn(1, 36, 16)  # 6 x 6 grid, four 3x3 windows
    y = x.clone()
    y[0, 0] += 1.0  # token (0, 0): top-left window
    with torch.no_grad():
        a, b = layer(x, 6, 6).reshape(6, 6, 16), layer(y, 6, 6).reshape(6, 6, 16)
    assert torch.allclose(a[3:], b[3:]) and torch.allclose(a[:, 3:], b[:, 3:])
    assert not torch.allclose(a[:3, :3], b[:3, :3])


def test_benchmark_case_and_oom():
    from hilocli.cost_measure import BenchCase, classify_failure, run_case

    ok = run_case(BenchCase("attention", "HiLo", 8, 8, dim=32, num_heads=2, warmup=1, repeats=3,
                            threads=1))
    assert ok.status == "ok" and ok.img_per_s > 0 and len(ok.seconds) == 3
    assert ok.img_per_s_min <= ok.img_per_s <= ok.img_per_s_max
    assert ok.peak_memory_bytes is not None and ok.threads == 1
    # a batch no address space can hold: the allocation fails at once -> recorded, not raised
    oom = run_case(BenchCase("attention", "MSA", 14, 14, batch_size=10**9, dim=768, num_heads=12,
                             warmup=0, repeats=1, threads=1))
    assert oom.status == "OOM" and oom.img_per_s is None
    assert classify_failure(-9, "") == "OOM"
    assert classify_failure(1, "boom\nValueError: bad") == "error: ValueError: bad"
