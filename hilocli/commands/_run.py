"""The end of a command whose run writes a set of files into --out (`hilo spectrum`,
`hilo attn-map`, `hilo compare`): one run at a time in that folder, progress on stderr, the
files written together, the terminal report, the record on stdout with --json. Nothing heavy
here: the modules it needs are imported when it runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any


def run_and_write(
    command: str,
    unit: str,
    run: Callable[..., Any],
    request: Any,
    render: ModuleType,
    out: Path,
    fmt: str,
    as_json: bool,
    **write_options: Any,
) -> None:
    """`run(request, progress)` under `out`'s lock (refused before any work when another run
    holds it), then the feature's `render.write_outputs(result, out, fmt, **write_options)` and
    `render.report(con, result, record)`. `unit` names the progress bar's steps."""
    from hilocli.outfolder import output_lock
    from hilocli.output import check_out_dir, emit_json
    from hilocli.terminal import console, progress_bar

    check_out_dir(out)
    con = console()
    with output_lock(out, command):  # one run at a time in `out`, refused before any work
        with progress_bar(con, command, unit) as progress:
            result = run(request, progress)
        if result is None:  # a rank other than 0 under torchrun/srun: rank 0 reports
            return
        record = render.write_outputs(result, out, fmt, **write_options)
    render.report(con, result, record)
    if as_json:
        emit_json(record)
