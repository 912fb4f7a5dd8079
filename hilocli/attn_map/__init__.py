"""`hilo attn-map`: per-head attention maps of HiLo layers and how local each head is.

Modules: `maps` (queries and keys of a layer, per-query maps), `summaries` (chunked distance,
entropy and attention received per head), `raw` (full matrices and their memory budget),
`heads` (which heads a figure shows), `queries` (exact pixel -> token mapping), `run` (the
request, the result and `run`), `figures` / `mosaic` (figures from results), `render` (table
and output files). Geometry lives in `hilocli.models.geometry`; every softmax in
`hilocli.hilo.core.attention_probs`.
"""

from hilocli.attn_map.run import AttnMapRequest, AttnMapResult, LayerResult, run

__all__ = ["AttnMapRequest", "AttnMapResult", "LayerResult", "run"]
