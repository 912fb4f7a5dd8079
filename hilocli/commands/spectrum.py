"""`hilo spectrum`: which spatial frequencies the Hi-Fi and Lo-Fi branches carry, with numbers."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

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
    parse_layers,
    stderr_console,
)
from hilocli.errors import HiloError, UsageError


class SpectrumMode(str, Enum):
    stats = "stats"
    paper = "paper"


class ControlChoice(str, Enum):
    none = "none"
    random = "random"


def default_layers(model) -> list[int]:
    """Every HiLo layer that has both a Hi-Fi and a Lo-Fi branch (all of stage 3 in released
    models); the only layers where the claim can be tested."""
    return [i for i, (_, layer) in enumerate(model.hilo_layers())
            if layer.h_heads > 0 and layer.l_heads > 0]


def _batches(paths: list[Path], resolution: int, crop: bool, batch_size: int, device,
             state: dict[str, Any], progress, task) -> Iterator[Any]:
    """Decode images in chunks of batch_size; yield (B, 3, H, W) batches of equal-sized images.

    Fills state["analysed"] (paths, in the order fed to the model), state["skipped"] and
    state["display"] (first images as seen by the model, for the montage)."""
    import torch

    from hilocli.images import load_many

    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        prepared, skipped = load_many(chunk, resolution, crop)
        state["skipped"].extend(skipped)
        progress.advance(task, len(skipped))
        by_size: dict[tuple[int, ...], list] = {}
        for p in prepared:  # --no-crop: sizes differ; one forward per size
            by_size.setdefault(tuple(p.tensor.shape), []).append(p)
        for group in by_size.values():
            x = torch.stack([p.tensor for p in group]).to(device)  # (B, 3, H, W)
            state["analysed"].extend(str(p.path) for p in group)
            for p in group:
                if len(state["display"]) < 16:
                    state["display"].append(p.display)
            yield x
            progress.advance(task, len(group))


def _cell(value: float | None, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def _table(title: str, layers, verdicts):
    import numpy as np
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  caption="hf: median hf fraction (window grid excluded) of Hi-Fi, Lo-Fi and the "
                  "control (norm1 input); Δ: median paired difference Hi-Lo; Hi>Lo: share of "
                  "images; p: Wilcoxon, Holm-adjusted; grid: Hi-Fi power share at the "
                  "window-grid frequencies", caption_justify="left")
    for col in ("layer", "module", "grid", "hf Hi", "hf Lo", "hf in", "Δ", "Hi>Lo", "p",
                "grid", "verdict"):
        table.add_column(col, justify="left" if col == "verdict" else "right", no_wrap=True)
    metric = "hf_fraction_excl_grid"
    for layer, v in zip(layers, verdicts):
        med = {b: (None if layer.branch(b) is None
                   else float(np.median(layer.branch(b).per_image[metric])))
               for b in ("hifi", "lofi", "control")}
        c = v.hifi_vs_lofi
        grid_hi = (None if layer.hifi is None
                   else float(np.median(layer.hifi.per_image["grid_fraction"])))
        p = None if c is None else c.p_adjusted
        short = layer.name.replace("layers.", "").replace(".blocks.", ".")
        table.add_row(str(layer.index), short, f"{layer.grid[0]}x{layer.grid[1]}",
                      _cell(med["hifi"], ".2f"), _cell(med["lofi"], ".2f"),
                      _cell(med["control"], ".2f"),
                      _cell(None if c is None else c.median_difference, "+.2f"),
                      "-" if c is None else f"{c.share_a_greater:.0%}",
                      "-" if p is None else f"{p:.2g}", _cell(grid_hi, ".2f"), v.verdict)
    return table


def _result_layers(layers, verdicts) -> list[dict]:
    return [{"index": layer.index, "name": layer.name, "window_size": layer.window_size,
             "grid": list(layer.grid), "comparable": layer.comparable,
             "branches": {b: (None if layer.branch(b) is None else layer.branch(b).to_dict())
                          for b in ("hifi", "lofi", "control")},
             "verdict": v.to_dict()} for layer, v in zip(layers, verdicts)]


def spectrum(
    inputs: Annotated[list[Path], typer.Argument(
        help="Image files and/or folders (read recursively).", show_default=False)],
    layer: Annotated[Optional[str], typer.Option(
        "--layer", "-l", help="HiLo layer index (see `hilo info`), comma list, or 'all'. Default: "
        "every layer with both a Hi-Fi and a Lo-Fi branch.")] = None,
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    pretrained: Annotated[bool, typer.Option(
        "--pretrained/--random-init",
        help="Released weights of --model (fetched once) or a seeded random init.")] = True,
    resolution: ResolutionOpt = None,
    no_crop: NoCropOpt = False,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", "-b", help="Images per forward.")] = 16,
    device: DeviceOpt = DeviceChoice.auto,
    limit: Annotated[Optional[int], typer.Option(
        "--limit", help="Use at most this many images (after sorting).")] = None,
    out: OutOpt = Path("hilo-out"),
    as_json: JsonOpt = False,
    fmt: FormatOpt = FigureFormat.png,
    mode: Annotated[SpectrumMode, typer.Option(
        "--mode", help="stats: numbers, verdict and summary figure; paper: also the authors' "
        "8-channel log-magnitude figure.")] = SpectrumMode.stats,
    control: Annotated[ControlChoice, typer.Option(
        "--control", help="random: repeat everything on a randomly initialised model of the "
        "same architecture (what the architecture alone does).")] = ControlChoice.none,
    cutoff: Annotated[float, typer.Option(
        "--cutoff", help="High-frequency cutoff radius, cycles per token (Nyquist 0.5).")] = 0.25,
    hann: Annotated[bool, typer.Option(
        "--hann", help="Apply a Hann window before the FFT.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of any random init.")] = 0,
    window_sizes: WindowOpt = None,
    head_dim: HeadDimOpt = 32,
) -> None:
    """Measure which spatial frequencies Hi-Fi and Lo-Fi outputs carry, and test the claim that
    Hi-Fi holds more high-frequency energy than Lo-Fi (paired over images)."""
    import torch
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn)

    from hilocli.checkpoint import Provenance
    from hilocli.images import find_images
    from hilocli.io import save_figure, write_json
    from hilocli.models import create_model
    from hilocli.runtime import environment
    from hilocli.spectrum import SpectrumCollector, SpectrumSettings, judge, summary_line

    check_resolution(resolution)
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be >= 1, got {limit}")
    try:
        settings = SpectrumSettings(cutoff=cutoff, hann=hann)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    console = stderr_console()

    loaded, dev, res = load_for_command(model, checkpoint, pretrained, window_sizes, head_dim,
                                        device, seed, resolution)
    net = loaded.model
    n_layers = len(net.hilo_layers())
    if layer is None:
        layers = default_layers(net)
        if not layers:
            raise UsageError("this model has no HiLo layer with both a Hi-Fi and a Lo-Fi branch "
                             "(alpha 0 or 1, or window size 1 everywhere); pass --layer to "
                             "measure the branches it has")
    else:
        layers = parse_layers(layer, n_layers)

    paths = find_images(inputs)
    if limit is not None:
        paths = paths[:limit]
    if not paths:
        raise HiloError("no image files found in " + ", ".join(map(str, inputs)))

    random_model = random_prov = None
    if control is ControlChoice.random:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random_model = create_model(net.cfg).to(dev)
        random_prov = Provenance(source="random init", variant=loaded.provenance.variant,
                                 seed=seed)

    state: dict[str, Any] = {"analysed": [], "skipped": [], "display": []}
    main_col = SpectrumCollector(net, layers, settings)
    rand_col = SpectrumCollector(random_model, layers, settings) if random_model else None
    with Progress(TextColumn("[bold]spectrum[/]"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("images", total=len(paths))
        with main_col:
            if rand_col is not None:
                rand_col.__enter__()
            try:
                for x in _batches(paths, res, not no_crop, batch_size, dev, state, progress, task):
                    main_col.add_batch(x)
                    if rand_col is not None:
                        rand_col.add_batch(x)
            finally:
                if rand_col is not None:
                    rand_col.__exit__(None, None, None)

    skipped = [{"path": str(p), "reason": str(r)} for p, r in state["skipped"]]
    if not state["analysed"]:
        raise HiloError(f"none of the {len(paths)} files could be read as an image "
                        f"(first: {skipped[0]['path']}: {skipped[0]['reason']})")
    spectra = main_col.finish()
    verdicts = judge(spectra, settings)
    weights = loaded.provenance.describe()
    verdict = summary_line(verdicts, loaded.provenance.trained, weights)
    rand_spectra = rand_verdicts = rand_verdict = None
    if rand_col is not None:
        rand_spectra = rand_col.finish()
        rand_verdicts = judge(rand_spectra, settings)
        rand_verdict = summary_line(rand_verdicts, False, random_prov.describe())

    # -- figures --------------------------------------------------------------------------------
    from hilocli.plotting_spectrum import montage, paper_figure, spectrum_figure

    ext = fmt.value
    title = (f"{loaded.name}: {weights}\n{len(state['analysed'])} images at {res} px"
             f"{' (no crop)' if no_crop else ''}; cutoff {cutoff:g} cycles/token"
             f"{'; Hann window' if hann else ''}")
    fig, plotted = spectrum_figure(spectra, verdicts, montage(state["display"]), title,
                                   rand_spectra, cutoff)
    figures = {"stats": str(save_figure(fig, out / f"spectrum.{ext}", dpi=110))}
    if mode is SpectrumMode.paper:
        pfig, _ = paper_figure(spectra, f"{loaded.name} ({weights}): centred log|F| of 8 channels "
                                        "per branch, mean over images (the authors' figure)")
        figures["paper"] = str(save_figure(pfig, out / f"spectrum_paper.{ext}", dpi=110))

    # -- numbers --------------------------------------------------------------------------------
    payload: dict[str, Any] = {
        "command": "spectrum",
        "model": loaded.name,
        "weights": loaded.provenance.to_dict(),
        "settings": {**settings.to_dict(), "layers": layers, "resolution": res,
                     "crop": not no_crop, "batch_size": batch_size, "mode": mode.value,
                     "control": control.value, "seed": seed, "verdict_metric":
                     "hf_fraction_excl_grid", "device": str(dev)},
        "environment": environment(dev),
        "images": {"count": len(state["analysed"]), "analysed": state["analysed"],
                   "skipped_count": len(skipped), "skipped": skipped},
        "layers": _result_layers(spectra, verdicts),
        "verdict": verdict,
        "random_control": None if rand_spectra is None else {
            "weights": random_prov.to_dict(),
            "note": "random weights: these numbers concern the architecture, not a trained model",
            "layers": _result_layers(rand_spectra, rand_verdicts),
            "verdict": rand_verdict,
        },
        "figures": figures,
    }
    json_path = write_json(out / "spectrum.json", payload)

    # -- terminal -------------------------------------------------------------------------------
    if skipped:
        console.print(f"[yellow]skipped {len(skipped)} file(s):[/]")
        for s in skipped:
            console.print(f"  {s['path']}: {s['reason']}", markup=False, highlight=False)
    if not console.is_terminal:
        console.width = 110  # files and pipes: room for the table
    console.print(_table(f"hf fraction above {cutoff:g} cycles/token (window grid excluded), "
                         f"median over {len(state['analysed'])} images", spectra, verdicts))
    for v in verdicts:
        if not v.comparable:
            console.print(f"layer {v.index} ({v.name}): {v.reason}", markup=False)
    if rand_spectra is not None:
        console.print(_table(f"random init, seed {seed} (the architecture's prior)",
                             rand_spectra, rand_verdicts))
        console.print(rand_verdict, markup=False, highlight=False)
    console.print(f"wrote {', '.join(figures.values())}, {json_path}", markup=False,
                  highlight=False)
    console.print(verdict, markup=False, highlight=False)
    if as_json:
        emit_json(payload)
