"""`hilo attn-map`: per-branch, per-head attention maps over an image, and how local each head is."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from hilocli.commands._common import (
    CheckpointOpt,
    DeviceChoice,
    DeviceOpt,
    FigureFormat,
    FormatOpt,
    HeadDimOpt,
    JsonOpt,
    ModelOpt,
    NoCropOpt,
    OutOpt,
    ResolutionOpt,
    WindowOpt,
    check_resolution,
    emit_json,
    load_for_command,
    parse_int_list,
    parse_layers,
    stderr_console,
)
from hilocli.errors import HiloError, UsageError

DEFINITIONS = {
    "coordinates": "model-input pixels (the image as the model saw it, after resize/crop); "
                   "queries are also given in original-image pixels",
    "mean_distance_px": "mean over real query tokens of sum_k w_k * |centre(query token) - "
                        "centre(key)|; Lo-Fi keys are pooled s x s windows (their centre), Hi-Fi "
                        "keys the tokens of the query's window",
    "uniform_distance_px": "the same with uniform weights over the same keys (a reference: "
                           "below it a head prefers near keys)",
    "entropy_nats": "mean over real query tokens of -sum_k w_k ln w_k",
    "entropy_normalised": "entropy_nats / ln(number of keys): 1 = uniform, 0 = one key",
    "attention_received": "Lo-Fi only: mean over real query tokens of the weight each pooled "
                          "key gets (sums to 1 per head), row-major over the pooled grid",
    "queries": "only real tokens are queries (padded positions are cropped by the model); "
               "padded keys are kept, since the model attends to them",
}


def parse_query(text: str) -> tuple[float, float]:
    """'X,Y' -> (x, y) floats; UsageError otherwise."""
    parts = text.replace(" ", "").split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise UsageError(f"--query must be X,Y in image pixels, got {text!r}") from None
    return x, y


def parse_heads(text: str) -> str | list[int]:
    spec = text.strip().lower()
    if spec in ("all", "mean"):
        return spec
    heads = parse_int_list(spec, "--heads")
    if not heads:
        raise UsageError("--heads needs 'all', 'mean' or head indices")
    return sorted(set(heads))


def default_queries(prepared) -> list[tuple[float, float]]:
    """Centre and the four quadrant centres of the model input, in original-image pixels."""
    w, h = prepared.input_size
    pts = [(0.5, 0.5), (0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)]
    return [prepared.from_input_xy(fx * w, fy * h) for fx, fy in pts]


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def _table(summaries):
    from rich import box
    from rich.table import Table

    table = Table(title="attention distance (input px) and normalised entropy, per head",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  caption="dist: mean attention distance, min..max over the branch's heads; "
                  "unif: with uniform weights; ent: entropy / ln(#keys), min..max",
                  caption_justify="left")
    for col in ("layer", "module", "s", "grid", "Hi-Fi h", "Hi-Fi dist", "Hi-Fi ent",
                "Lo-Fi h", "Lo-Fi dist", "Lo-Fi unif", "Lo-Fi ent"):
        table.add_column(col, justify="right", no_wrap=True)

    def rng(a, fmt):
        return "-" if a is None else f"{format(min(a), fmt)}..{format(max(a), fmt)}"

    for s in summaries:
        g, hi, lo = s.geometry, s.hifi, s.lofi
        table.add_row(str(g.index), g.name.replace("layers.", "").replace(".blocks.", "."),
                      str(g.window_size), f"{g.grid[0]}x{g.grid[1]}",
                      str(g.h_heads), rng(None if hi is None else hi.mean_distance, ".1f"),
                      rng(None if hi is None else hi.entropy_normalised, ".2f"),
                      str(g.l_heads), rng(None if lo is None else lo.mean_distance, ".1f"),
                      "-" if lo is None else f"{lo.uniform_distance:.1f}",
                      rng(None if lo is None else lo.entropy_normalised, ".2f"))
    return table


def attn_map(
    image: Annotated[Path, typer.Argument(help="An image file.", show_default=False)],
    layer: Annotated[str, typer.Option(
        "--layer", "-l", help="HiLo layer index (see `hilo info`), comma list, or 'all'.")] = "all",
    query: Annotated[Optional[list[str]], typer.Option(
        "--query", "-q", help="Query point X,Y in original-image pixels (repeatable). Default: "
        "centre and quadrant centres of what the model sees.")] = None,
    heads: Annotated[str, typer.Option(
        "--heads", help="'all' (every head, then branch means), 'mean' (branch means only) or "
        "head indices like 0,3 (Hi-Fi heads first).")] = "all",
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    pretrained: Annotated[bool, typer.Option(
        "--pretrained/--random-init",
        help="Released weights of --model (fetched once) or a seeded random init.")] = True,
    resolution: ResolutionOpt = None,
    no_crop: NoCropOpt = False,
    device: DeviceOpt = DeviceChoice.auto,
    out: OutOpt = Path("hilo-out"),
    as_json: JsonOpt = False,
    fmt: FormatOpt = FigureFormat.png,
    save_raw: Annotated[bool, typer.Option(
        "--save-raw", help="Also write the full attention matrices of the chosen layers "
        "(attn_raw.npz).")] = False,
    max_raw_mb: Annotated[int, typer.Option(
        "--max-raw-mb", help="Memory allowed for --save-raw matrices (MiB).")] = 2048,
    chunk_size: Annotated[int, typer.Option(
        "--chunk-size", help="Query tokens per chunk in the whole-image summaries (bounds "
        "peak memory).")] = 256,
    seed: Annotated[int, typer.Option("--seed", help="Seed of any random init.")] = 0,
    window_sizes: WindowOpt = None,
    head_dim: HeadDimOpt = 32,
) -> None:
    """Attention maps of chosen query points per head (Hi-Fi inside its window, Lo-Fi over the
    pooled image) and per-head locality: mean attention distance, entropy, attention received."""
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from hilocli.attention import (
        full_matrices,
        head_columns,
        layer_geometry,
        layer_qk,
        query_map_distances,
        query_maps,
        query_to_token,
        raw_budget,
        summarise_layer,
    )
    from hilocli.capture import capture
    from hilocli.images import load_prepared
    from hilocli.io import save_figure, save_npz, write_json
    from hilocli.runtime import environment

    # -- arguments that need no model -----------------------------------------------------------
    check_resolution(resolution)
    if chunk_size < 1:
        raise UsageError(f"--chunk-size must be >= 1, got {chunk_size}")
    if max_raw_mb < 1:
        raise UsageError(f"--max-raw-mb must be >= 1, got {max_raw_mb}")
    user_queries = [parse_query(q) for q in (query or [])]
    head_spec = parse_heads(heads)
    if not Path(image).is_file():
        raise HiloError(f"{image}: no such file" if not Path(image).exists()
                        else f"{image}: not a file")
    console = stderr_console()

    loaded, dev, res = load_for_command(model, checkpoint, pretrained, window_sizes, head_dim,
                                        device, seed, resolution)
    net = loaded.model
    layers = parse_layers(layer, len(net.hilo_layers()))
    prepared = load_prepared(Path(image), res, crop=not no_crop)
    w_in, h_in = prepared.input_size
    geoms = {i: layer_geometry(net, i, prepared.input_size) for i in layers}
    try:
        columns = {i: head_columns(g, head_spec) for i, g in geoms.items()}
    except ValueError as exc:
        raise UsageError(f"--heads: {exc}") from None

    # -- queries: original pixels -> input pixels -> tokens per layer ---------------------------
    queries = []
    for x, y in user_queries or default_queries(prepared):
        try:
            xi, yi = prepared.to_input_xy(x, y)
        except ValueError as exc:
            raise UsageError(f"--query {x:g},{y:g}: {exc}") from None
        queries.append({"x": x, "y": y, "x_input": xi, "y_input": yi,
                        "source": "user" if user_queries else "default"})

    if save_raw:
        budget = raw_budget(net, layers, prepared.input_size, max_raw_mb * 2**20, res)
        if not budget.fits:
            hint = (f"--resolution {budget.fitting_resolution} would fit"
                    if budget.fitting_resolution else "no resolution fits")
            raise HiloError(f"--save-raw needs {_gib(budget.needed)} for the full attention "
                            f"matrices of {len(layers)} layer(s) at {w_in}x{h_in} (budget "
                            f"{_gib(budget.budget)}, --max-raw-mb); {hint}, or choose fewer "
                            "--layer or raise --max-raw-mb")

    # -- one forward (fused attention), then weights from queries and keys, chunk by chunk --------
    x = prepared.tensor.unsqueeze(0).to(dev)  # (1, 3, H, W)
    with torch.no_grad(), capture(net, layers, attn=False) as cap:
        net(x)
    controls = {i: cap.records[i].control for i in layers}  # (1, H, W, C) each
    summaries, maps, raw = {}, {}, {}
    hilo = net.hilo_layers()
    with Progress(TextColumn("[bold]attn-map[/] layers"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("layers", total=len(layers))
        for i in layers:
            qk = layer_qk(hilo[i][1], controls.pop(i), geoms[i])
            summaries[i] = summarise_layer(qk, chunk_size)
            tokens = [query_to_token(q["x_input"], q["y_input"], geoms[i].stage, geoms[i].grid,
                                     net.cfg.patch_size) for q in queries]
            maps[i] = query_maps(qk, tokens)
            if save_raw:
                raw[i] = full_matrices(qk, chunk_size)
            del qk
            progress.advance(task)

    # -- figures --------------------------------------------------------------------------------
    from hilocli.plotting_attention import distance_figure, layer_figure

    ext = fmt.value
    weights = loaded.provenance.describe()
    where = f"{Path(image).name} at {w_in}x{h_in}{' (no crop)' if no_crop else ''}"
    figures: dict[str, Any] = {"layers": {}}
    query_xy = [(q["x_input"], q["y_input"]) for q in queries]
    # big mosaics: fast PNG compression (zlib level 1) saves seconds per figure, same pixels
    fast = {"pil_kwargs": {"compress_level": 1}} if ext == "png" else {}
    for i in layers:
        g = geoms[i]
        labels = [f"q{k} ({q['x']:.0f}, {q['y']:.0f})\ntoken {m.token}"
                  for k, (q, m) in enumerate(zip(queries, maps[i]))]
        title = (f"{loaded.name} ({weights})\nlayer {i} = {g.name}: stage {g.stage + 1}, s = "
                 f"{g.window_size}, grid {g.grid[0]}x{g.grid[1]}, {g.h_heads} Hi-Fi + "
                 f"{g.l_heads} {'Lo-Fi' if g.window_size > 1 else 'MSA'} heads; {where}")
        fig, _ = layer_figure(prepared.display, g, columns[i], maps[i], query_xy, labels,
                              summaries[i], title)
        figures["layers"][str(i)] = str(save_figure(fig, out / f"attn_map_layer{i}.{ext}",
                                                    dpi=100, **fast))
    fig, _ = distance_figure([summaries[i] for i in layers],
                             f"mean attention distance per head: {loaded.name} ({weights}); "
                             f"{where}")
    figures["distance"] = str(save_figure(fig, out / f"attn_distance.{ext}", dpi=110))
    if save_raw:
        arrays = {}
        for i in layers:
            g = geoms[i]
            for branch, arr in raw[i].items():
                arrays[f"layer{i}_{branch}"] = arr
            arrays[f"layer{i}_grid"] = torch.tensor(g.grid).numpy()
            arrays[f"layer{i}_padded_grid"] = torch.tensor(g.padded).numpy()
        figures["raw"] = str(save_npz(out / "attn_raw.npz", **arrays))
        raw.clear()

    # -- numbers --------------------------------------------------------------------------------
    layer_results = []
    for i in layers:
        entry = summaries[i].to_dict()
        entry["queries"] = [{"query": k, "token": list(m.token),
                             "token_centre_input": list(m.centre),
                             "window_origin": None if m.window_origin is None
                             else list(m.window_origin),
                             "distance_px": query_map_distances(geoms[i], m).tolist()}
                            for k, m in enumerate(maps[i])]
        entry["columns"] = [{"label": c.label, "branch": c.branch, "heads": list(c.heads)}
                            for c in columns[i]]
        layer_results.append(entry)
    payload: dict[str, Any] = {
        "command": "attn-map",
        "model": loaded.name,
        "weights": loaded.provenance.to_dict(),
        "image": {"path": str(image), "original_size": list(prepared.original_size),
                  "input_size": [w_in, h_in], "crop": not no_crop,
                  "crop_box": list(prepared.crop_box)},
        "settings": {"layers": layers, "heads": head_spec, "resolution": res,
                     "chunk_size": chunk_size, "save_raw": save_raw, "device": str(dev),
                     "seed": seed},
        "environment": environment(dev),
        "definitions": DEFINITIONS,
        "queries": queries,
        "layers": layer_results,
        "files": figures,
    }
    json_path = write_json(out / "attn_map.json", payload)

    # -- terminal -------------------------------------------------------------------------------
    if not console.is_terminal:
        console.width = 120
    console.print(_table([summaries[i] for i in layers]))
    console.print(f"weights: {weights}", markup=False, highlight=False)
    written = list(figures["layers"].values()) + [figures["distance"]]
    if save_raw:
        written.append(figures["raw"])
    console.print(f"wrote {', '.join(written)}, {json_path}", markup=False, highlight=False)
    if as_json:
        emit_json(payload)
