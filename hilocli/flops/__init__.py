"""`hilo flops`: parameters, MACs, FLOPs, attention memory and speed of LITv2 and HiLo.

Modules (torch-free unless marked):
- `conventions`: what each operation costs (authors / as-run / fvcore) and the per-op rules;
- `layer`: one HiLo layer, per operation (the one home of its formulas);
- `analytic`: the whole model, per component;
- `attention`: MSA, SRA, window and HiLo on one token grid; the sweep over resolutions;
- `counted` (torch): torch's FLOP counter on the meta device, checked against `analytic`;
- `bench` (torch in the child): timed cases, warm-up until settled, stability verdict, OOM;
- `figures` (matplotlib): the sweep figure; `render`: tables and files of the command;
- `run`: `FlopsRequest` -> `run(request)` -> `FlopsResult` (`.to_record()`).
"""

from hilocli.flops.run import FlopsRequest, FlopsResult, run

__all__ = ["FlopsRequest", "FlopsResult", "run"]
