"""Presenting a `SpectrumResult`: the output files (written together) and the terminal report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hilocli.output import OutputSet, RunRecord
from hilocli.spectrum import export
from hilocli.spectrum.collect import LayerSpectra
from hilocli.spectrum.measures import BRANCHES, VERDICT_METRIC
from hilocli.spectrum.result import SpectrumResult
from hilocli.spectrum.stats import plural
from hilocli.terminal import num, say, say_inputs, table

CAPTION = (
    "share Hi/Lo/in: median share of each branch's power above the cutoff, window blocks taken "
    "out (in: the control, the layer's norm1 input); power Hi/Lo: median absolute high-band "
    "power, summed over channels (activation^2 per token); Hi%: Hi-Fi's share of the layer's "
    "power; block: Hi-Fi's high-band share explained by window blocks; Δ: median per-scene "
    "share difference; p: signed-rank, raw and Westfall-Young adjusted over the tested layers"
)
COLUMNS = (
    "layer",
    "module",
    "grid",
    "share Hi",
    "share Lo",
    "share in",
    "power Hi",
    "power Lo",
    "Hi%",
    "block",
    "Δ",
    "p raw",
    "p adj",
)


def file_names(result: SpectrumResult, fmt: str = "png") -> dict[str, str]:
    """Role -> file name of every file a run writes into --out."""
    names = {
        "record": "spectrum.json",
        "per_image": export.FILE_NAME,
        "summary_figure": f"spectrum_summary.{fmt}",
        "figure": f"spectrum.{fmt}",
        "radial_figure": f"spectrum_radial.{fmt}",
        "maps_figure": f"spectrum_maps.{fmt}",
    }
    if result.depth is not None:
        names["depth_figure"] = f"spectrum_depth.{fmt}"
    if result.request.mode == "paper":
        names["paper_figure"] = f"spectrum_paper.{fmt}"
    if result.settings.transfer:
        names["transfer_figure"] = f"transfer.{fmt}"
    return names


DPI = 150  # every figure; sized in inches for a paper column or page
FIXED_MARGINS = {"summary_figure", "figure", "radial_figure", "maps_figure"}  # no second draw


def write_outputs(result: SpectrumResult, out: Path, fmt: str = "png") -> RunRecord:
    """Figures and the run record, moved into `out` together (nothing written on a failure)."""
    from hilocli.spectrum import figures, maps, summary  # lazy: matplotlib, for figures only

    names = file_names(result, fmt)
    drawn = {
        "summary_figure": summary.summary_figure,
        "figure": figures.hf_figure,
        "radial_figure": figures.radial_figure,
        "maps_figure": maps.maps_figure,
        "depth_figure": summary.depth_figure,
        "paper_figure": figures.paper_figure,
        "transfer_figure": figures.transfer_figure,
    }
    with OutputSet(out, "spectrum") as files:
        record = result.to_record({role: str(files.path(n)) for role, n in names.items()})
        for role, draw in drawn.items():
            if role in names:
                tight = None if role in FIXED_MARGINS else "tight"
                files.figure(names[role], draw(result)[0], dpi=DPI, bbox_inches=tight)
        files.csv(names["per_image"], export.COLUMNS, export.per_image_rows(result))
        files.json(names["record"], record)
    return record


def _median(spectra: LayerSpectra, branch: str, field: str | None = None) -> float | None:
    spec = spectra.branch(branch)
    if spec is None:
        return None
    values = spec.per_image[field or VERDICT_METRIC]
    return None if not np.isfinite(values).any() else float(np.nanmedian(values))


def _column(values: np.ndarray, k: int, fn) -> float | None:
    col = values[:, k]
    col = col[np.isfinite(col)]
    return None if col.size == 0 else float(fn(col))


def layer_table(result: SpectrumResult):
    v, rows = result.verdict, []
    for spectra in result.layers:
        k = result.tested.index(spectra.layer.index) if spectra.layer.index in result.tested else -1
        med = {b: _median(spectra, b) for b in BRANCHES}
        row = [
            spectra.layer.index,
            spectra.layer.short_name,
            f"{spectra.grid[0]}x{spectra.grid[1]}",
            num(med["hifi"], ".2f"),
            num(med["lofi"], ".2f"),
            num(med["control"], ".2f"),
            num(_median(spectra, "hifi", "high_power"), ".3g"),
            num(_median(spectra, "lofi", "high_power"), ".3g"),
            num(100 * spectra.hifi_power_share, ".0f") + "%",
            num(_median(spectra, "hifi", "block_share"), ".2f"),
        ]
        if k < 0 or v is None:
            row += ["-"] * 3
        else:
            row += [
                num(_column(result.judged.scene_deltas, k, np.median), "+.3f"),
                num(v.p_layers_raw[k], ".2g"),
                num(v.p_layers[k], ".2g"),
            ]
        rows.append(tuple(row))
    enough = "" if v is None or v.n >= v.min_images else f" (fewer than the {v.min_images} needed)"
    title = (
        f"share of power above {result.request.cutoff:g} cycles/token, "
        f"{plural(result.scenes.n_groups, 'scene')} from {plural(result.n, 'image')}{enough}"
    )
    return table(title, COLUMNS, rows, caption=CAPTION)


RATIO_CAPTION = (
    "medians over images of band power ratios, low band 0 < r <= cutoff, high r > cutoff; "
    "residual: the branch's output / the residual stream entering the block; matched: the "
    "branch's output / the same branch with identity attention (< 1: its attention removes "
    "power in that band)"
)


def ratio_table(result: SpectrumResult):
    """Per layer and branch the medians of residual_ratio_* and matched_ratio_* (--matched)."""
    fields = [f"{k}_ratio_{band}" for k in ("residual", "matched") for band in ("low", "high")]
    rows = []
    for spectra in result.layers:
        for b in ("hifi", "lofi"):
            if spectra.branch(b) is None:
                continue
            values = [num(_median(spectra, b, f), ".3g") for f in fields]
            rows.append((spectra.layer.index, spectra.layer.short_name, b, *values))
    columns = ("layer", "module", "branch", "resid. low", "resid. high", "match low", "match high")
    return table(
        f"band power ratios, cutoff {result.request.cutoff:g} cycles/token, n = {result.n}",
        columns,
        rows,
        caption=RATIO_CAPTION,
        left=("branch",),
    )


def report(con: Any, result: SpectrumResult, record: RunRecord) -> None:
    """Skipped files, the tables, where the files went; the verdict line comes last."""
    say_inputs(con, result.inputs)
    con.print(layer_table(result))
    if result.settings.matched:
        con.print(ratio_table(result))
    for s in result.layers:
        if not s.comparable:
            say(con, f"{s.not_comparable} ({s.layer.name}); not tested")
    scenes, blank = result.scenes, int(result.blank.sum())
    say(
        con,
        f"{plural(scenes.n_groups, 'source scene')} from {plural(scenes.n_images, 'image')} "
        f"({scenes.source})",
    )
    if blank:
        say(con, f"{blank} image(s) without spatial content (flat): excluded from the verdict")
    if result.verdict is not None:
        say(con, f"test: {result.verdict.test}")
    if result.control is not None:
        say(con, result.control.line)
    say(con, f"wrote {', '.join(record.files.values())}")
    say(con, result.verdict_line)
