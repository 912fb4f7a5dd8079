"""`hilo flops`: parameters, MACs, FLOPs, attention memory and speed of LITv2 and HiLo.

Modules (torch-free unless marked):
- `conventions`: what each operation costs (authors / as-run / fvcore) and the per-op rules;
- `layer`: one HiLo layer, per operation (the one home of its formulas);
- `analytic`: the whole model, per component;
- `attention`: MSA, SRA, window and HiLo on one token grid; the sweep over resolutions;
- `counted` (torch): torch's FLOP counter on the meta device, checked against `analytic`;
- `cases`, `bench`: the timed cases, their results, warm-up until settled, stability verdict;
- `runner` (torch): runs the cases, each CPU case in a fresh process; OOM recorded;
- `kernels` (torch on call): the attention kernel that ran, forcing one, the matmul peak;
- `figures` (matplotlib): the sweep figure; `render`: tables and files of the command;
- `request`: `FlopsRequest`, validated; `run`: `run(request)` -> `FlopsResult` (`.to_record()`).
"""

from hilocli.flops.request import FlopsRequest
from hilocli.flops.run import FlopsResult, run

__all__ = ["FlopsRequest", "FlopsResult", "run"]
