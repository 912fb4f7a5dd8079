"""Presenting a `CompareResult`: the output files (written together) and the terminal report.

Files in `--out` (every name starts with `compare`, so `hilo spectrum`'s set beside it stays
whole): `compare.json` (the run record), `compare_per_image.csv` (every set's per-image rows,
`weights` = the set's label), `compare.png` (or pdf/svg) and, per set of weights,
`compare_spectrum_<k>.json`: the full `hilo spectrum` record of that set (k = its position,
1-based), as `hilo spectrum --json` would print it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hilocli.compare import figures
from hilocli.compare.result import CompareResult
from hilocli.output import OutputSet, RunRecord
from hilocli.spectrum.export import COLUMNS as COLUMNS_PER_IMAGE
from hilocli.spectrum.export import per_image_rows
from hilocli.spectrum.stats import interval, plural
from hilocli.terminal import human, num, say, say_inputs, table

LABEL_CHARS = 26  # the table fits 120 columns
COLUMNS = ("#", "weights", "n", "Δ", "CI", "p", "verdict", "Hi dist", "Lo dist", "MACs")
CAPTION = (
    "n: images; Δ: Hi-Fi minus Lo-Fi content hf fraction, Hodges-Lehmann estimate over source "
    "scenes of the mean over the tested layers and each scene's images, with its interval and "
    "signed-rank p (as hilo spectrum); verdict: "
    "spectrum's word; Hi/Lo dist: mean attention distance in model-input px over heads, layers "
    "and the first {k} images; MACs: analytic, one {r}x{r} image; -: undefined"
)


def file_names(result: CompareResult, fmt: str = "png") -> dict[str, str]:
    """Role -> file name of every file a run writes into --out."""
    names = {
        "record": "compare.json",
        "per_image": "compare_per_image.csv",
        "figure": f"compare.{fmt}",
    }
    for k in range(len(result.entries)):
        names[f"spectrum_{k + 1}"] = f"compare_spectrum_{k + 1}.json"
    return names


def write_outputs(result: CompareResult, out: Path, fmt: str = "png") -> RunRecord:
    """The figure, the run record and each set's spectrum record, moved into `out` together."""
    names = file_names(result, fmt)
    with OutputSet(out, "compare") as files:
        record = result.to_record({role: str(files.path(n)) for role, n in names.items()})
        files.figure(names["figure"], figures.compare_figure(result)[0], dpi=110)
        rows = (row for e in result.entries for row in per_image_rows(e.spectrum, e.label))
        files.csv(names["per_image"], COLUMNS_PER_IMAGE, rows)
        for k, e in enumerate(result.entries):
            name = names[f"spectrum_{k + 1}"]
            files.json(name, e.spectrum.to_record({"record": str(files.path(name))}))
        files.json(names["record"], record)
    return record


def _ci(e) -> str:
    v = e.verdict
    if v is None:
        return "-"
    lo, hi = v.ci
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "unbounded"
    return f"[{lo:+.3f}, {hi:+.3f}]"


def short_label(label: str, chars: int = LABEL_CHARS) -> str:
    """A label cut to `chars` in the middle of its name, the '@sha' kept (full labels are printed
    below the table)."""
    if len(label) <= chars:
        return label
    name, sep, sha = label.rpartition("@")
    tail = f"{sep}{sha}" if sep else label[-6:]
    head = name if sep else label
    return head[: max(1, chars - len(tail) - 1)] + "…" + tail


def compare_table(result: CompareResult):
    rows = []
    for k, e in enumerate(result.entries):
        rows.append(
            (
                k + 1,
                short_label(e.label),
                e.spectrum.n,
                num(e.estimate, "+.3f"),
                _ci(e),
                num(None if e.verdict is None else e.verdict.p, ".2g"),
                e.word,
                num(e.distance.mean("hifi"), ".1f"),
                num(e.distance.mean("lofi"), ".1f"),
                human(e.macs),
            )
        )
    r = result.resolution
    title = (
        f"Hi-Fi vs Lo-Fi per set of weights, n = {plural(result.scenes, 'scene')} from "
        f"{plural(result.n, 'image')} at {r}x{r}; "
        f"attention distance on the first {result.attn_n}"
    )
    caption = CAPTION.format(k=result.attn_n, r=r)
    return table(title, COLUMNS, rows, caption=caption, left=("weights", "verdict"))


def report(con: Any, result: CompareResult, record: RunRecord) -> None:
    """Skipped files, the table, each set's weights in full, the layers, where files went."""
    say_inputs(con, result.inputs)
    con.print(compare_table(result))
    for k, e in enumerate(result.entries):
        cost = "" if e.cost_reason is None else f"; MACs: {e.cost_reason}"
        say(con, f"{k + 1}. {e.label}: {e.weights.describe()}{cost}")
    say(con, result.layers_note)
    for k, e in enumerate(result.entries):
        v = e.verdict
        if v is not None:
            say(con, f"{k + 1}. {e.word}: estimate {num(v.estimate, '+.3f')}, {interval(v)}; "
                     f"{v.reason}")  # fmt: skip
        else:
            say(con, f"{k + 1}. {e.spectrum.verdict_line}")
    say(con, f"wrote {', '.join(record.files.values())}")
