"""The verdict: source scenes are the unit; one procedure for p and interval.

`verdict(deltas, alpha, margin)` on per-scene deltas (n_scenes, n_layers), delta = Hi-Fi minus
Lo-Fi of the high-band share with the window-block part taken out (`hf_fraction_deblocked`):
- primary endpoint: per scene, the mean of delta over the tested layers; the exact Wilcoxon
  signed-rank test of "the pseudo-median is 0" with its Hodges-Lehmann estimate and interval
  (`exact.hodges_lehmann`: the interval is the set of shifts that test does not reject, so p
  <= alpha exactly when 0 is outside the interval). Assumes independent scenes whose deltas are
  symmetric about their pseudo-median;
- per layer: the signed-rank statistic's raw p and Westfall-Young step-down max-T adjusted p
  (scenes flipped jointly, so any dependence between layers is allowed);
- word: `insufficient` when even the most extreme sign pattern cannot reach alpha (2/2^n >
  alpha); `equivalent` when the interval lies inside +-margin (a negligible difference, even
  when it excludes 0); else `supported` / `contradicted` when p <= alpha (by the sign of the
  estimate); else `inconclusive`.
Scenes with an undefined (NaN) delta in any tested layer are excluded and counted, never read
as 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

import hilocli.spectrum.exact as exact
from hilocli.scenes import group_means
from hilocli.spectrum.measures import SENSITIVITY_METRIC, VERDICT_METRIC
from hilocli.terminal import num

if TYPE_CHECKING:
    from hilocli.spectrum.collect import LayerSpectra

WORDS = ("supported", "contradicted", "equivalent", "inconclusive", "insufficient")
DEFAULT_ALPHA = 0.05
DEFAULT_MARGIN = 0.05  # |delta of hf share| below this counts as "no practical difference"
CLAIM = "Hi-Fi has a larger share of its power at high frequencies than Lo-Fi"


@dataclass
class Verdict:
    word: str  # one of WORDS
    n: int  # scenes in the primary endpoint (with every delta defined)
    n_excluded: int  # scenes left out: an undefined delta in some tested layer
    alpha: float
    margin: float
    min_images: int  # smallest n at which the two-sided test can reach alpha
    p: float  # two-sided signed-rank p, primary endpoint (NaN when n = 0)
    estimate: float  # Hodges-Lehmann estimate (pseudo-median) of the per-scene mean delta
    ci: tuple[float, float]  # its interval from the same test (infinite when n is too small)
    ci_level: float  # its coverage (exact up to 1000 scenes)
    mean: float  # plain mean of the per-scene mean delta (descriptive)
    p_layers: list[float]  # Westfall-Young adjusted, one per layer
    p_layers_raw: list[float]
    n_layers_defined: list[int]  # scenes with a defined delta, per layer
    test: str
    reason: str
    metric: str = VERDICT_METRIC
    ci_null: str = "exact"  # signed-rank null: "exact", or "normal" (n > 1000)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["ci"] = list(self.ci)
        return out


def decide(n: int, floor: int, hl: exact.HodgesLehmann, alpha: float, margin: float):
    """(word, reason) of the rule in the module docstring."""
    if n < floor:
        smallest = 2 / 2**n if n else 1
        return "insufficient", (
            f"{n} scene{'s' if n != 1 else ''}: the smallest attainable two-sided p is "
            f"{smallest:.3g} > alpha {alpha:g}; needs at least {floor} distinct scenes"
        )
    if -margin < hl.low and hl.high < margin:
        return "equivalent", f"interval inside +-{margin:g}: a negligible difference"
    if hl.p <= alpha:
        word = "supported" if hl.estimate > 0 else "contradicted"
        return word, f"p = {hl.p:.3g} <= alpha {alpha:g}"
    return "inconclusive", f"p = {hl.p:.3g} > alpha {alpha:g} and the interval reaches +-{margin:g}"


def verdict(
    deltas: np.ndarray,
    alpha: float = DEFAULT_ALPHA,
    margin: float = DEFAULT_MARGIN,
    seed: int = 0,
    metric: str = VERDICT_METRIC,
) -> Verdict:
    """Judge per-scene deltas (n_scenes, n_layers) or (n_scenes,); see the module docstring."""
    d = np.asarray(deltas, dtype=np.float64)
    if d.ndim == 1:
        d = d[:, None]
    if d.ndim != 2 or d.shape[1] == 0:
        raise ValueError(f"deltas must be (n_scenes, n_layers), got shape {d.shape}")
    if not 0 < alpha < 1 or margin < 0:
        raise ValueError(f"need 0 < alpha < 1 and margin >= 0, got {alpha}, {margin}")
    x = primary_endpoint(d)  # (n,)
    n = int(x.size)
    floor = exact.min_images(alpha)
    hl = exact.hodges_lehmann(x, alpha)
    raw = adjusted = np.full(d.shape[1], math.nan)
    if n >= floor:  # per layer only where a test can reach alpha
        flips = exact.sign_flips(d.shape[0], seed=seed)
        raw, adjusted = exact.westfall_young(exact.signed_ranks(d), flips)
    word, reason = decide(n, floor, hl, alpha, margin)
    return Verdict(
        word=word,
        n=n,
        n_excluded=int(d.shape[0] - n),
        alpha=alpha,
        margin=margin,
        min_images=floor,
        p=float(hl.p),
        estimate=hl.estimate,
        ci=(hl.low, hl.high),
        ci_level=hl.attained,
        ci_null=hl.null,
        mean=float(x.mean()) if n else math.nan,
        p_layers=[float(v) for v in adjusted],
        p_layers_raw=[float(v) for v in raw],
        n_layers_defined=[int(v) for v in np.isfinite(d).sum(axis=0)],
        test="exact Wilcoxon signed-rank test with its Hodges-Lehmann interval on the "
        "per-scene mean over layers; per layer: signed ranks, Westfall-Young step-down max-T, "
        "scenes flipped jointly",
        reason=reason,
        metric=metric,
    )


def primary_endpoint(d: np.ndarray) -> np.ndarray:
    """(n_units, n_layers) deltas -> (n,) each unit's mean over layers, units with an undefined
    delta in any layer left out."""
    return d[np.isfinite(d).all(axis=1)].mean(axis=1)


def branch_deltas(layers: Sequence[LayerSpectra], metric: str = VERDICT_METRIC) -> np.ndarray:
    """(n_images, len(layers)) Hi-Fi minus Lo-Fi `metric` of layers that have both branches."""
    cols = [np.asarray(s.hifi.per_image[metric], float) - s.lofi.per_image[metric] for s in layers]
    return np.stack(cols, axis=1)


def layer_deltas(
    layers: Sequence[LayerSpectra], metric: str = VERDICT_METRIC
) -> tuple[np.ndarray, list[LayerSpectra]]:
    """(n_images, n_comparable_layers) Hi-Fi minus Lo-Fi `metric`, and those layers."""
    comparable = [s for s in layers if s.comparable]
    if not comparable:
        return np.zeros((0, 0)), []
    return branch_deltas(comparable, metric), comparable


def interval(v: Verdict) -> str:
    lo, hi = v.ci
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "interval unbounded at this n"
    how = "exact coverage" if v.ci_null == "exact" else "coverage, normal signed-rank null"
    return f"CI [{lo:+.3f}, {hi:+.3f}] ({how} {v.ci_level:.1%})"


def not_comparable_line(layers: Sequence[LayerSpectra], weights: str) -> str:
    """The verdict line when no chosen layer can be compared, saying why for each."""
    reasons = sorted({s.not_comparable or "" for s in layers} - {""})
    return f"verdict: not comparable: {'; '.join(reasons)} ({weights})"


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary_line(
    v: Verdict,
    weights: str,
    trained: bool,
    n_images: int,
    sensitivity: Verdict | None = None,
) -> str:
    """The verdict line: the claim in words, the word, scenes and images, the pseudo-median of
    the share difference with its interval and p, what the window blocks change, the weights."""
    scope = (
        "" if trained else " [random weights: this concerns the architecture, not a trained model]"
    )
    excl = f", {v.n_excluded} excluded (undefined)" if v.n_excluded else ""
    blocks = ""
    if sensitivity is not None:
        same = "same word" if sensitivity.word == v.word else f"word {sensitivity.word}"
        blocks = f"; with window blocks left in: {num(sensitivity.estimate, '+.3f')}, {same}"
    return (
        f"verdict: {CLAIM}: {v.word} (n = {plural(v.n, 'scene')} from "
        f"{plural(n_images, 'image')}{excl}; "
        f"share difference, Hi-Fi minus Lo-Fi, pseudo-median {num(v.estimate, '+.3f')}, "
        f"{interval(v)}; p = {num(v.p, '.3g')}; {v.reason}{blocks}; {weights}){scope}"
    )


@dataclass
class Judged:
    """What `judge` found: the tested layers, the deltas and the verdict with its line."""

    tested: list[int]  # layer indices in the verdict
    deltas: np.ndarray  # (n_images, n_tested) per image; NaN for blank images
    scene_deltas: np.ndarray  # (n_scenes, n_tested) mean over each scene's images
    verdict: Verdict | None  # None: no comparable layer
    sensitivity: Verdict | None  # the same with the window blocks left in (hf_fraction)
    line: str


def judge(
    layers: list[LayerSpectra],
    request: Any,
    weights: Any,
    scenes: Any,
    blank: np.ndarray,
) -> Judged:
    """Deltas per image (blank images undefined), averaged per scene, judged (module docstring);
    the same on `hf_fraction` as the sensitivity to the window blocks."""
    if len(blank) and blank.all():
        line = (
            f"verdict: undefined: none of the {len(blank)} images has spatial content (flat "
            f"images are excluded) ({weights.describe()})"
        )
        return Judged([], np.zeros((len(blank), 0)), np.zeros((0, 0)), None, None, line)
    deltas, tested = layer_deltas(layers)
    if not tested:
        line = not_comparable_line(layers, weights.describe())
        return Judged([], deltas, deltas, None, None, line)
    deltas[blank] = np.nan
    scene_deltas = group_means(deltas, scenes.labels)
    raw = layer_deltas(tested, SENSITIVITY_METRIC)[0]
    raw[blank] = np.nan
    args = (request.alpha, request.margin, request.seed)
    v = verdict(scene_deltas, *args)
    sens = verdict(group_means(raw, scenes.labels), *args, metric=SENSITIVITY_METRIC)
    line = summary_line(v, weights.describe(), weights.trained, len(blank), sens)
    return Judged([s.layer.index for s in tested], deltas, scene_deltas, v, sens, line)
