"""One image loader for every command: any PIL mode to RGB, EXIF orientation, the released
preprocessing.

Loading (`load_image`): the whole file is decoded (a truncated file is an error, never grey-filled),
EXIF orientation is applied, and every PIL mode becomes 8-bit RGB:
- alpha (RGBA, LA, PA, premultiplied RGBa/La, palette or single-colour transparency) is composited
  on a white background;
- 16-bit grey (I;16*) is scaled by 255/65535 (65535 -> 255, not clipped); 32-bit integer grey (I) is
  taken as 16-bit data (how Pillow decodes 16-bit PGM and, in older versions, 16-bit PNG) unless it
  has values outside 0..65535, when its own range is stretched to 0..255; float grey (F) is taken
  as 0..1 unless it has values outside that, when its own range is stretched (non-finite -> lowest);
- CMYK, YCbCr, LAB, HSV, 1, L, ... use Pillow's conversion. Colour profiles (ICC) are not applied.
- Multi-frame files (GIF, TIFF) give their first frame.
Images over a pixel limit (default PIL's 89,478,485; environment variable HILO_MAX_PIXELS) are
refused before decoding: a small file can claim a huge size (a decompression bomb).

Preprocessing (`prepare`), three modes:
- "crop" (default, the released evaluation): bicubic resize of the shorter side to
  int(256 / 224 * resolution), the longer side to int(new_short * long / short) (truncated, as
  torchvision's Resize), then a centre crop of resolution x resolution with offsets
  int(round((size - resolution) / 2)) (as torchvision's CenterCrop).
- "whole" (no crop): bicubic resize of the shorter side to `resolution`, the longer side to
  int(long * resolution / short) (truncated), keeping the aspect ratio and the whole image; the
  input is then not square.
- "resize": plain bicubic resize to resolution x resolution (how the 384 model was evaluated).
Then ImageNet mean/std normalisation (float32, as torchvision's ToTensor + Normalize).

Geometry convention: a position (x, y) is continuous, x to the right and y down, with the top-left
pixel covering [0, 1) x [0, 1) (its centre is (0.5, 0.5)); an image of w x h pixels spans
[0, w) x [0, h). `PreparedImage.to_input_xy` maps positions on the original image (after EXIF
rotation) to positions on the model input: x_in = x * resized_w / w - crop_left (the same for y),
which is exactly how PIL's resize maps pixel centres.
"""

from __future__ import annotations

import operator
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hilocli.errors import HiloError, UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_PIXELS = 89_478_485  # PIL's default bomb limit (~ 0.25 GiB of 24-bit RGB)
MAX_PIXELS_ENV = "HILO_MAX_PIXELS"
CROP_RATIO = 224 / 256  # released eval: shorter side to int(256 / 224 * res), then crop res
MODES = ("crop", "whole", "resize")

_PIL_GLOBALS = threading.Lock()  # load_image briefly sets PIL module globals


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
        return (self.resized_size[0] / self.original_size[0],
                self.resized_size[1] / self.original_size[1])

    @property
    def crop_offset(self) -> tuple[int, int]:
        """(left, top) of the crop, in resized pixels; (0, 0) without a crop."""
        return self.crop_box[0], self.crop_box[1]

    def to_input_xy(self, x: float, y: float) -> tuple[float, float]:
        """Original-image position -> model-input position (continuous, pixel centres at +0.5).

        ValueError if the point lies outside the original image [0, w) x [0, h), or in the part
        the centre crop removed."""
        w0, h0 = self.original_size
        if not (0 <= x < w0 and 0 <= y < h0):
            raise ValueError(f"point ({x:g}, {y:g}) lies outside the {w0}x{h0} image")
        sx, sy = self.scale
        xi, yi = x * sx - self.crop_box[0], y * sy - self.crop_box[1]
        wi, hi = self.input_size
        if not (0 <= xi < wi and 0 <= yi < hi):
            raise ValueError(f"point ({x:g}, {y:g}) of the {w0}x{h0} image is cropped away "
                             "(use --no-crop to keep the whole image)")
        return xi, yi

    def from_input_xy(self, xi: float, yi: float) -> tuple[float, float]:
        """Model-input position -> original-image position. ValueError outside the input."""
        wi, hi = self.input_size
        if not (0 <= xi < wi and 0 <= yi < hi):
            raise ValueError(f"point ({xi:g}, {yi:g}) lies outside the {wi}x{hi} model input")
        sx, sy = self.scale
        return (xi + self.crop_box[0]) / sx, (yi + self.crop_box[1]) / sy

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else "<image>"


def _stretch(arr, lo: float, hi: float):
    """Map [lo, hi] linearly onto [0, 1]."""
    return (arr - lo) / max(hi - lo, 1e-12)


def _grey_to_unit(img):
    """I;16*, I and F images -> float64 array in [0, 1] (see the module docstring)."""
    import numpy as np

    mode = img.mode
    arr = np.asarray(img, dtype=np.float64)
    if mode.startswith("I;16"):
        return arr / 65535.0
    finite = np.isfinite(arr)
    if not finite.all():  # only F can hold NaN / inf
        arr = np.where(finite, arr, arr[finite].min() if finite.any() else 0.0)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if mode == "I":
        return arr / 65535.0 if lo >= 0 and hi <= 65535 else _stretch(arr, lo, hi)
    return arr if lo >= 0 and hi <= 1 else _stretch(arr, lo, hi)  # F


def _to_rgb(img):
    """Any PIL mode -> RGB. Alpha is composited on white; 16/32-bit greys are scaled, never clipped
    (see the module docstring)."""
    import numpy as np
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        unit = _grey_to_unit(img)
        grey = Image.fromarray(np.clip(np.round(unit * 255.0), 0, 255).astype(np.uint8), "L")
        return grey.convert("RGB")
    if mode in ("P", "L", "RGB") and "transparency" in img.info:
        img = img.convert("RGBA")  # palette index or single colour marked transparent
        mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = (img.convert("LA") if mode == "La" else img).convert("RGBA")  # La: no direct path
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # P, L, 1, CMYK, YCbCr, LAB, HSV, RGBX, ...


def max_pixels_limit() -> int:
    """The pixel limit: HILO_MAX_PIXELS when set, else PIL's default."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return MAX_PIXELS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(f"{MAX_PIXELS_ENV} must be a positive number of pixels, got {text!r}")
    return value


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def load_image(path: Path, max_pixels: int | None = None):
    """Decode an image file fully and return it as RGB with EXIF orientation applied.

    Alpha is composited on white; see the module docstring for every mode. Raises HiloError with
    one line naming the file for anything that is not a whole, readable image within `max_pixels`
    (default `max_pixels_limit()`)."""
    from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

    path = Path(path)
    limit = max_pixels_limit() if max_pixels is None else int(max_pixels)
    if limit <= 0:
        raise UsageError(f"the pixel limit must be positive, got {max_pixels}")
    try:
        st = path.stat()
    except FileNotFoundError:
        raise HiloError(f"image not found: {path}") from None
    except OSError as exc:
        raise HiloError(f"{path}: cannot read ({_one_line(exc)})") from None
    if path.is_dir():
        raise HiloError(f"{path} is a directory, not an image")
    if not path.is_file():
        raise HiloError(f"{path} is not a regular file")
    if st.st_size == 0:
        raise HiloError(f"{path} is an empty file, not an image")

    with _PIL_GLOBALS:
        old_limit, old_truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        Image.MAX_IMAGE_PIXELS = limit
        ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file must fail, not be grey-filled
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PIL prints nothing on our stderr ...
                warnings.simplefilter("error", Image.DecompressionBombWarning)  # ... bombs raise
                with Image.open(path) as img:
                    w, h = img.size
                    if w * h > limit:  # before decoding anything
                        raise Image.DecompressionBombError(f"{w}x{h} = {w * h:,} pixels, ")
                    if w == 0 or h == 0:
                        raise HiloError(f"{path} has no pixels ({w}x{h})")
                    img.load()  # full decode: a truncated file fails here
                    img = ImageOps.exif_transpose(img)
                    rgb = _to_rgb(img)
        except HiloError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            size = str(exc) if str(exc).endswith(", ") else ""  # ours says the size; PIL's not
            raise HiloError(f"{path}: refusing to decode a possible decompression bomb ({size}"
                            f"over the limit of {limit:,} pixels; raise it with "
                            f"{MAX_PIXELS_ENV})") from None
        except UnidentifiedImageError:
            raise HiloError(f"{path} is not an image PIL can read") from None
        except PermissionError as exc:
            raise HiloError(f"{path}: cannot read ({_one_line(exc)})") from None
        except MemoryError:
            raise HiloError(f"{path}: out of memory while decoding") from None
        except Exception as exc:  # noqa: BLE001 - PIL plugins raise many types on bad data
            raise HiloError(f"{path} is corrupt or truncated: {_one_line(exc)}") from None
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = old_limit, old_truncated
    return rgb


def _check_resolution(resolution: int) -> None:
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


def _short_side_size(w0: int, h0: int, short: int) -> tuple[int, int]:
    """Shorter side -> `short`, longer side scaled and truncated (torchvision's Resize(int))."""
    if w0 <= h0:
        return short, max(1, int(short * h0 / w0))
    return max(1, int(short * w0 / h0)), short


def prepare(img, resolution: int, crop: bool = True, path: Path | None = None, *,
            mode: str | None = None, max_pixels: int | None = None) -> PreparedImage:
    """The released preprocessing of a PIL image (modes: see the module docstring); an image that
    is not RGB is converted as load_image does.

    crop=True: "crop" mode; crop=False: "whole" mode; `mode` overrides `crop`. HiloError when the
    resized image would exceed the pixel limit (an extreme aspect ratio)."""
    import numpy as np
    import torch
    from PIL import Image

    _check_resolution(resolution)
    mode = _mode(crop, mode)
    if img.mode != "RGB":
        img = _to_rgb(img)
    w0, h0 = img.size
    if mode == "crop":
        size = _short_side_size(w0, h0, int(256 / 224 * resolution))  # the released formula
    elif mode == "whole":
        size = _short_side_size(w0, h0, resolution)
    else:
        size = (resolution, resolution)
    limit = max_pixels_limit() if max_pixels is None else max_pixels
    if size[0] * size[1] > limit:
        name = path if path is not None else "image"
        raise HiloError(f"{name}: a {w0}x{h0} image resized to {size[0]}x{size[1]} exceeds the "
                        f"limit of {limit:,} pixels (extreme aspect ratio)")
    resized = img.resize(size, Image.BICUBIC)
    if mode == "crop":
        left = int(round((size[0] - resolution) / 2.0))
        top = int(round((size[1] - resolution) / 2.0))
        box = (left, top, left + resolution, top + resolution)
        shown = resized.crop(box)
    else:
        box = (0, 0, size[0], size[1])
        shown = resized
    arr = np.asarray(shown, dtype=np.float32) / np.float32(255.0)  # (H, W, 3)
    arr = (arr - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))  # (3, H, W)
    return PreparedImage(tensor=tensor, path=path, original_size=(w0, h0), resized_size=size,
                         crop_box=box, display=shown, mode=mode)


def load_prepared(path: Path, resolution: int, crop: bool = True, *,
                  mode: str | None = None) -> PreparedImage:
    _check_resolution(resolution)
    return prepare(load_image(path), resolution, crop, Path(path), mode=mode)


def find_images(paths: list[Path]) -> list[Path]:
    """Files as given; directories searched recursively (sorted, hidden files and folders skipped,
    symbolic links to folders not followed).

    Every file found is returned, images or not: the loader decides and reports what it skips.
    A path that does not exist is a HiloError."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found: list[Path] = []
            for root, dirs, files in os.walk(p):  # followlinks=False: no symlink loops
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                found.extend(Path(root) / f for f in files if not f.startswith("."))
            out.extend(sorted(f for f in found if f.is_file()))
        elif p.exists():
            out.append(p)
        else:
            raise HiloError(f"no such file or directory: {p}")
    return out


def load_many(paths: list[Path], resolution: int, crop: bool = True, *, mode: str | None = None
              ) -> tuple[list[PreparedImage], list[tuple[Path, str]]]:
    """Load and prepare every file; bad ones are skipped with a one-line reason (the file's
    HiloError message). A bad resolution or mode is a UsageError, raised before any file."""
    _check_resolution(resolution)
    _mode(crop, mode)
    max_pixels_limit()  # a bad HILO_MAX_PIXELS is a usage error, not a reason to skip every file
    good, skipped = [], []
    for p in paths:
        try:
            good.append(load_prepared(p, resolution, crop, mode=mode))
        except HiloError as exc:
            skipped.append((Path(p), str(exc)))
    return good, skipped
