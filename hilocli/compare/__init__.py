"""The same images through several sets of weights: one table and one figure of the key measures.

Modules: `run` (`CompareRequest` -> `run(request)` -> `CompareResult`), `distance` (Hi-Fi and Lo-Fi
mean attention distance from `hilo attn-map`'s summaries), `figures` (the figure), `render` (the
files and the terminal report). The spectrum and its verdict are `hilo spectrum`'s own.
"""

from hilocli.compare.run import CompareRequest, CompareResult, run

__all__ = ["CompareRequest", "CompareResult", "run"]
