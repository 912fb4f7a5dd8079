"""`hilo flops --model-fn/--hub`: counted FLOPs of a user model and analytic MACs per HiLo layer."""

from __future__ import annotations

from pathlib import Path


def user_flops(
    weights,  # hilocli.weights.WeightsRequest (--model-fn / --hub, validated)
    resolution: int | None,
    height: int | None,
    width: int | None,
    device: str,
    out: Path,
    as_json: bool,
) -> None:
    from hilocli.flops_any import run_any
    from hilocli.models.geometry import check_input_size, requested_size
    from hilocli.output import OutputSet, check_out_dir, emit_json
    from hilocli.terminal import console, say

    h, w = requested_size(resolution, height, width) or (224, 224)
    check_input_size(h, w)
    check_out_dir(out)
    result = run_any(weights, h, w, device)
    con = console()
    result.render(con)
    record = result.to_record()
    with OutputSet(out, "flops") as files:
        record.files = {"record": str(files.path("flops.json"))}
        files.json("flops.json", record)
    say(con, f"wrote {out / 'flops.json'}")
    if as_json:
        emit_json(record)
