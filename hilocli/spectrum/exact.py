"""Exact paired statistics over images (pure numpy/scipy, no torch).

- `sign_flips`: every +-1 pattern over n images (2^n rows) when n <= MAX_EXACT, else a seeded
  Monte-Carlo sample that starts with the identity.
- `signflip_p`: the sign-flip (randomisation) test of "the mean is 0" for the sum statistic.
- `westfall_young`: per-column p-values adjusted for the family by the step-down max-T method, the
  images flipped jointly across columns (exact under any dependence between the columns).
- `hodges_lehmann`: the median of the Walsh averages with its exact confidence interval (order
  statistics of the Walsh averages at the exact Wilcoxon signed-rank null quantiles).
- `min_images`: the smallest n for which the exact two-sided sign-flip test can reach alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_EXACT = 16  # up to 2^16 = 65536 flips: enumerate them all
MONTE_CARLO_DRAWS = 20000  # random flips beyond that (plus the identity)
REL_TOL = 1e-9  # ties between flipped and observed statistics count as "as extreme"


@dataclass(frozen=True)
class Flips:
    signs: np.ndarray  # (F, n) of +-1.0
    exact: bool  # all 2^n patterns (else a seeded Monte-Carlo sample with the identity first)
    seed: int | None

    @property
    def count(self) -> int:
        return int(self.signs.shape[0])

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
        return Flips(1.0 - 2.0 * (codes & 1), exact=True, seed=None)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, 2, size=(MONTE_CARLO_DRAWS, n)) * -2.0 + 1.0
    return Flips(np.vstack([np.ones((1, n)), draws]), exact=False, seed=seed)


def _share_at_least(null: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Share of rows of null (F, ...) >= observed, ties included (the identity is one row)."""
    tol = REL_TOL * np.maximum(1.0, np.abs(observed))
    return np.mean(null >= observed - tol, axis=0)


def signflip_p(x: np.ndarray, flips: Flips, alternative: str = "two-sided") -> float:
    """p of the sign-flip test of the sum of x (one value per image; no NaN)."""
    x = np.asarray(x, dtype=np.float64)
    null = flips.signs @ x  # (F,)
    obs = x.sum()
    if alternative == "two-sided":
        return float(_share_at_least(np.abs(null), np.abs(obs)))
    if alternative == "greater":
        return float(_share_at_least(null, obs))
    if alternative == "less":
        return float(_share_at_least(-null, -obs))
    raise ValueError(f"alternative must be two-sided, greater or less, got {alternative!r}")


def _standardised(flipped_sums: np.ndarray, sq: np.ndarray) -> np.ndarray:
    # |sum f d| / sqrt(sum d^2): a monotone function of the one-sample t under sign flips
    # (sum d^2 does not change when signs flip), so max-T over it is max-t.
    return np.abs(flipped_sums) / np.where(sq > 0, np.sqrt(sq), np.inf)


def westfall_young(d: np.ndarray, flips: Flips) -> tuple[np.ndarray, np.ndarray]:
    """(raw p, step-down max-T adjusted p) per column of d (n_images, n_cols); NaN entries are
    excluded per column (a zero contributes nothing to a flipped sum: exactly an exclusion)."""
    d = np.nan_to_num(np.asarray(d, dtype=np.float64), nan=0.0)
    sq = (d**2).sum(axis=0)  # (L,)
    null = _standardised(flips.signs @ d, sq)  # (F, L)
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
    attained: float  # the exact coverage of the interval given


def hodges_lehmann(x: np.ndarray, alpha: float = 0.05) -> HodgesLehmann:
    """Median of the Walsh averages (x_i + x_j)/2, i <= j, with the exact 1 - alpha interval
    [W_(k+1), W_(M-k)] (1-indexed order statistics of the M Walsh averages), k the largest with
    P(W+ <= k) <= alpha/2 (W+ the exact signed-rank statistic): the set of shifts the exact
    two-sided Wilcoxon test does not reject."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    if n == 0:
        return HodgesLehmann(math.nan, math.nan, math.nan, 1 - alpha, math.nan)
    i, j = np.triu_indices(n)
    walsh = np.sort((x[i] + x[j]) / 2.0)
    m = walsh.size  # n (n + 1) / 2
    cdf = wilcoxon_null_cdf(n)
    below = np.nonzero(cdf <= alpha / 2)[0]
    if below.size == 0:  # even the extreme interval misses the level: unbounded
        return HodgesLehmann(float(np.median(walsh)), -math.inf, math.inf, 1 - alpha, 1.0)
    k = int(below[-1])  # P(W+ <= k) <= alpha/2: walsh[k] is the (k+1)-th smallest
    return HodgesLehmann(
        float(np.median(walsh)),
        float(walsh[k]),
        float(walsh[m - 1 - k]),
        1 - alpha,
        float(1 - 2 * cdf[k]),
    )


def min_images(alpha: float) -> int:
    """Smallest n with 2 / 2^n <= alpha: the exact two-sided sign-flip test's floor."""
    return max(1, math.ceil(math.log2(2.0 / alpha) - 1e-12))
