"""Presenting a `SpectrumResult`: the output files (written together) and the terminal report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hilocli.output import OutputSet, RunRecord
from hilocli.spectrum.collect import LayerSpectra
from hilocli.spectrum.measures import BRANCHES, VERDICT_METRIC
from hilocli.spectrum.run import SpectrumResult
from hilocli.spectrum.stats import LayerVerdict
from hilocli.terminal import num, say, table

CAPTION = (
    "hf: median hf fraction (window grid excluded) of Hi-Fi, Lo-Fi and the control "
    "(norm1 input); Δ: median paired difference Hi-Lo; Hi>Lo: share of images; p: "
    "Wilcoxon, Holm-adjusted; grid: Hi-Fi power share at the window-grid frequencies"
)
COLUMNS = (
    "layer",
    "module",
    "grid",
    "hf Hi",
    "hf Lo",
    "hf in",
    "Δ",
    "Hi>Lo",
    "p",
    "grid",
    "verdict",
)


def file_names(result: SpectrumResult, fmt: str = "png") -> dict[str, str]:
    """Role -> file name of every file a run writes into --out."""
    names = {"record": "spectrum.json", "figure": f"spectrum.{fmt}"}
    if result.request.mode == "paper":
        names["paper_figure"] = f"spectrum_paper.{fmt}"
    return names


def write_outputs(result: SpectrumResult, out: Path, fmt: str = "png") -> RunRecord:
    """Figures and the run record, moved into `out` together (nothing written on a failure)."""
    from hilocli.spectrum import figures

    names = file_names(result, fmt)
    with OutputSet(out) as files:
        record = result.to_record({role: str(files.path(n)) for role, n in names.items()})
        files.figure(names["figure"], figures.spectrum_figure(result)[0], dpi=110)
        if "paper_figure" in names:
            files.figure(names["paper_figure"], figures.paper_figure(result)[0], dpi=110)
        files.json(names["record"], record)
    return record


def _median(spectra: LayerSpectra, branch: str, field: str = VERDICT_METRIC) -> float | None:
    spec = spectra.branch(branch)
    return None if spec is None else float(np.median(spec.per_image[field]))


def layer_table(title: str, layers: list[LayerSpectra], verdicts: list[LayerVerdict]):
    from hilocli.spectrum.figures import short_name

    rows = []
    for spectra, v in zip(layers, verdicts):
        med = {b: _median(spectra, b) for b in BRANCHES}
        c = v.hifi_vs_lofi
        rows.append(
            (
                spectra.layer.index,
                short_name(spectra.layer),
                f"{spectra.grid[0]}x{spectra.grid[1]}",
                num(med["hifi"], ".2f"),
                num(med["lofi"], ".2f"),
                num(med["control"], ".2f"),
                num(None if c is None else c.median_difference, "+.2f"),
                "-" if c is None else f"{c.share_a_greater:.0%}",
                num(None if c is None else c.p_adjusted, ".2g"),
                num(_median(spectra, "hifi", "grid_fraction"), ".2f"),
                v.verdict,
            )
        )
    return table(title, COLUMNS, rows, caption=CAPTION, left=("verdict",))


def report(con: Any, result: SpectrumResult, record: RunRecord) -> None:
    """Skipped files, the tables, where the files went; the verdict line comes last."""
    inputs = result.inputs
    if inputs.skipped:
        con.print(f"[yellow]skipped {len(inputs.skipped)} file(s):[/]")
        for s in inputs.skipped:  # the loader's reasons name the file already
            named = s["path"] in s["reason"]
            say(con, f"  {s['reason'] if named else s['path'] + ': ' + s['reason']}")
    if inputs.duplicates:
        con.print(f"[yellow]counted once: {len(inputs.duplicates)} duplicate file(s):[/]")
        for d in inputs.duplicates:
            say(con, f"  {d['path']} = {d['same_as']}")
    n = len(inputs.analysed)
    con.print(
        layer_table(
            f"hf fraction above {result.request.cutoff:g} cycles/token (window "
            f"grid excluded), median over {n} images",
            result.layers,
            result.verdicts,
        )
    )
    for v in result.verdicts:
        if not v.comparable:
            say(con, f"layer {v.layer.index} ({v.layer.name}): {v.reason}")
    if result.control is not None:
        con.print(
            layer_table(
                f"random init, seed {result.request.seed} (the architecture's prior)",
                result.control.layers,
                result.control.verdicts,
            )
        )
        say(con, result.control.verdict)
    say(con, f"wrote {', '.join(record.files.values())}")
    say(con, result.verdict)
