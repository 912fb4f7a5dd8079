"""`hilo info`: what a model is, where its weights came from, and the indices `--layer` takes."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from hilocli.commands._common import (
    CheckpointOpt,
    DeviceChoice,
    DeviceOpt,
    HeadDimOpt,
    JsonOpt,
    ModelOpt,
    WindowOpt,
    check_resolution,
    emit_json,
    parse_int_list,
    stderr_console,
)


def describe_model(model, height: int, width: int) -> dict:
    """Per-stage and per-layer facts of a LITv2 at an input of height x width pixels."""
    cfg = model.cfg
    grids = model.grid_sizes(height, width)
    stages = []
    for i, stage in enumerate(model.layers):
        H, W = grids[i]
        first = stage.blocks[0] if len(stage.blocks) else None
        attn = first.attn if first is not None else None
        ws = cfg.local_ws[i]
        kind = "MLP only" if attn is None else ("MSA" if ws == 1 else "HiLo")
        stages.append({
            "stage": i + 1, "grid": [H, W], "tokens": H * W, "dim": cfg.stage_dim(i),
            "depth": cfg.depths[i], "attention": kind, "window_size": ws,
            "heads": attn.num_heads if attn else 0, "head_dim": attn.head_dim if attn else 0,
            "hifi_heads": attn.h_heads if attn else 0, "hifi_channels": attn.h_dim if attn else 0,
            "lofi_heads": attn.l_heads if attn else 0, "lofi_channels": attn.l_dim if attn else 0,
            "token_merging_after": stage.downsample is not None,
        })
    layers = []
    for idx, (name, attn) in enumerate(model.hilo_layers()):
        stage = int(name.split(".")[1])
        H, W = grids[stage]
        layers.append({
            "index": idx, "name": name, "stage": stage + 1, "grid": [H, W],
            "window_size": attn.window_size,
            "hifi_heads": attn.h_heads, "lofi_heads": attn.l_heads,
            # channel ranges of the concatenated attention output: Hi-Fi first, then Lo-Fi
            "hifi_channels": [0, attn.h_dim - 1] if attn.h_heads else None,
            "lofi_channels": [attn.h_dim, attn.dim - 1] if attn.l_heads else None,
            "both_branches": attn.h_heads > 0 and attn.l_heads > 0,
        })
    return {"stages": stages, "hilo_layers": layers}


def _list_variants(as_json: bool) -> None:
    from rich.table import Table

    from hilocli.checkpoint import release_url
    from hilocli.models import VARIANTS

    rows = [{"name": v.name, "embed_dim": v.cfg.embed_dim, "depths": list(v.cfg.depths),
             "alpha": v.cfg.alpha, "img_size": v.cfg.img_size, "top1": v.top1,
             "url": release_url(v)} for v in VARIANTS.values()]
    if as_json:
        emit_json(rows)
        return
    table = Table(title="Released LITv2 variants")
    for col in ("name", "dim", "depths", "alpha", "size", "top-1", "url"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], str(r["embed_dim"]), ",".join(map(str, r["depths"])),
                      f"{r['alpha']:g}", str(r["img_size"]), f"{r['top1']}", r["url"])
    stderr_console().print(table)


def info(
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    pretrained: Annotated[bool, typer.Option(
        "--pretrained/--random-init",
        help="Load the released weights of --model (downloaded once to the torch hub cache).")] = False,
    resolution: Annotated[Optional[int], typer.Option(
        "--resolution", "-r", help="Square input size for the per-stage table.")] = None,
    height: Annotated[Optional[int], typer.Option(help="Input height (with --width).")] = None,
    width: Annotated[Optional[int], typer.Option(help="Input width (with --height).")] = None,
    window_sizes: WindowOpt = None,
    head_dim: HeadDimOpt = 32,
    device: DeviceOpt = DeviceChoice.cpu,
    list_variants: Annotated[bool, typer.Option("--list", help="List released variants.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show a model's configuration, parameters, weights' provenance and HiLo layer indices."""
    if list_variants:
        _list_variants(as_json)
        return
    from rich.table import Table

    from hilocli.checkpoint import load_model
    from hilocli.errors import UsageError
    from hilocli.runtime import resolve_device

    check_resolution(resolution)
    for flag, value in (("--height", height), ("--width", width)):
        if value is not None and value <= 0:
            raise UsageError(f"{flag} must be a positive number of pixels, got {value}")
    if (height is None) != (width is None):
        raise UsageError("--height and --width go together")
    ws = parse_int_list(window_sizes, "--window-sizes") if window_sizes else None
    loaded = load_model(model, checkpoint, pretrained, ws, head_dim, resolve_device(device))
    net, cfg = loaded.model, loaded.model.cfg
    h = height or resolution or cfg.img_size
    w = width or resolution or cfg.img_size
    if min(h, w) < net.min_input_size():
        raise UsageError(f"input {h}x{w} is below this model's minimum of "
                         f"{net.min_input_size()} pixels per side")
    facts = describe_model(net, h, w)
    payload = {
        "model": loaded.name,
        "config": cfg.to_dict(),
        "num_params": sum(p.numel() for p in net.parameters()),
        "weights": loaded.provenance.to_dict(),
        "input": [h, w],
        **facts,
    }
    if as_json:
        emit_json(payload)
        return

    console = stderr_console()
    console.print(f"[bold]{loaded.name}[/]  {payload['num_params']:,} parameters  "
                  f"(embed {cfg.embed_dim}, depths {list(cfg.depths)}, heads {list(cfg.num_heads)}, "
                  f"alpha {cfg.alpha:g}, windows {list(cfg.local_ws)}, classes {cfg.num_classes})")
    console.print(f"weights: {loaded.provenance.describe()}")
    table = Table(title=f"Stages at {h}x{w} input")
    for col in ("stage", "grid", "dim", "depth", "attention", "window", "Hi-Fi h/ch", "Lo-Fi h/ch"):
        table.add_column(col, justify="right", no_wrap=True)
    for s in facts["stages"]:
        table.add_row(str(s["stage"]), f"{s['grid'][0]}x{s['grid'][1]}", str(s["dim"]),
                      str(s["depth"]), s["attention"], str(s["window_size"] or "-"),
                      f"{s['hifi_heads']}/{s['hifi_channels']}",
                      f"{s['lofi_heads']}/{s['lofi_channels']}")
    console.print(table)
    layers = Table(title="Attention layers (--layer takes the index)")
    for col in ("--layer", "module", "stage", "grid", "window", "Hi-Fi ch", "Lo-Fi ch"):
        layers.add_column(col, justify="right", no_wrap=True)
    for r in facts["hilo_layers"]:
        fmt = (lambda rng: f"{rng[0]}..{rng[1]}" if rng else "-")
        layers.add_row(str(r["index"]), r["name"], str(r["stage"]),
                       f"{r['grid'][0]}x{r['grid'][1]}", str(r["window_size"]),
                       fmt(r["hifi_channels"]), fmt(r["lofi_channels"]))
    console.print(layers)
