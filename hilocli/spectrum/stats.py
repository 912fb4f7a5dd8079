"""The verdict: images are the unit; exact tests with their floor stated.

`verdict(deltas, alpha, margin)` on per-image deltas (n_images, n_layers), delta = Hi-Fi minus
Lo-Fi of the content high-frequency fraction:
- primary endpoint: per image, the mean of delta over the tested layers; two-sided sign-flip test
  (exact up to 16 images), Hodges-Lehmann estimate with its exact interval;
- per layer: raw sign-flip p and Westfall-Young step-down max-T adjusted p (images flipped jointly);
- word: `insufficient` when even the most extreme sign pattern cannot reach alpha (2/2^n > alpha),
  else `supported` / `contradicted` (p <= alpha, by the sign of the mean), else `equivalent` when
  both one-sided tests of the TOST against +-margin reach alpha, else `inconclusive`.
Images with an undefined (NaN) delta in any tested layer are excluded from the primary endpoint
and counted (`n_excluded`), never read as 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

import hilocli.spectrum.exact as exact
from hilocli.terminal import num

if TYPE_CHECKING:
    from hilocli.spectrum.collect import LayerSpectra

WORDS = ("supported", "contradicted", "equivalent", "inconclusive", "insufficient")
DEFAULT_ALPHA = 0.05
DEFAULT_MARGIN = 0.05  # |delta of hf fraction| below this counts as "no practical difference"


def content_metric(per_image: dict[str, np.ndarray]) -> str:
    """Key of the content-only high-frequency fraction in a branch's per-image fields."""
    return "hf_fraction_excl_grid" if "hf_fraction_excl_grid" in per_image else "hf_fraction"


@dataclass
class Verdict:
    word: str  # one of WORDS
    n: int  # images in the primary endpoint (distinct, with every delta defined)
    n_excluded: int  # images left out: an undefined delta in some tested layer
    alpha: float
    margin: float
    min_images: int  # smallest n at which the two-sided test can reach alpha
    p: float  # two-sided, primary endpoint (NaN when n = 0)
    p_equivalence: float  # max of the two one-sided TOST p-values
    estimate: float  # Hodges-Lehmann estimate of the per-image mean delta
    ci: tuple[float, float]  # exact interval of the estimate (infinite when n is too small)
    ci_level: float  # its exact coverage
    mean: float  # mean over images of the per-image mean delta (the test statistic / n)
    p_layers: list[float]  # Westfall-Young adjusted, one per layer
    p_layers_raw: list[float]
    n_layers_defined: list[int]  # images with a defined delta, per layer
    test: str
    reason: str
    ci_null: str = "exact"  # signed-rank null of the interval: "exact", or "normal" (n > 1000)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["ci"] = list(self.ci)
        return out


def verdict(
    deltas: np.ndarray,
    alpha: float = DEFAULT_ALPHA,
    margin: float = DEFAULT_MARGIN,
    seed: int = 0,
) -> Verdict:
    """Judge per-image deltas (n_images, n_layers) or (n_images,); see the module docstring."""
    d = np.asarray(deltas, dtype=np.float64)
    if d.ndim == 1:
        d = d[:, None]
    if d.ndim != 2 or d.shape[1] == 0:
        raise ValueError(f"deltas must be (n_images, n_layers), got shape {d.shape}")
    if not 0 < alpha < 1 or margin < 0:
        raise ValueError(f"need 0 < alpha < 1 and margin >= 0, got {alpha}, {margin}")
    defined = np.isfinite(d).all(axis=1)
    x = d[defined].mean(axis=1)  # (n,) the primary endpoint
    n = int(x.size)
    floor = exact.min_images(alpha)
    flips = exact.sign_flips(n, seed=seed)
    if n:
        # the test and both one-sided TOST tests in one pass over the sign patterns
        p, p_upper, p_lower = exact.signflip_ps(
            np.stack([x, x + margin, x - margin], axis=1), flips, ("two-sided", "greater", "less")
        )
        p_eq = max(p_upper, p_lower)
        hl = exact.hodges_lehmann(x, alpha)
        raw, adjusted = exact.westfall_young(d, exact.sign_flips(d.shape[0], seed=seed))
    else:
        p = p_eq = math.nan
        hl = exact.hodges_lehmann(x, alpha)
        raw = adjusted = np.full(d.shape[1], math.nan)
    mean = float(x.mean()) if n else math.nan
    if n < floor:
        word = "insufficient"
        reason = (
            f"{n} image{'s' if n != 1 else ''}: the smallest attainable two-sided p is "
            f"{2 / 2**n if n else 1:.3g} > alpha {alpha:g}; needs at least {floor} distinct images"
        )
    elif p <= alpha:
        word = "supported" if mean > 0 else "contradicted"
        reason = f"p = {p:.3g} <= alpha {alpha:g}"
    elif p_eq <= alpha:
        word = "equivalent"
        reason = f"TOST within +-{margin:g}: p = {p_eq:.3g} <= alpha {alpha:g}"
    else:
        word = "inconclusive"
        reason = f"p = {p:.3g} > alpha {alpha:g} and TOST p = {p_eq:.3g} > alpha"
    return Verdict(
        word=word,
        n=n,
        n_excluded=int(d.shape[0] - n),
        alpha=alpha,
        margin=margin,
        min_images=floor,
        p=float(p),
        p_equivalence=float(p_eq),
        estimate=hl.estimate,
        ci=(hl.low, hl.high),
        ci_level=hl.attained,
        ci_null=hl.null,
        mean=mean,
        p_layers=[float(v) for v in adjusted],
        p_layers_raw=[float(v) for v in raw],
        n_layers_defined=[int(v) for v in np.isfinite(d).sum(axis=0)],
        test=flips.describe() + " on the per-image mean over layers; per layer: Westfall-Young "
        "step-down max-T, images flipped jointly",
        reason=reason,
    )


def layer_deltas(layers: Sequence[LayerSpectra]) -> tuple[np.ndarray, list[LayerSpectra]]:
    """(n_images, n_comparable_layers) Hi-Fi minus Lo-Fi content hf fraction, and those layers."""
    comparable = [s for s in layers if s.comparable]
    if not comparable:
        return np.zeros((0, 0)), []
    cols = []
    for s in comparable:
        key = content_metric(s.hifi.per_image)
        cols.append(np.asarray(s.hifi.per_image[key], float) - s.lofi.per_image[key])
    return np.stack(cols, axis=1), comparable


def interval(v: Verdict) -> str:
    lo, hi = v.ci
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "interval unbounded at this n"
    how = "exact coverage" if v.ci_null == "exact" else "coverage, normal signed-rank null"
    return f"CI [{lo:+.3f}, {hi:+.3f}] ({how} {v.ci_level:.1%})"


def summary_line(
    v: Verdict | None,
    weights: str,
    trained: bool,
    what: str = "",
    label: str = "Hi-Fi minus Lo-Fi",
) -> str:
    """The verdict line: word, n, estimate with interval, p, and the weights."""
    claim = what or "Hi-Fi carries more high-frequency energy than Lo-Fi"
    if v is None:
        return (
            f"verdict: not comparable: none of the chosen layers has both a Hi-Fi and a Lo-Fi "
            f"branch ({weights})"
        )
    scope = (
        "" if trained else " [random weights: this concerns the architecture, not a trained model]"
    )
    excl = f", {v.n_excluded} excluded (undefined)" if v.n_excluded else ""
    return (
        f"verdict: {claim}: {v.word} (n = {v.n} images{excl}; {label} "
        f"{num(v.estimate, '+.3f')}, {interval(v)}; p = {num(v.p, '.3g')}; {v.reason}; "
        f"{weights}){scope}"
    )


@dataclass
class ControlResult:
    """The same measurement on random inits of the same architecture (`--control random`), and
    the per-image difference-in-differences: delta(model) - mean over seeds of delta(random)."""

    weights: list[Any]  # hilocli.checkpoint.Provenance per seed
    deltas: np.ndarray  # (seeds, n_images, n_layers) Hi-Fi minus Lo-Fi per random init
    verdicts: list[Verdict]  # per seed: the random init judged alone
    did: Verdict | None  # model minus mean random, tested the same way (None: no tested layer)
    did_line: str

    @property
    def seeds(self) -> list[int]:
        return [w.seed for w in self.weights]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seeds": self.seeds,
            "note": "random weights: these numbers concern the architecture, not a trained model",
            "per_seed": [
                {"weights": w.to_dict(), "verdict": None if v is None else v.to_dict()}
                for w, v in zip(self.weights, self.verdicts)
            ],
            "difference_in_differences": None if self.did is None else self.did.to_dict(),
            "verdict_line": self.did_line,
        }


def judge(layers: list[LayerSpectra], request: Any, weights: Any):
    """(tested layer indices, deltas (n, L), Verdict or None, the verdict line)."""
    deltas, tested = layer_deltas(layers)
    v = None
    if tested:
        v = verdict(deltas, request.alpha, request.margin, seed=request.seed)
    line = summary_line(v, weights.describe(), weights.trained)
    return [s.layer.index for s in tested], deltas, v, line


def judge_control(
    deltas: np.ndarray,
    twin_layers: list[list[LayerSpectra]],
    twins: list[Any],
    request: Any,
    weights: Any,
) -> ControlResult:
    """Each random init judged alone, and the difference-in-differences tested the same way."""
    per_seed = np.stack([layer_deltas(t)[0] for t in twin_layers])  # (S, n, L)
    verdicts = [
        verdict(d, request.alpha, request.margin, seed=request.seed) if d.size else None
        for d in per_seed
    ]
    did = deltas - per_seed.mean(axis=0) if deltas.size else None  # (n, L): NaN stays NaN
    did_verdict = None
    if did is not None:
        did_verdict = verdict(did, request.alpha, request.margin, seed=request.seed)
    line = summary_line(
        did_verdict,
        f"{weights.describe()} against random init seeds "
        + ", ".join(str(t.provenance.seed) for t in twins),
        True,
        what="the model's Hi-Fi minus Lo-Fi gap exceeds the random architecture's",
        label="gap minus mean random gap",
    )
    return ControlResult([t.provenance for t in twins], per_seed, verdicts, did_verdict, line)
