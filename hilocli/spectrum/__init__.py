"""Which spatial frequencies do the Hi-Fi and Lo-Fi branches of a HiLo layer carry?

Modules (the data flow of `hilo spectrum`, in order):
- `run`: `SpectrumRequest` (`request`) -> `run(request)` -> `SpectrumResult` (`result`, with
  its run record): the one entry point; `sweep`: the one pass over the images (`shards`: the
  merge across processes).
- `collect`: decoding in chunks; `SpectrumCollector` hooks the model and feeds the branches.
- `branch`: `BranchAccumulator` -> `BranchSpectrum` (one branch of one layer over all images).
- `measures`: settings, per-image field definitions, frequency axes, radial profile;
  `analyse` (`analyse_maps`; the Hann-windowed periodogram's pieces in `estimator`), `blocks`
  (the window-block part of the high band), `depth` (Park & Kim's block-output curve), pure
  tensor functions (source scenes: `hilocli.scenes`).
- `stats`: the verdict over images (`verdict`), per-layer adjusted p, the summary line;
  `exact`: the exact sign-flip, Westfall-Young and Hodges-Lehmann machinery it uses.
- `figures`: figures from a result; `render`: the output files and the terminal report.
"""

from hilocli.spectrum.analyse import analyse_maps, white_noise_reference
from hilocli.spectrum.branch import BranchAccumulator
from hilocli.spectrum.collect import SpectrumCollector
from hilocli.spectrum.estimator import hann_window
from hilocli.spectrum.measures import (
    SpectrumSettings,
    axis_grid_marks,
    frequency_axes,
    paper_channel_range,
)
from hilocli.spectrum.request import SpectrumRequest
from hilocli.spectrum.result import SpectrumResult
from hilocli.spectrum.run import run
from hilocli.spectrum.stats import layer_deltas, summary_line, verdict

__all__ = [
    "BranchAccumulator",
    "SpectrumCollector",
    "SpectrumRequest",
    "SpectrumResult",
    "SpectrumSettings",
    "analyse_maps",
    "axis_grid_marks",
    "frequency_axes",
    "hann_window",
    "layer_deltas",
    "paper_channel_range",
    "run",
    "summary_line",
    "verdict",
    "white_noise_reference",
]
