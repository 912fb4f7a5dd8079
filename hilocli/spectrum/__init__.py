"""Which spatial frequencies do the Hi-Fi and Lo-Fi branches of a HiLo layer carry?

Modules (the data flow of `hilo spectrum`, in order):
- `run`: `SpectrumRequest` -> `run(request)` -> `SpectrumResult` (the one entry point).
- `collect`: decoding in chunks; `SpectrumCollector` hooks the model and feeds the branches.
- `branch`: `BranchAccumulator` -> `BranchSpectrum` (one branch of one layer over all images).
- `measures`: frequency axes, FFT, per-image summaries, radial profile (pure tensor functions).
- `stats`: paired comparisons, Holm, per-layer verdicts and the summary line.
- `figures`: figures from a result; `render`: the output files and the terminal report.
"""

from hilocli.spectrum.branch import BranchAccumulator, BranchSpectrum
from hilocli.spectrum.collect import LayerSpectra, SpectrumCollector
from hilocli.spectrum.measures import (
    BRANCH_LABELS,
    BRANCHES,
    EPS,
    PER_IMAGE_FIELDS,
    VERDICT_METRIC,
    FrequencyAxes,
    SpectrumSettings,
    axis_grid_marks,
    fft_maps,
    frequency_axes,
    hann_window,
    image_summaries,
    paper_channel_range,
    radial_profile,
)
from hilocli.spectrum.run import ControlResult, SpectrumRequest, SpectrumResult, run
from hilocli.spectrum.stats import (
    Comparison,
    LayerVerdict,
    compare_paired,
    holm,
    judge,
    rank_biserial,
    summary_line,
)

__all__ = [
    "BRANCHES",
    "BRANCH_LABELS",
    "EPS",
    "PER_IMAGE_FIELDS",
    "VERDICT_METRIC",
    "BranchAccumulator",
    "BranchSpectrum",
    "Comparison",
    "ControlResult",
    "FrequencyAxes",
    "LayerSpectra",
    "LayerVerdict",
    "SpectrumCollector",
    "SpectrumRequest",
    "SpectrumResult",
    "SpectrumSettings",
    "axis_grid_marks",
    "compare_paired",
    "fft_maps",
    "frequency_axes",
    "hann_window",
    "holm",
    "image_summaries",
    "judge",
    "paper_channel_range",
    "radial_profile",
    "rank_biserial",
    "run",
    "summary_line",
]
