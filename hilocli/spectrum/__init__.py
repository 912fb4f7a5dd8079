"""Which spatial frequencies do the Hi-Fi and Lo-Fi branches of a HiLo layer carry?

Modules (the data flow of `hilo spectrum`, in order):
- `run`: `SpectrumRequest` -> `run(request)` -> `SpectrumResult` (the one entry point).
- `collect`: decoding in chunks; `SpectrumCollector` hooks the model and feeds the branches.
- `branch`: `BranchAccumulator` -> `BranchSpectrum` (one branch of one layer over all images).
- `measures`: settings, per-image field definitions, frequency axes, radial profile;
  `analyse` (`analyse_maps`), `boundary` (Moisan / Hann), `grid` (window-grid separation),
  `depth` (Park & Kim's block-output curve), pure tensor functions.
- `stats`: the verdict over images (`verdict`), per-layer adjusted p, the summary line;
  `exact`: the exact sign-flip, Westfall-Young and Hodges-Lehmann machinery it uses.
- `figures`: figures from a result; `render`: the output files and the terminal report.
"""

from hilocli.spectrum.analyse import CUTOFFS, analyse_maps, white_noise_reference
from hilocli.spectrum.boundary import periodic_smooth
from hilocli.spectrum.branch import BranchAccumulator, BranchSpectrum
from hilocli.spectrum.collect import LayerSpectra, SpectrumCollector
from hilocli.spectrum.depth import DepthCurve
from hilocli.spectrum.grid import grid_spectrum
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
    paper_channel_range,
    radial_profile,
)
from hilocli.spectrum.run import ControlResult, SpectrumRequest, SpectrumResult, run
from hilocli.spectrum.stats import Verdict, layer_deltas, summary_line, verdict

__all__ = [
    "BRANCHES",
    "BRANCH_LABELS",
    "EPS",
    "PER_IMAGE_FIELDS",
    "VERDICT_METRIC",
    "BranchAccumulator",
    "BranchSpectrum",
    "ControlResult",
    "FrequencyAxes",
    "LayerSpectra",
    "SpectrumCollector",
    "SpectrumRequest",
    "SpectrumResult",
    "SpectrumSettings",
    "axis_grid_marks",
    "fft_maps",
    "frequency_axes",
    "hann_window",
    "analyse_maps",
    "white_noise_reference",
    "periodic_smooth",
    "grid_spectrum",
    "DepthCurve",
    "CUTOFFS",
    "paper_channel_range",
    "radial_profile",
    "run",
    "summary_line",
    "Verdict",
    "layer_deltas",
    "verdict",
]
