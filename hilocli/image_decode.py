"""Decoding image files for hilo: any PIL mode to RGB, EXIF orientation, bomb limits.

Loading (`load_image`): the whole file is decoded (a truncated file is an error, never grey-filled),
EXIF orientation is applied, and every PIL mode becomes 8-bit RGB:
- alpha (RGBA, LA, PA, premultiplied RGBa/La, palette or single-colour transparency) is composited
  on a white background (255, 255, 255) (`ALPHA_BACKGROUND`; runs list such images under
  `inputs.transparent` and say so on stderr);
- 16-bit grey (I;16*) is scaled by 255/65535 (65535 -> 255, not clipped); 32-bit integer grey (I) is
  taken as 16-bit data (how Pillow decodes 16-bit PGM and, in older versions, 16-bit PNG) unless it
  has values outside 0..65535, when its own range is stretched to 0..255; float grey (F) is taken
  as 0..1 unless it has values outside that, when its own range is stretched (non-finite -> lowest);
- CMYK, YCbCr, LAB, HSV, 1, L, ... use Pillow's conversion. Colour profiles (ICC) are not applied.
- Multi-frame files (GIF, TIFF) give their first frame.
Images over a pixel limit (default PIL's 89,478,485; environment variable HILO_MAX_PIXELS) are
refused before decoding: a small file can claim a huge size (a decompression bomb).
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from hilocli.errors import HiloError, UsageError

ALPHA_BACKGROUND = (255, 255, 255)  # what transparent pixels are composited on: white
ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
MAX_PIXELS = 89_478_485  # PIL's default bomb limit (~ 0.25 GiB of 24-bit RGB)
MAX_PIXELS_ENV = "HILO_MAX_PIXELS"

_PIL_GLOBALS = threading.Lock()  # load_image briefly sets PIL module globals


def _stretch(arr, lo: float, hi: float):
    """Map [lo, hi] linearly onto [0, 1]."""
    return (arr - lo) / max(hi - lo, 1e-12)


def _grey_to_unit(img):
    """I;16*, I and F images -> float64 array in [0, 1] (see the module docstring)."""
    import numpy as np  # lazy: see to_rgb

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


def to_rgb(img):
    """Any PIL mode -> RGB. Alpha is composited on white; 16/32-bit greys are scaled, never clipped
    (see the module docstring)."""
    # lazy, here and in every function of this module: `import hilocli.images` (and so this
    # module) loads neither numpy nor PIL (tests/test_images.py); listing inputs needs neither
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
    if mode in ALPHA_MODES:
        rgba = (img.convert("LA") if mode == "La" else img).convert("RGBA")  # La: no direct path
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
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
    path = Path(path)
    limit = max_pixels_limit() if max_pixels is None else int(max_pixels)
    if limit <= 0:
        raise UsageError(f"the pixel limit must be positive, got {max_pixels}")
    _check_file(path)
    return _decode(path, limit)


def _check_file(path: Path) -> None:
    """HiloError unless `path` is a non-empty regular file we may read."""
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


def _decode(path: Path, limit: int):
    """The whole file decoded, EXIF-oriented and in RGB; every failure one HiloError line. PIL's
    bomb limit and truncated-file setting are ours meanwhile, restored after."""
    from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError  # lazy: see to_rgb

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
                    rgb = to_rgb(img)
        except HiloError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            size = str(exc) if str(exc).endswith(", ") else ""  # ours says the size; PIL's not
            raise HiloError(
                f"{path}: refusing to decode a possible decompression bomb ({size}"
                f"over the limit of {limit:,} pixels; raise it with "
                f"{MAX_PIXELS_ENV})"
            ) from None
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


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says, read without decoding its pixels."""

    size: tuple[int, int]  # (w, h) after EXIF orientation
    transparent: bool  # has alpha or a transparent colour: composited on ALPHA_BACKGROUND


def probe_image(path: Path) -> ImageHeader:
    """The header of a regular file (size, transparency), pixels not decoded; HiloError in the
    loader's words when PIL cannot read it as an image or it is over the pixel limit. Callers make
    sure `path` is a regular file: a FIFO or device is never opened."""
    from PIL import Image, UnidentifiedImageError  # lazy: see to_rgb

    limit = max_pixels_limit()
    with _PIL_GLOBALS:
        old_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # checked below
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(path) as img:
                    w, h = img.size
                    turned = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientation
                    alpha = img.mode in ALPHA_MODES or "transparency" in img.info
        except UnidentifiedImageError:
            raise HiloError(f"{path} is not an image PIL can read") from None
        except PermissionError as exc:
            raise HiloError(f"{path}: cannot read ({_one_line(exc)})") from None
        except Exception as exc:  # noqa: BLE001 - PIL plugins raise many types on bad data
            raise HiloError(f"{path} is corrupt or truncated: {_one_line(exc)}") from None
        finally:
            Image.MAX_IMAGE_PIXELS = old_limit
    if w * h > limit:
        raise HiloError(
            f"{path}: refusing to decode a possible decompression bomb ({w}x{h} = {w * h:,} "
            f"pixels, over the limit of {limit:,} pixels; raise it with {MAX_PIXELS_ENV})"
        )
    return ImageHeader((h, w) if turned else (w, h), alpha)
