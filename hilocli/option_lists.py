"""Comma-separated option values: `--window-sizes 0,0,2,1`, `--mean`, `--heads`, `--layer`.

Torch-free and without hilo dependencies beyond its errors, so the request (`hilocli.weights`),
the loaded model (`hilocli.loaded`) and the commands can all parse with it.
"""

from __future__ import annotations

from hilocli.errors import UsageError


def _parse_list(text: str | None, what: str, kind: type, noun: str) -> tuple | None:
    if text is None:
        return None
    try:
        return tuple(kind(t) for t in text.replace(" ", "").split(",") if t != "")
    except ValueError:
        raise UsageError(f"{what} must be comma-separated {noun}, got {text!r}") from None


def parse_int_list(text: str | None, what: str) -> tuple[int, ...] | None:
    """'0,0,2,1' -> (0, 0, 2, 1); None stays None; UsageError naming `what` on a bad entry."""
    return _parse_list(text, what, int, "integers")


def parse_float_list(text: str | None, what: str) -> tuple[float, ...] | None:
    """'0.5,0.5,0.5' -> (0.5, 0.5, 0.5); None stays None; UsageError naming `what`."""
    return _parse_list(text, what, float, "numbers")


def parse_layers(spec: str, num_layers: int) -> list[int]:
    """`--layer` values: 'all', an index, or a comma list; negative indices count from the end."""
    if num_layers == 0:
        raise UsageError("this model has no attention layers")
    if spec.strip().lower() == "all":
        return list(range(num_layers))
    out = []
    for idx in parse_int_list(spec, "--layer") or ():
        if not -num_layers <= idx < num_layers:
            raise UsageError(
                f"--layer {idx} is out of range: this model has {num_layers} "
                f"attention layers, indices 0..{num_layers - 1}, or -{num_layers}..-1 from the "
                "end (see `hilo info`)"
            )
        out.append(idx % num_layers)
    if not out:
        raise UsageError("--layer needs at least one index")
    return sorted(set(out))
