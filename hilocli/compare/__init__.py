"""The same images through several sets of weights: one table and one figure of the key measures.

Modules: `request` (`CompareRequest`: the sets of weights and each one's spectrum request),
`run` (`run(request)` -> `CompareResult`), `result` (`CompareEntry` per set of weights,
`CompareResult`, the record), `distance` (Hi-Fi and Lo-Fi mean attention distance from
`hilo attn-map`'s summaries), `figures` (the figure), `render` (the files and the terminal
report). The spectrum and its verdict are `hilo spectrum`'s own.
"""

from hilocli.compare.request import CompareRequest
from hilocli.compare.result import CompareResult
from hilocli.compare.run import run

__all__ = ["CompareRequest", "CompareResult", "run"]
