"""Presenting an `AttnMapResult`: the terminal table, the progress bar, and the output files
(figures, `attn_map.json` = the run record, `attn_raw.npz`) written together as one set."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hilocli.attn_map import figures, overview
from hilocli.output import OutputSet, RunRecord
from hilocli.terminal import num, say, table

RECORD = "attn_map.json"


def summary_table(result):
    """Per layer: heads and the min..max over heads of distance and normalised entropy."""

    def rng(values, spec: str) -> str:
        return "-" if values is None else f"{num(min(values), spec)}..{num(max(values), spec)}"

    rows = []
    for lr in result.layers:
        g, hi, lo = lr.geometry, lr.summary.hifi, lr.summary.lofi
        info = g.layer
        rows.append(
            (
                info.index,
                info.short_name,
                info.window_size,
                f"{g.grid[0]}x{g.grid[1]}",
                info.hifi_heads,
                rng(None if hi is None else hi.mean_distance, ".1f"),
                rng(None if hi is None else hi.entropy_normalised, ".2f"),
                info.lofi_heads,
                rng(None if lo is None else lo.mean_distance, ".1f"),
                "-" if lo is None else num(lo.uniform_distance, ".1f"),
                rng(None if lo is None else lo.entropy_normalised, ".2f"),
            )
        )
    return table(
        "attention distance (input px) and normalised entropy, per head",
        (
            "layer",
            "module",
            "s",
            "grid",
            "Hi-Fi h",
            "Hi-Fi dist",
            "Hi-Fi ent",
            "Lo-Fi h",
            "Lo-Fi dist",
            "Lo-Fi unif",
            "Lo-Fi ent",
        ),
        rows,
        caption="dist: mean attention distance, min..max over the branch's heads; "
        "unif: with uniform weights; ent: entropy / ln(#keys), min..max; "
        "grid: rows x cols",
    )


def _where(result) -> str:
    w, h = result.image.input_size
    crop = "" if result.request.crop else " (no crop)"
    return f"{Path(result.request.image).name} at {w}x{h}{crop}"


def layer_title(result, lr) -> str:
    g, info = lr.geometry, lr.geometry.layer
    heads = (
        f"{info.hifi_heads} Hi-Fi + {info.lofi_heads} Lo-Fi heads"
        if info.window_size > 1
        else f"{info.lofi_heads} MSA heads"
    )
    return (
        f"{result.model_name} ({result.weights.describe()})\n"
        f"layer {info.index} = {info.name}: "
        f"{'stage ' + str(info.stage + 1) + ', ' if info.stage is not None else ''}"
        f"s = {info.window_size}, "
        f"grid {g.grid[0]}x{g.grid[1]} (rows x cols), {heads}; {_where(result)}"
    )


def distance_title(result) -> str:
    return f"mean attention distance per head: {overview_title(result)}"


def overview_title(result) -> str:
    return f"{result.model_name} ({result.weights.describe()}); {_where(result)}"


MOSAIC_DPI = 100  # mosaic figures: 1:1 panel pixels (a panel is 1.7 in on its longer side);
# fixed margins, so no tight bounding box (a second draw)
PLOT_DPI = 150  # the distance plot


def write_outputs(result, out: Path, fmt: str = "png", detail: bool = False) -> RunRecord:
    """The overview figure, the distance figure, with `detail` one figure per layer (every
    column of --heads), the raw matrices (when asked) and the run record, written together."""
    with OutputSet(out, "attn-map") as files:
        paths: dict[str, Path] = {"record": files.path(RECORD)}
        display, queries = result.image.display, result.queries
        fig, _ = overview.overview_figure(display, result.layers, queries, overview_title(result))
        paths["overview"] = files.figure(f"attn_map.{fmt}", fig, dpi=MOSAIC_DPI, bbox_inches=None)
        for lr in result.layers if detail else ():
            fig, _ = figures.layer_figure(display, lr, queries, layer_title(result, lr))
            i = lr.geometry.layer.index
            paths[f"layer{i}"] = files.figure(
                f"attn_map_layer{i}.{fmt}", fig, dpi=MOSAIC_DPI, bbox_inches=None
            )
        fig, _ = figures.distance_figure(
            [lr.summary for lr in result.layers], distance_title(result)
        )
        paths["distance"] = files.figure(  # fixed margins: no second draw
            f"attn_distance.{fmt}", fig, dpi=PLOT_DPI, bbox_inches=None
        )
        if result.request.save_raw:
            arrays = {}
            for lr in result.layers:
                i, g = lr.geometry.layer.index, lr.geometry
                arrays.update({f"layer{i}_{branch}": a for branch, a in lr.raw.items()})
                arrays[f"layer{i}_grid"] = np.asarray(g.grid)
                arrays[f"layer{i}_padded_grid"] = np.asarray(g.padded)
            paths["raw"] = files.npz("attn_raw.npz", **arrays)
        record = result.to_record(paths)
        files.json(RECORD, record.to_dict())
    return record


def report(con, result, record: RunRecord) -> None:
    """The table, the weights and where the files went."""
    con.print(summary_table(result))
    say(con, f"weights: {result.weights.describe()}")
    say(con, f"wrote {', '.join(record.files.values())}")
