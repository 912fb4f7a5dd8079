"""The verdict's statistics against brute force and scipy: sign-flip p, Hodges-Lehmann interval,
Westfall-Young max-T, the floor of images, and the verdict rule on planted per-image deltas."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from hilocli.spectrum import exact, verdict
from hilocli.spectrum.stats import summary_line


def brute_signflip_p(x: np.ndarray) -> float:
    sums = [abs(np.dot(s, x)) for s in itertools.product((1.0, -1.0), repeat=len(x))]
    return float(np.mean(np.array(sums) >= abs(x.sum()) - 1e-12))


def brute_signed_rank_p(x: np.ndarray) -> float:
    """Two-sided p of W+ by enumerating every sign pattern over the ranks of |x|."""
    ranks = sps.rankdata(np.abs(x))
    w = ranks[x > 0].sum()
    null = np.array([sum(r for r, s in zip(ranks, signs) if s)
                     for signs in itertools.product((0, 1), repeat=len(x))])  # fmt: skip
    return float(min(1.0, 2 * min(np.mean(null <= w), np.mean(null >= w))))


@pytest.mark.parametrize("n", [1, 3, 6, 9, 12])
def test_signed_rank_p_is_brute_force_enumeration_and_scipy(n):
    x = np.random.default_rng(n).normal(0.05, 0.1, n)
    hl = exact.hodges_lehmann(x)
    assert hl.p == pytest.approx(brute_signed_rank_p(x), abs=1e-12)
    if n >= 3:
        assert hl.p == pytest.approx(sps.wilcoxon(x, method="exact").pvalue, abs=1e-12)
    same_sign = np.abs(x) + 0.01
    assert exact.hodges_lehmann(same_sign).p == pytest.approx(min(1.0, 2 / 2**n))  # the floor


def test_p_and_interval_never_disagree_on_skewed_deltas():
    """The issue's case: with skewed deltas the old sign-flip p and the Hodges-Lehmann interval
    disagreed in 6 of 150 data sets. Both now come from one test: p <= alpha exactly when 0 lies
    outside the interval."""
    rng = np.random.default_rng(7)
    disagree = 0
    for k in range(300):
        n = 6 + k % 20
        x = rng.lognormal(0.0, 1.0, n) - rng.uniform(0.5, 2.5)  # skewed, either sign
        hl = exact.hodges_lehmann(x, 0.05)
        disagree += (hl.p <= 0.05) != (hl.low > 0 or hl.high < 0)
    assert disagree == 0


def test_type_one_error_of_the_verdict_test_at_most_alpha_under_a_symmetric_null():
    rng = np.random.default_rng(11)
    rejected = [exact.hodges_lehmann(rng.standard_t(3, 14)).p <= 0.05 for _ in range(2000)]
    # exact level at n = 14 is below 0.05; 2000 runs: Monte-Carlo sd 0.005
    assert np.mean(rejected) <= 0.05 + 0.012


def test_monte_carlo_flips_beyond_16_images_are_seeded():
    a, b = exact.sign_flips(20, seed=5), exact.sign_flips(20, seed=5)
    assert not a.exact and a.count == exact.MONTE_CARLO_DRAWS + 1 and np.all(a.signs[0] == 1)
    assert np.array_equal(a.signs, b.signs) and "seed 5" in a.describe()
    # random signs: about half are -1, every row distinct from the identity but the first
    assert abs(np.mean(a.signs[1:] < 0) - 0.5) < 0.01


def test_wilcoxon_null_matches_scipy():
    for n in (1, 4, 7, 10):
        cdf = exact.wilcoxon_null_cdf(n)
        ranks = np.arange(1, n + 1)
        brute = [
            sum(r for r, s in zip(ranks, signs) if s)
            for signs in itertools.product((0, 1), repeat=n)
        ]
        assert cdf[-1] == pytest.approx(1.0)
        for k in range(0, n * (n + 1) // 2 + 1, 3):
            assert cdf[k] == pytest.approx(np.mean(np.array(brute) <= k))


@pytest.mark.parametrize("n", [6, 8, 11])
def test_hodges_lehmann_interval_inverts_the_exact_wilcoxon_test(n):
    x = np.random.default_rng(n).normal(0.1, 0.2, n)
    hl = exact.hodges_lehmann(x, alpha=0.05)
    walsh = [(x[i] + x[j]) / 2 for i in range(n) for j in range(i, n)]
    assert hl.estimate == pytest.approx(np.median(walsh))
    assert hl.low < hl.estimate < hl.high and hl.attained >= 0.95

    def p(theta):
        return sps.wilcoxon(x - theta, method="exact").pvalue

    eps = 1e-9
    # inside the interval the exact test does not reject; just outside it does
    assert p(hl.low + eps) > 0.05 and p(hl.high - eps) > 0.05
    assert p(hl.low - eps) <= 0.05 and p(hl.high + eps) <= 0.05


def test_hodges_lehmann_is_unbounded_when_n_is_too_small():
    hl = exact.hodges_lehmann(np.array([0.1, 0.2, 0.3, 0.4, 0.5]), alpha=0.05)
    assert hl.estimate == pytest.approx(0.3) and hl.low == -math.inf and hl.high == math.inf


def test_min_images_is_the_exact_floor():
    for alpha in (0.05, 0.01, 0.1, 0.001):
        n = exact.min_images(alpha)
        assert 2 / 2**n <= alpha < 2 / 2 ** (n - 1)
    assert exact.min_images(0.05) == 6


def test_westfall_young_never_below_raw_and_exact_for_identical_layers():
    rng = np.random.default_rng(3)
    d = rng.normal(0.05, 0.1, (8, 1))
    flips = exact.sign_flips(8)
    raw1, adj1 = exact.westfall_young(d, flips)
    assert raw1[0] == pytest.approx(adj1[0])
    copies = np.repeat(d, 6, axis=1)  # six layers that agree: no multiplication by 6
    raw, adj = exact.westfall_young(copies, flips)
    np.testing.assert_allclose(adj, raw1[0]) and np.testing.assert_allclose(raw, raw1[0])
    # the one-layer sign-flip test of the sum is the same test
    assert raw1[0] == pytest.approx(brute_signflip_p(d[:, 0]))
    mixed = rng.normal(0.0, 0.1, (8, 5)) + np.array([0.2, 0.0, 0.05, -0.1, 0.0])
    raw, adj = exact.westfall_young(mixed, flips)
    assert np.all(adj >= raw - 1e-12) and np.all(adj <= 1)
    for k in range(5):
        assert raw[k] == pytest.approx(brute_signflip_p(mixed[:, k]))
    # single-step bound: the adjusted p never exceeds the share of max-T at least as extreme
    t = np.abs(flips.signs @ mixed) / np.sqrt((mixed**2).sum(0))
    single = [np.mean(t.max(1) >= t[0, k] - 1e-9) for k in range(5)]
    assert np.all(adj <= np.array(single) + 1e-12)
    # on signed ranks (what the verdict uses per layer) the raw p is the signed-rank test's
    ranked = exact.signed_ranks(mixed)
    raw, _ = exact.westfall_young(ranked, flips)
    for k in range(5):
        assert raw[k] == pytest.approx(brute_signed_rank_p(mixed[:, k]))


def test_signed_ranks_equal_scipy_rankdata_with_ties_nan_and_inf():
    """hilo ranks with numpy (scipy.stats is not imported by a run); scipy's rankdata is the
    reference: average ranks for ties, NaN left out of a column's ranking, inf ranked last."""
    rng = np.random.default_rng(5)
    d = np.round(rng.normal(0.0, 1.0, (30, 4)), 1)  # rounding: many tied |d|, some zeros
    d[[3, 7], 1] = np.nan
    d[5, 2] = -np.inf
    ranked = exact.signed_ranks(d)
    finite = np.isfinite(d)
    for k in range(4):
        kept = ~np.isnan(d[:, k])
        ref = np.sign(d[kept, k]) * sps.rankdata(np.abs(d[kept, k]))
        np.testing.assert_array_equal(ranked[kept, k][finite[kept, k]], ref[finite[kept, k]])
    assert np.isnan(ranked[~finite]).all()
    np.testing.assert_array_equal(exact.average_ranks(np.array([2.0, 1.0, 2.0, 2.0, 0.5])),
                                  [4.0, 2.0, 4.0, 4.0, 1.0])  # fmt: skip


def test_normal_null_p_equals_scipy_norm_past_the_exact_null(monkeypatch):
    """Past WILCOXON_EXACT_MAX the p is the normal approximation with continuity correction,
    computed with scipy.special's ndtr: the same as scipy.stats.norm, and within 1e-3 of the
    exact null at n = 60."""
    n, positive = 60, 700.0
    exact_p = exact.signed_rank_p(n, positive)
    monkeypatch.setattr(exact, "WILCOXON_EXACT_MAX", n - 1)
    mean, sd = n * (n + 1) / 4, math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    ref = 2 * sps.norm.cdf((positive + 0.5 - mean) / sd)
    assert exact.signed_rank_p(n, positive) == pytest.approx(ref, rel=1e-12)
    assert exact.signed_rank_p(n, positive) == pytest.approx(exact_p, abs=1e-3)


def test_verdict_rule_on_planted_deltas():
    rng = np.random.default_rng(0)
    few = verdict(np.full((5, 6), 0.2))  # consistent but 5 images: 2/32 > 0.05
    assert few.word == "insufficient" and few.min_images == 6 and few.n == 5
    assert few.p == pytest.approx(2 / 32) and few.estimate == pytest.approx(0.2)
    one = verdict(np.array([[0.3, 0.4]]))
    assert one.word == "insufficient" and one.n == 1 and one.estimate == pytest.approx(0.35)
    pos = verdict(0.1 + rng.uniform(0.0, 0.05, (6, 6)))  # at the floor n = 6
    assert pos.word == "supported" and pos.p == pytest.approx(2 / 64)
    assert pos.ci[0] > 0 and all(p <= 0.05 for p in pos.p_layers)
    neg = verdict(-0.1 - rng.uniform(0.0, 0.05, (6, 2)))
    assert neg.word == "contradicted" and neg.estimate < 0
    tiny = verdict(rng.normal(0.0, 0.005, (12, 3)))  # within +-0.05, enough images
    assert tiny.word == "equivalent" and -0.05 < tiny.ci[0] and tiny.ci[1] < 0.05
    # the case: a consistent +0.01 over 24 scenes excludes 0 but lies inside the margin
    small = verdict(0.01 + rng.uniform(-0.002, 0.002, (24, 1)))
    assert small.p <= 0.05 and small.ci[0] > 0 and small.word == "equivalent"
    noise = verdict(rng.normal(0.0, 0.3, (10, 3)))
    assert noise.word == "inconclusive"
    assert verdict(np.array([0.1, 0.2, 0.1, 0.3, 0.2, 0.1])).word == "supported"  # 1-D input


def test_nan_deltas_are_excluded_and_counted_never_zero():
    d = np.full((8, 2), 0.2)
    d[[1, 4], 0] = np.nan
    v = verdict(d)
    assert v.n == 6 and v.n_excluded == 2 and v.word == "supported"
    assert v.p == pytest.approx(2 / 64)  # 6 images, not 8 (NaN as 0 would keep 8)
    assert v.n_layers_defined == [6, 8]
    # per layer the excluded images contribute nothing: the same p as dropping them
    assert v.p_layers_raw[0] == pytest.approx(brute_signed_rank_p(np.full(6, 0.2)))
    all_nan = verdict(np.full((4, 1), np.nan))
    assert all_nan.word == "insufficient" and all_nan.n == 0 and all_nan.n_excluded == 4


def test_verdict_line_states_n_estimate_interval_p_and_weights():
    v = verdict(np.linspace(0.1, 0.2, 7))
    line = summary_line(v, "file w.pth (sha256 abcd)", trained=True, n_images=9)
    assert "supported" in line and "n = 7 scenes from 9 images" in line
    assert f"{v.estimate:+.3f}" in line and "larger share of its power" in line
    assert "CI [" in line and "p = 0.0156" in line and "w.pth (sha256 abcd)" in line
    short = summary_line(verdict(np.ones(3)), "random init (seed 0)", trained=False, n_images=3)
    assert "insufficient" in short and "needs at least 6" in short and "architecture" in short
    other = verdict(np.linspace(-0.01, 0.01, 7))
    both = summary_line(v, "w", True, 7, sensitivity=other)
    assert f"with window blocks left in: {other.estimate:+.3f}, word {other.word}" in both


def test_statistics_scale_to_many_images_without_n_squared_memory(monkeypatch):
    """Beyond WALSH_KEEP_MAX the Walsh order statistics are found by counting: the same numbers
    as sorting them all; beyond WILCOXON_EXACT_MAX the normal null gives the exact interval's
    rank within 3 of 500,500 (n = 1000, where both exist); Monte-Carlo flips drawn in blocks
    equal one big draw."""
    rng = np.random.default_rng(3)
    x = rng.normal(0.2, 1.0, 301)
    kept = exact.hodges_lehmann(x)
    monkeypatch.setattr(exact, "WALSH_KEEP_MAX", 10)
    counted = exact.hodges_lehmann(x)
    for a, b in ((kept.estimate, counted.estimate), (kept.low, counted.low),
                 (kept.high, counted.high)):  # fmt: skip
        assert b == pytest.approx(a, abs=1e-15)
    n = 1000
    exact_k, exact_cov, null = exact._critical_rank(n, 0.05)
    monkeypatch.setattr(exact, "WILCOXON_EXACT_MAX", n - 1)
    normal_k, normal_cov, normal_null = exact._critical_rank(n, 0.05)
    assert (null, normal_null) == ("exact", "normal")
    assert abs(normal_k - exact_k) <= 3 and normal_cov == pytest.approx(exact_cov, abs=1e-4)
    flips = exact.sign_flips(40, seed=9)
    d = rng.normal(size=(40, 3))
    whole, signs = flips.apply(d), flips.signs
    monkeypatch.setattr(exact, "FLIP_BLOCK_VALUES", 40 * 7)  # 7 patterns per block
    np.testing.assert_array_equal(flips.signs, signs)  # the same patterns, block by block
    # a signed sum can cancel to near zero: its rounding is bounded by eps * sum|d|, not by the sum
    np.testing.assert_allclose(flips.apply(d), whole, rtol=0, atol=1e-12 * np.abs(d).sum())
    assert whole.shape == (exact.MONTE_CARLO_DRAWS + 1, 3)
    np.testing.assert_allclose(whole[0], d.sum(0), rtol=1e-12)  # the identity first


def test_random_control_rank_p_is_exact_for_exchangeable_seeds():
    """The model among 19 random inits: with exchangeable values every position is equally
    likely, and exactly one of the 20 (the largest) gets p <= 0.05: a random init is called
    different in 5% of runs, never more (the old difference-in-differences test: 15-25%)."""
    from hilocli.spectrum.control import rank_p, seeds_needed

    values = np.random.default_rng(2).normal(size=20)
    ps = [rank_p(values[k], list(np.delete(values, k))) for k in range(20)]
    assert sorted(ps) == pytest.approx([(1 + j) / 20 for j in range(20)])
    assert sum(p <= 0.05 for p in ps) == 1 and seeds_needed(0.05) == 19
    assert math.isnan(rank_p(math.nan, [0.1, 0.2])) and math.isnan(rank_p(0.1, [math.nan]))
    assert rank_p(0.5, [0.5, 0.1]) == pytest.approx(2 / 3)  # a tie counts as at least as large
