"""One image loader for every command: any PIL mode to RGB, EXIF orientation, the released
preprocessing.

Loading (`load_image`, `hilocli.image_decode`): every file fully decoded, EXIF orientation
applied, any PIL mode to 8-bit RGB, decompression bombs refused before decoding.

Preprocessing (`prepare`, driven by a `Preprocess`: a variant's own is `variant.preprocess`):
resize and crop in one of three modes ("crop", the released evaluation, by default; "whole";
"resize"; their sizes in `hilocli.resize`) with the Preprocess's interpolation (bicubic for every
released model), then mean/std normalisation (ImageNet's by default; float32, as torchvision's
ToTensor + Normalize).

Geometry convention: a position (x, y) is continuous, x to the right and y down, with the top-left
pixel covering [0, 1) x [0, 1) (its centre is (0.5, 0.5)); an image of w x h pixels spans
[0, w) x [0, h). `PreparedImage.to_input_xy` maps positions on the original image (after EXIF
rotation) to positions on the model input: x_in = x * resized_w / w - crop_left (the same for y),
which is exactly how PIL's resize maps pixel centres.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from hilocli.errors import HiloError
from hilocli.image_decode import MAX_PIXELS as MAX_PIXELS  # re-exported
from hilocli.image_decode import MAX_PIXELS_ENV as MAX_PIXELS_ENV
from hilocli.image_decode import load_image as load_image
from hilocli.image_decode import max_pixels_limit as max_pixels_limit
from hilocli.image_decode import to_rgb
from hilocli.inputs import InputSet as InputSet  # re-exported: listing a run's inputs
from hilocli.inputs import collect_inputs as collect_inputs
from hilocli.inputs import find_images as find_images
from hilocli.models.config import IMAGENET_MEAN as IMAGENET_MEAN  # re-exported
from hilocli.models.config import IMAGENET_STD as IMAGENET_STD
from hilocli.models.config import Preprocess
from hilocli.resize import check_resolution, resized_size, resolve_preprocess

_PIL_FILTERS = {  # Preprocess.interpolation -> PIL filter (PIL imported lazily)
    "bicubic": lambda Image: Image.BICUBIC,
    "bilinear": lambda Image: Image.BILINEAR,
    "nearest": lambda Image: Image.NEAREST,
    "lanczos": lambda Image: Image.LANCZOS,
    "box": lambda Image: Image.BOX,
    "hamming": lambda Image: Image.HAMMING,
}


@dataclass(frozen=True)
class PreparedImage:
    """An image as the model sees it, and how its pixels relate to the original."""

    tensor: Any = field(repr=False, compare=False)  # torch.Tensor (3, H, W) float32, normalised
    path: Path | None
    original_size: tuple[int, int]  # (w, h) after EXIF orientation
    resized_size: tuple[int, int]  # (w, h) after the resize, before the crop
    crop_box: tuple[int, int, int, int]  # (left, top, right, bottom) in resized pixels
    display: Any = field(repr=False, compare=False)  # PIL RGB: exactly what the model saw
    mode: str = "crop"  # "crop", "whole" or "resize" (see the module docstring)

    @property
    def input_size(self) -> tuple[int, int]:
        """(w, h) of the model input."""
        return self.crop_box[2] - self.crop_box[0], self.crop_box[3] - self.crop_box[1]

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy): resized pixels per original pixel."""
        return (
            self.resized_size[0] / self.original_size[0],
            self.resized_size[1] / self.original_size[1],
        )

    @property
    def crop_offset(self) -> tuple[int, int]:
        """(left, top) of the crop, in resized pixels; (0, 0) without a crop."""
        return self.crop_box[0], self.crop_box[1]

    def to_input_xy(self, x: float | Fraction, y: float | Fraction) -> tuple[Fraction, Fraction]:
        """Original-image position -> model-input position (continuous, pixel centres at +0.5).

        Exact: rational arithmetic (a float is taken at its exact binary value), so a position
        never lands one token off through rounding. ValueError if the point lies outside the
        original image [0, w) x [0, h), or in the part the centre crop removed (the message names
        the region the model sees)."""
        w0, h0 = self.original_size
        xf, yf = Fraction(x), Fraction(y)
        if not (0 <= xf < w0 and 0 <= yf < h0):
            raise ValueError(
                f"point ({float(xf):g}, {float(yf):g}) lies outside the {w0}x{h0} image"
            )
        (rw, rh), (left, top) = self.resized_size, self.crop_box[:2]
        xi, yi = xf * Fraction(rw, w0) - left, yf * Fraction(rh, h0) - top
        wi, hi = self.input_size
        if not (0 <= xi < wi and 0 <= yi < hi):
            (x0, y0), (x1, y1) = self.from_input_xy(0, 0), self.from_input_xy(wi, hi, end=True)
            raise ValueError(
                f"point ({float(xf):g}, {float(yf):g}) of the {w0}x{h0} image is "
                f"cropped away: the model sees x {float(x0):.5g}..{float(x1):.5g}, "
                f"y {float(y0):.5g}..{float(y1):.5g} (use --no-crop to keep the "
                "whole image)"
            )
        return xi, yi

    def from_input_xy(
        self, xi: float | Fraction, yi: float | Fraction, end: bool = False
    ) -> tuple[Fraction, Fraction]:
        """Model-input position -> original-image position, exactly (rational). ValueError
        outside the input [0, w) x [0, h); end=True also accepts the far edges w and h."""
        wi, hi = self.input_size
        xf, yf = Fraction(xi), Fraction(yi)
        inside = (0 <= xf <= wi and 0 <= yf <= hi) if end else (0 <= xf < wi and 0 <= yf < hi)
        if not inside:
            raise ValueError(
                f"point ({float(xf):g}, {float(yf):g}) lies outside the {wi}x{hi} model input"
            )
        (w0, h0), (rw, rh) = self.original_size, self.resized_size
        left, top = self.crop_box[:2]
        return (xf + left) * Fraction(w0, rw), (yf + top) * Fraction(h0, rh)

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else "<image>"


def prepare(
    img,
    resolution: int,
    crop: bool = True,
    path: Path | None = None,
    *,
    mode: str | None = None,
    max_pixels: int | None = None,
    preprocess: Preprocess | None = None,
) -> PreparedImage:
    """The released preprocessing of a PIL image, or `preprocess` (a variant's own); an image that
    is not RGB is converted as load_image does.

    crop=True: "crop" mode (or `preprocess.mode`); crop=False: "whole" mode (`--no-crop`); `mode`
    overrides both. HiloError when the resized image would exceed the pixel limit (an extreme
    aspect ratio)."""
    # lazy: `import hilocli.images` loads neither numpy, torch nor PIL (tests/test_images.py)
    import numpy as np
    import torch
    from PIL import Image

    check_resolution(resolution)
    prep = resolve_preprocess(crop, mode, preprocess)
    mode = prep.mode
    if img.mode != "RGB":
        img = to_rgb(img)
    w0, h0 = img.size
    size = resized_size(w0, h0, resolution, mode)
    limit = max_pixels_limit() if max_pixels is None else max_pixels
    if size[0] * size[1] > limit:
        name = path if path is not None else "image"
        raise HiloError(
            f"{name}: a {w0}x{h0} image resized to {size[0]}x{size[1]} exceeds the "
            f"limit of {limit:,} pixels (extreme aspect ratio)"
        )
    resized = img.resize(size, _PIL_FILTERS[prep.interpolation](Image))
    if mode == "crop":
        left = int(round((size[0] - resolution) / 2.0))
        top = int(round((size[1] - resolution) / 2.0))
        box = (left, top, left + resolution, top + resolution)
        shown = resized.crop(box)
    else:
        box = (0, 0, size[0], size[1])
        shown = resized
    arr = np.asarray(shown, dtype=np.float32) / np.float32(255.0)  # (H, W, 3)
    arr = (arr - np.array(prep.mean, np.float32)) / np.array(prep.std, np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))  # (3, H, W)
    return PreparedImage(
        tensor=tensor,
        path=path,
        original_size=(w0, h0),
        resized_size=size,
        crop_box=box,
        display=shown,
        mode=mode,
    )


def load_prepared(
    path: Path,
    resolution: int,
    crop: bool = True,
    *,
    mode: str | None = None,
    preprocess: Preprocess | None = None,
) -> PreparedImage:
    check_resolution(resolution)
    return prepare(load_image(path), resolution, crop, Path(path), mode=mode, preprocess=preprocess)


def load_many(
    paths: list[Path],
    resolution: int,
    crop: bool = True,
    *,
    mode: str | None = None,
    preprocess: Preprocess | None = None,
) -> tuple[list[PreparedImage], list[tuple[Path, str]]]:
    """Load and prepare every file; bad ones are skipped with a one-line reason (the file's
    HiloError message). A bad resolution or mode is a UsageError, raised before any file."""
    check_resolution(resolution)
    prep = resolve_preprocess(crop, mode, preprocess)
    max_pixels_limit()  # a bad HILO_MAX_PIXELS is a usage error, not a reason to skip every file
    good, skipped = [], []
    for p in paths:
        try:
            good.append(load_prepared(p, resolution, preprocess=prep))
        except HiloError as exc:
            skipped.append((Path(p), str(exc)))
    return good, skipped
