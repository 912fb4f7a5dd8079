"""Statistics and the verdict: paired comparisons over images (Wilcoxon signed-rank, rank-biserial
effect), Holm over the layers of a run, and the per-layer and summary verdicts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hilocli.models.geometry import HiLoLayerInfo
from hilocli.spectrum.collect import LayerSpectra
from hilocli.spectrum.measures import VERDICT_METRIC, SpectrumSettings


@dataclass
class Comparison:
    """Paired comparison of per-image values a vs b (e.g. hf fraction of Hi-Fi vs Lo-Fi)."""

    a: str
    b: str
    n: int
    median_a: float
    median_b: float
    median_difference: float  # median of (a - b) over images
    mean_difference: float
    share_a_greater: float  # share of images with a > b
    test: str  # "wilcoxon signed-rank (two-sided)" or "none (1 image)"
    statistic: float | None
    p_value: float | None
    rank_biserial: float | None  # matched-pairs rank-biserial correlation, -1 .. 1
    p_adjusted: float | None = None  # Holm over the layers of this run
    direction: int = 0  # +1: a > b, -1: a < b, 0: no clear difference

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def rank_biserial(differences: np.ndarray) -> float | None:
    """Matched-pairs rank-biserial correlation (W+ - W-) / (W+ + W-); zero differences dropped."""
    from scipy.stats import rankdata

    d = np.asarray(differences, dtype=np.float64)
    d = d[d != 0]
    if d.size == 0:
        return None
    ranks = rankdata(np.abs(d))
    plus, minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((plus - minus) / (plus + minus))


def compare_paired(
    a: np.ndarray,
    b: np.ndarray,
    names: tuple[str, str] = ("a", "b"),
    level: float = 0.05,
    margin: float = 0.05,
) -> Comparison:
    """Paired comparison of a and b over images, with a direction.

    n >= 2: two-sided Wilcoxon signed-rank test (scipy; zero differences dropped), direction is the
    sign of the rank-biserial correlation when p < level, else 0. n = 1: no test; direction is the
    sign of a - b when |a - b| >= margin, else 0.
    """
    from scipy.stats import wilcoxon

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two equal-length non-empty vectors, got {a.shape} and {b.shape}")
    d = a - b
    n = int(d.size)
    common = dict(
        a=names[0],
        b=names[1],
        n=n,
        median_a=float(np.median(a)),
        median_b=float(np.median(b)),
        median_difference=float(np.median(d)),
        mean_difference=float(d.mean()),
        share_a_greater=float(np.mean(d > 0)),
    )
    if n == 1:
        direction = int(np.sign(d[0])) if abs(d[0]) >= margin else 0
        return Comparison(
            **common,
            test="none (1 image)",
            statistic=None,
            p_value=None,
            rank_biserial=rank_biserial(d),
            direction=direction,
        )
    effect = rank_biserial(d)
    if effect is None:  # every difference is zero
        stat, p = 0.0, 1.0
    else:
        res = wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        stat, p = float(res.statistic), float(res.pvalue)
    out = Comparison(
        **common,
        test="wilcoxon signed-rank (two-sided)",
        statistic=stat,
        p_value=p,
        rank_biserial=effect,
        p_adjusted=p,
    )
    out.direction = _direction(out, level)
    return out


def _direction(c: Comparison, level: float) -> int:
    p = c.p_adjusted if c.p_adjusted is not None else c.p_value
    if p is None or c.rank_biserial is None or not p < level:
        return 0
    return int(np.sign(c.rank_biserial))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


VERDICT_WORDS = {1: "supported", -1: "contradicted", 0: "inconclusive"}


@dataclass
class LayerVerdict:
    layer: HiLoLayerInfo
    comparable: bool
    reason: str  # why not comparable, or how the verdict was reached
    verdict: str  # supported | contradicted | inconclusive | not comparable
    hifi_vs_lofi: Comparison | None  # on hf_fraction_excl_grid (the verdict's number)
    hifi_vs_lofi_incl_grid: Comparison | None  # on hf_fraction (window-grid power included)
    verdict_incl_grid: str | None
    hifi_vs_control: Comparison | None  # how far each branch moved the spectrum from its input
    lofi_vs_control: Comparison | None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "layer"}
        for k, v in out.items():
            if isinstance(v, Comparison):
                out[k] = v.to_dict()
        return {"index": self.layer.index, **out}


def judge(
    layers: Sequence[LayerSpectra], settings: SpectrumSettings, metric: str = VERDICT_METRIC
) -> list[LayerVerdict]:
    """Per layer: does Hi-Fi hold more high-frequency energy than Lo-Fi?

    With several layers the paired tests' p-values are Holm-adjusted over the comparable layers
    of the run before the verdict is read from them.
    """
    a, m = settings.significance, settings.margin
    out: list[LayerVerdict] = []
    for layer in layers:
        ctrl = layer.control.per_image
        hi_ctrl = lo_ctrl = None
        if layer.hifi is not None:
            hi_ctrl = compare_paired(
                layer.hifi.per_image[metric], ctrl[metric], ("hifi", "control"), a, m
            )
        if layer.lofi is not None:
            lo_ctrl = compare_paired(
                layer.lofi.per_image[metric], ctrl[metric], ("lofi", "control"), a, m
            )
        if not layer.comparable:
            missing = "Hi-Fi" if layer.hifi is None else "Lo-Fi"
            ws = layer.layer.window_size
            why = (
                f"no {missing} branch (window size {ws}"
                f"{': plain MSA, all heads Lo-Fi' if ws == 1 else ''}); cannot compare"
            )
            out.append(
                LayerVerdict(
                    layer.layer, False, why, "not comparable", None, None, None, hi_ctrl, lo_ctrl
                )
            )
            continue
        main = compare_paired(
            layer.hifi.per_image[metric], layer.lofi.per_image[metric], ("hifi", "lofi"), a, m
        )
        incl = compare_paired(
            layer.hifi.per_image["hf_fraction"],
            layer.lofi.per_image["hf_fraction"],
            ("hifi", "lofi"),
            a,
            m,
        )
        out.append(LayerVerdict(layer.layer, True, "", "", main, incl, None, hi_ctrl, lo_ctrl))
    for attr in ("hifi_vs_lofi", "hifi_vs_lofi_incl_grid", "hifi_vs_control", "lofi_vs_control"):
        comps = [
            getattr(v, attr)
            for v in out
            if getattr(v, attr) is not None and getattr(v, attr).p_value is not None
        ]
        for c, p in zip(comps, holm([c.p_value for c in comps])):
            c.p_adjusted = p
            c.direction = _direction(c, a)
    for v in out:
        if not v.comparable:
            continue
        c = v.hifi_vs_lofi
        v.verdict = VERDICT_WORDS[c.direction]
        v.verdict_incl_grid = VERDICT_WORDS[v.hifi_vs_lofi_incl_grid.direction]
        if c.n == 1:
            v.reason = (
                f"1 image, no test: hf difference {c.median_difference:+.3f} "
                f"({'at least' if c.direction else 'below'} the margin {m:g})"
            )
        else:
            v.reason = (
                f"{c.n} images, Wilcoxon p={c.p_value:.3g}"
                f"{f' (Holm {c.p_adjusted:.3g})' if c.p_adjusted != c.p_value else ''}, "
                f"rank-biserial {c.rank_biserial or 0.0:+.2f}, "
                f"Hi-Fi > Lo-Fi in {c.share_a_greater:.0%}"
            )
    return out


def summary_line(verdicts: Sequence[LayerVerdict], trained: bool, weights: str) -> str:
    """The verdict line the terminal table ends with."""
    comp = [v for v in verdicts if v.comparable]
    if not comp:
        return (
            "verdict: not comparable: none of the chosen layers has both a Hi-Fi and a Lo-Fi "
            f"branch ({weights})"
        )
    counts = {w: sum(v.verdict == w for v in comp) for w in VERDICT_WORDS.values()}
    if counts["supported"] == len(comp):
        word = "supported"
    elif counts["contradicted"] == len(comp):
        word = "contradicted"
    elif counts["supported"] and not counts["contradicted"]:
        word = "partly supported"
    elif counts["contradicted"] and not counts["supported"]:
        word = "partly contradicted"
    elif counts["supported"] or counts["contradicted"]:
        word = "mixed"
    else:
        word = "inconclusive"
    parts = ", ".join(f"{counts[w]} {w}" for w in VERDICT_WORDS.values() if counts[w])
    scope = (
        "" if trained else " [random weights: this concerns the architecture, not a trained model]"
    )
    return (
        f"verdict: Hi-Fi carries more high-frequency energy than Lo-Fi: {word} "
        f"({parts} of {len(comp)} layers; {weights}){scope}"
    )
