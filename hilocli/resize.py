"""The preprocessing's geometry: which mode a call asks for, and the size each mode gives an image,
known from its header before any pixel is decoded (`hilocli.inputs` sets aside the images a model
cannot take; `hilocli.images.prepare` resizes and crops).

Three modes (`Preprocess.mode`; a variant's own is `variant.preprocess`):
- "crop" (default, the released evaluation): bicubic resize of the shorter side to
  int(256 / 224 * resolution), the longer side to int(new_short * long / short) (truncated, as
  torchvision's Resize), then a centre crop of resolution x resolution with offsets
  int(round((size - resolution) / 2)) (as torchvision's CenterCrop).
- "whole" (no crop): bicubic resize of the shorter side to `resolution`, the longer side to
  int(long * resolution / short) (truncated), keeping the aspect ratio and the whole image; the
  input is then not square.
- "resize": plain bicubic resize to resolution x resolution (how the 384 model was evaluated).
"""

from __future__ import annotations

import operator

from hilocli.errors import UsageError
from hilocli.models.config import PREPROCESS_MODES, Preprocess

MODES = PREPROCESS_MODES


def check_resolution(resolution: int) -> None:
    """UsageError unless `resolution` is a positive whole number of pixels."""
    try:
        ok = not isinstance(resolution, bool) and operator.index(resolution) > 0
    except TypeError:
        ok = False
    if not ok:
        raise UsageError(f"--resolution must be a positive number of pixels, got {resolution}")


def _mode(crop: bool, mode: str | None) -> str:
    if mode is None:
        return "crop" if crop else "whole"
    if mode not in MODES:
        raise UsageError(f"preprocessing mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def resolve_preprocess(
    crop: bool = True, mode: str | None = None, preprocess: Preprocess | None = None
) -> Preprocess:
    """The Preprocess a call asks for: `preprocess` (default: the released crop) with crop=False
    (`--no-crop`) keeping the whole image, and an explicit `mode` overriding both."""
    base = preprocess if preprocess is not None else Preprocess(mode=_mode(crop, None))
    if mode is not None:
        return Preprocess(_mode(crop, mode), base.interpolation, base.mean, base.std)
    return base.with_crop(crop)


def _short_side_size(w0: int, h0: int, short: int) -> tuple[int, int]:
    """Shorter side -> `short`, longer side scaled and truncated (torchvision's Resize(int))."""
    if w0 <= h0:
        return short, max(1, int(short * h0 / w0))
    return max(1, int(short * w0 / h0)), short


def resized_size(w0: int, h0: int, resolution: int, mode: str) -> tuple[int, int]:
    """(w, h) of a w0 x h0 image after a mode's resize, before any crop."""
    if mode == "crop":
        return _short_side_size(w0, h0, int(256 / 224 * resolution))  # the released formula
    if mode == "whole":
        return _short_side_size(w0, h0, resolution)
    return resolution, resolution


def model_input_size(w0: int, h0: int, resolution: int, mode: str) -> tuple[int, int]:
    """(w, h) of the model input a w0 x h0 image gives: known from its header, before decoding."""
    return resized_size(w0, h0, resolution, mode) if mode == "whole" else (resolution, resolution)
