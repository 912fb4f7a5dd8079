"""Exact paired statistics over images (pure numpy/scipy, no torch).

- `sign_flips`: every +-1 pattern over n images (2^n rows) when n <= MAX_EXACT, else a seeded
  Monte-Carlo sample that starts with the identity.
- `signed_ranks`: each column's values replaced by sign x rank of |value| (NaN kept out).
- `westfall_young`: per-column p-values adjusted for the family by the step-down max-T method, the
  units flipped jointly across columns (exact under any dependence between the columns).
- `hodges_lehmann`: the Wilcoxon signed-rank test of "the pseudo-median is 0" and its
  Hodges-Lehmann estimate and interval, one procedure: the p-value counts the positive Walsh
  averages, the interval is the set of shifts that test does not reject (exact null).
- `min_images`: the smallest n for which the exact two-sided test can reach alpha (2 / 2^n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_EXACT = 16  # up to 2^16 = 65536 flips: enumerate them all
MONTE_CARLO_DRAWS = 20000  # random flips beyond that (plus the identity)
FLIP_BLOCK_VALUES = 1 << 21  # Monte-Carlo signs drawn at most this many at a time (16 MiB)
WILCOXON_EXACT_MAX = 1000  # exact signed-rank null up to here (2^n is finite in float64)
WALSH_KEEP_MAX = 2000  # up to n(n+1)/2 ~ 2M Walsh averages held; beyond, order statistics by
# counting (O(n log n) per step, no n^2 array)
REL_TOL = 1e-9  # ties between flipped and observed statistics count as "as extreme"


@dataclass(frozen=True)
class Flips:
    """Sign patterns over n images: all 2^n (exact) or MONTE_CARLO_DRAWS seeded ones after the
    identity. Monte-Carlo patterns are drawn block by block when applied (`apply`), never held
    at once: memory stays bounded for any n (50,000 images: a few MiB, not 8 GB)."""

    n: int
    exact: bool  # all 2^n patterns (else a seeded Monte-Carlo sample with the identity first)
    seed: int | None
    exact_signs: np.ndarray | None = None  # (2^n, n) when exact

    @property
    def count(self) -> int:
        return 2**self.n if self.exact else MONTE_CARLO_DRAWS + 1

    def _blocks(self):
        """(F_block, n) float64 sign blocks in order; the identity first."""
        if self.exact:
            yield self.exact_signs
            return
        yield np.ones((1, self.n))
        rng = np.random.default_rng(self.seed)
        rows = max(1, FLIP_BLOCK_VALUES // max(self.n, 1))
        for start in range(0, MONTE_CARLO_DRAWS, rows):
            size = (min(rows, MONTE_CARLO_DRAWS - start), self.n)
            yield 1.0 - 2.0 * rng.integers(0, 2, size=size, dtype=np.int8)

    @property
    def signs(self) -> np.ndarray:
        """Every pattern as one (F, n) array (for small n and tests; `apply` for the sums)."""
        return np.vstack(list(self._blocks()))

    def apply(self, d: np.ndarray) -> np.ndarray:
        """signs @ d for d (n,) or (n, L): (F,) or (F, L), computed block by block."""
        return np.concatenate([block @ d for block in self._blocks()], axis=0)

    def describe(self) -> str:
        if self.exact:
            return f"exact sign-flip test (all {self.count} sign patterns)"
        return (
            f"Monte-Carlo sign-flip test ({self.count - 1} random sign patterns, seed {self.seed})"
        )


def sign_flips(n: int, seed: int = 0, max_exact: int = MAX_EXACT) -> Flips:
    """All 2^n sign patterns over n images, or MONTE_CARLO_DRAWS seeded ones after the identity."""
    if n <= max_exact:
        codes = np.arange(2**n, dtype=np.int64)[:, None] >> np.arange(n)[None, :]
        return Flips(n, exact=True, seed=None, exact_signs=1.0 - 2.0 * (codes & 1))
    return Flips(n, exact=False, seed=seed)


def _share_at_least(null: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Share of rows of null (F, ...) >= observed, ties included (the identity is one row)."""
    tol = REL_TOL * np.maximum(1.0, np.abs(observed))
    return np.mean(null >= observed - tol, axis=0)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a 1-D array's values, ties given their average rank: a value's rank is
    (#values below it + #values at or below it + 1) / 2 (two binary searches on the sorted
    values; the same as scipy.stats.rankdata's "average", without its import)."""
    ordered = np.sort(values)
    below = np.searchsorted(ordered, values, side="left")
    at_or_below = np.searchsorted(ordered, values, side="right")
    return (below + at_or_below + 1) / 2.0


def signed_ranks(d: np.ndarray) -> np.ndarray:
    """(n, L) -> sign(d) x rank(|d|) per column (average ranks for ties; NaN stays NaN and is
    not ranked): the signed-rank statistic is the sum of a column, so sign flips of these rows
    are its null."""
    d = np.asarray(d, dtype=np.float64)
    out = np.full(d.shape, np.nan)
    for col in range(d.shape[1]):
        kept = np.isfinite(d[:, col])
        values = d[kept, col]
        out[kept, col] = np.sign(values) * average_ranks(np.abs(values))
    return out


def _standardised(flipped_sums: np.ndarray, sq: np.ndarray) -> np.ndarray:
    # |sum f d| / sqrt(sum d^2): a monotone function of the one-sample t under sign flips
    # (sum d^2 does not change when signs flip), so max-T over it is max-t.
    return np.abs(flipped_sums) / np.where(sq > 0, np.sqrt(sq), np.inf)


def westfall_young(d: np.ndarray, flips: Flips) -> tuple[np.ndarray, np.ndarray]:
    """(raw p, step-down max-T adjusted p) per column of d (n_images, n_cols); NaN entries are
    excluded per column (a zero contributes nothing to a flipped sum: exactly an exclusion)."""
    d = np.nan_to_num(np.asarray(d, dtype=np.float64), nan=0.0)
    sq = (d**2).sum(axis=0)  # (L,)
    null = _standardised(flips.apply(d), sq)  # (F, L)
    obs = null[0]  # (L,) the identity is the first row of every Flips
    raw = _share_at_least(null, obs)
    order = np.argsort(-obs, kind="stable")  # most extreme first
    adjusted = np.empty_like(raw)
    running = 0.0
    for k, col in enumerate(order):
        rest_max = null[:, order[k:]].max(axis=1)  # max over this and the less extreme columns
        running = max(running, float(_share_at_least(rest_max, obs[col])))
        adjusted[col] = running
    return raw, adjusted


def wilcoxon_null_cdf(n: int) -> np.ndarray:
    """cdf[k] = P(W+ <= k) for the exact signed-rank statistic of n untied, non-zero values."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for rank in range(1, n + 1):
        counts[rank:] = counts[rank:] + counts[:-rank].copy()
    return np.cumsum(counts) / 2.0**n


@dataclass(frozen=True)
class HodgesLehmann:
    estimate: float
    low: float  # -inf/inf when n is too small for the level (see `attained`)
    high: float
    confidence: float  # the nominal level 1 - alpha
    attained: float  # the coverage of the interval given (exact up to WILCOXON_EXACT_MAX)
    null: str = "exact"  # "exact" signed-rank null, or "normal" (its normal approximation)
    p: float = math.nan  # two-sided signed-rank p of "the pseudo-median is 0", same null


def _normal_null(n: int) -> tuple[float, float]:
    return n * (n + 1) / 4.0, math.sqrt(n * (n + 1) * (2 * n + 1) / 24.0)


def signed_rank_p(n: int, positive: float) -> float:
    """Two-sided p of the signed-rank statistic W+ = `positive` (the number of positive Walsh
    averages, zeros counted half) under the null `_critical_rank` uses: the exact one up to
    WILCOXON_EXACT_MAX values, else its normal approximation with continuity correction."""
    m = n * (n + 1) // 2
    low, high = math.ceil(positive), math.floor(positive)  # conservative on a half count
    if n <= WILCOXON_EXACT_MAX:
        cdf = wilcoxon_null_cdf(n)
        tail = min(cdf[min(low, m)], cdf[min(m - high, m)])  # P(W <= w) or P(W >= w), symmetric
        return float(min(1.0, 2.0 * tail))
    from scipy.special import ndtr  # lazy: needed only past the exact null (the normal cdf)

    mean, sd = _normal_null(n)
    return float(min(1.0, 2.0 * ndtr((min(low, m - high) + 0.5 - mean) / sd)))


def _critical_rank(n: int, alpha: float) -> tuple[int | None, float, str]:
    """(k, attained coverage, null): k the largest with P(W+ <= k) <= alpha/2 (None: no such k),
    from the exact signed-rank null up to WILCOXON_EXACT_MAX images, else from its normal
    approximation with continuity correction (mean n(n+1)/4, variance n(n+1)(2n+1)/24)."""
    if n <= WILCOXON_EXACT_MAX:
        cdf = wilcoxon_null_cdf(n)
        below = np.nonzero(cdf <= alpha / 2)[0]
        if below.size == 0:
            return None, 1.0, "exact"
        k = int(below[-1])
        return k, float(1 - 2 * cdf[k]), "exact"
    # lazy: needed only past the exact null; the normal cdf and its inverse from scipy.special,
    # not scipy.stats (slow to import)
    from scipy.special import ndtr, ndtri

    mean, sd = _normal_null(n)
    k = math.floor(mean + sd * ndtri(alpha / 2) - 0.5)
    return k, float(1 - 2 * ndtr((k + 0.5 - mean) / sd)), "normal"


def walsh_count(xs: np.ndarray, idx: np.ndarray, t: float, side: str = "right") -> int:
    """Walsh averages (x_i + x_j)/2, i <= j, of sorted xs that are <= t (side "right") or < t
    ("left"), counted by binary search (O(n log n), no n^2 array); idx = arange(n)."""
    ends = np.searchsorted(xs, 2.0 * t - xs, side=side)  # j < ends[i]: x_i + x_j <= 2t
    return int(np.maximum(ends - idx, 0).sum())


def _walsh_order_stats(x: np.ndarray, ranks: list[int]) -> list[float]:
    """The ranks-th smallest (0-indexed) Walsh averages (x_i + x_j)/2, i <= j, of x without
    forming them: bisection on the value, counting averages <= t by binary search on sorted x
    (O(n log n) per step), to the last bit of float64."""
    xs = np.sort(np.asarray(x, dtype=np.float64))
    idx = np.arange(xs.size)

    def count_le(t: float) -> int:
        return walsh_count(xs, idx, t)

    out = []
    for r in ranks:
        lo, hi = float(xs[0]), float(xs[-1])  # every Walsh average lies in [min, max]
        while True:
            mid = lo + (hi - lo) / 2.0
            if mid <= lo or mid >= hi:
                break
            if count_le(mid) >= r + 1:
                hi = mid
            else:
                lo = mid
        out.append(hi if count_le(lo) < r + 1 else lo)
    return out


def hodges_lehmann(x: np.ndarray, alpha: float = 0.05) -> HodgesLehmann:
    """Median of the Walsh averages (x_i + x_j)/2, i <= j, with the 1 - alpha interval
    [W_(k+1), W_(M-k)] (1-indexed order statistics of the M Walsh averages), k the largest with
    P(W+ <= k) <= alpha/2 (W+ the signed-rank statistic; exact null up to WILCOXON_EXACT_MAX
    images, normal approximation beyond): the set of shifts the two-sided Wilcoxon test does
    not reject. Up to WALSH_KEEP_MAX images the Walsh averages are sorted in memory; beyond,
    their order statistics are found by counting (memory O(n))."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    if n == 0:
        return HodgesLehmann(math.nan, math.nan, math.nan, 1 - alpha, math.nan, "exact", math.nan)
    m = n * (n + 1) // 2
    k, attained, null = _critical_rank(n, alpha)
    mids = [(m - 1) // 2, m // 2]  # the median: one or two middle order statistics
    ranks = mids + ([] if k is None else [k, m - 1 - k])
    if n <= WALSH_KEEP_MAX:
        i, j = np.triu_indices(n)
        walsh = np.sort((x[i] + x[j]) / 2.0)
        values = [float(walsh[r]) for r in ranks]
        not_positive = int(np.searchsorted(walsh, 0.0, side="right"))
        negative = int(np.searchsorted(walsh, 0.0, side="left"))
    else:
        values = _walsh_order_stats(x, ranks)
        xs, idx = np.sort(x), np.arange(n)
        not_positive, negative = walsh_count(xs, idx, 0.0), walsh_count(xs, idx, 0.0, "left")
    p = signed_rank_p(n, (m - not_positive) + 0.5 * (not_positive - negative))
    estimate = (values[0] + values[1]) / 2.0
    if k is None:  # even the extreme interval misses the level: unbounded
        return HodgesLehmann(estimate, -math.inf, math.inf, 1 - alpha, 1.0, null, p)
    return HodgesLehmann(estimate, values[2], values[3], 1 - alpha, attained, null, p)


def min_images(alpha: float) -> int:
    """Smallest n with 2 / 2^n <= alpha: the exact two-sided signed-rank test's floor."""
    return max(1, math.ceil(math.log2(2.0 / alpha) - 1e-12))
