"""The random control (`--control random`): is the model's statistic unusual among random inits
of the same architecture?

Seeds are the unit. The statistic is the verdict's estimate (the pseudo-median over scenes of
the per-scene mean Hi-Fi minus Lo-Fi share difference), computed on the same images and layers
for the model and for each of S seeded random inits. Under "the model is like a random init"
the S + 1 values are exchangeable, so the model's rank is uniform and
p = (1 + #seeds at least as large) / (S + 1) is exact (one-sided: training made Hi-Fi more
high-frequency than the architecture alone does). A random init tested this way is called
different in at most alpha of runs. The smallest attainable p is 1 / (S + 1): S >= 19 seeds for
alpha 0.05.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

import hilocli.spectrum.exact as exact
from hilocli.scenes import group_means
from hilocli.spectrum.stats import branch_deltas, primary_endpoint

CONTROL_WORDS = ("exceeds", "not shown", "insufficient")
DEFAULT_CONTROL_SEEDS = 19


def seeds_needed(alpha: float) -> int:
    """Smallest S with 1 / (S + 1) <= alpha."""
    return max(1, math.ceil(1.0 / alpha - 1 - 1e-9))


@dataclass
class ControlResult:
    """The model's statistic against its random inits' (one per seed)."""

    weights: list[Any]  # hilocli.checkpoint.Provenance per seed
    statistic: float  # the model's pseudo-median share difference (NaN: undefined)
    seed_statistics: list[float]  # the same per random init
    p: float  # (1 + #seeds >= statistic) / (S + 1); NaN when undefined
    word: str  # one of CONTROL_WORDS
    alpha: float
    line: str

    @property
    def seeds(self) -> list[int]:
        return [w.seed for w in self.weights]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seeds": self.seeds,
            "note": "random weights: these numbers concern the architecture, not a trained model",
            "test": "rank of the model's statistic among random inits, one-sided",
            "statistic": self.statistic,
            "seed_statistics": self.seed_statistics,
            "per_seed": [w.to_dict() for w in self.weights],
            "p": self.p,
            "word": self.word,
            "alpha": self.alpha,
            "verdict_line": self.line,
        }


def rank_p(statistic: float, seed_statistics: list[float]) -> float:
    """(1 + #seeds with a statistic >= the model's) / (S + 1); NaN when any value is undefined."""
    values = np.asarray(seed_statistics, dtype=np.float64)
    if not math.isfinite(statistic) or not np.isfinite(values).all():
        return math.nan
    return float((1 + np.sum(values >= statistic)) / (values.size + 1))


def seed_statistic(layers: list, tested: list[int], labels: np.ndarray, blank, alpha: float):
    """A random init's statistic on the model's tested layers, scenes and blank images (its
    layers are used whether or not their branches would be compared on their own)."""
    deltas = branch_deltas([s for s in layers if s.layer.index in tested])
    deltas[blank] = np.nan
    x = primary_endpoint(group_means(deltas, labels))
    return exact.hodges_lehmann(x, alpha).estimate


def judge_control(judged: Any, twin_layers: list[list], twins: list[Any], request: Any,
                  labels: np.ndarray, blank: np.ndarray) -> ControlResult | None:  # fmt: skip
    """The model's statistic ranked among the random inits' (None: no tested layer)."""
    if judged.verdict is None:
        return None
    alpha = request.alpha
    stats = [seed_statistic(t, judged.tested, labels, blank, alpha) for t in twin_layers]
    p = rank_p(judged.verdict.estimate, stats)
    if len(stats) < seeds_needed(alpha):
        word = "insufficient"
    else:
        word = "exceeds" if p <= alpha else "not shown"
    seeds = ", ".join(str(t.provenance.seed) for t in twins)
    needs = f", needs {seeds_needed(alpha)} for alpha {alpha:g}" if word == "insufficient" else ""
    line = (
        f"random control: {word}: the model's share difference {judged.verdict.estimate:+.3f} "
        f"against {len(stats)} random inits of its architecture (seeds {seeds}{needs}); "
        f"rank p = {p:.3g}"
    )
    return ControlResult([t.provenance for t in twins], judged.verdict.estimate, stats, p, word,
                         alpha, line)  # fmt: skip
