"""One image loader for every command: any PIL mode to RGB, EXIF orientation, released preprocessing.

Geometry convention: pixel (x, y) means the continuous position, x to the right and y down, with the
top-left pixel covering [0, 1) x [0, 1) (its centre is (0.5, 0.5)). `PreparedImage.to_input_xy` maps
positions on the original image (after EXIF rotation) to positions on the model input.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hilocli.errors import HiloError, UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_PIXELS = 89_478_485  # PIL's default bomb limit (~ 0.25 GiB of 24-bit RGB)
CROP_RATIO = 224 / 256  # released eval: resize shorter side to int(res / CROP_RATIO), crop res


@dataclass(frozen=True)
class PreparedImage:
    """An image as the model sees it, and how its pixels relate to the original."""

    tensor: Any  # torch.Tensor (3, H, W), float32, ImageNet-normalised
    path: Path | None
    original_size: tuple[int, int]  # (w, h) after EXIF orientation
    resized_size: tuple[int, int]  # (w, h) after the resize, before the crop
    crop_box: tuple[int, int, int, int]  # (left, top, right, bottom) in resized pixels
    display: Any  # PIL RGB image of exactly what the model saw (resized and cropped)

    @property
    def input_size(self) -> tuple[int, int]:
        """(w, h) of the model input."""
        return self.crop_box[2] - self.crop_box[0], self.crop_box[3] - self.crop_box[1]

    def to_input_xy(self, x: float, y: float) -> tuple[float, float]:
        """Original-image position -> model-input position. ValueError if outside the original
        image or cropped away."""
        w0, h0 = self.original_size
        if not (0 <= x < w0 and 0 <= y < h0):
            raise ValueError(f"point ({x:g}, {y:g}) lies outside the {w0}x{h0} image")
        sx, sy = self.resized_size[0] / w0, self.resized_size[1] / h0
        xi, yi = x * sx - self.crop_box[0], y * sy - self.crop_box[1]
        wi, hi = self.input_size
        if not (0 <= xi < wi and 0 <= yi < hi):
            raise ValueError(f"point ({x:g}, {y:g}) of the {w0}x{h0} image is cropped away "
                             "(use --no-crop to keep the whole image)")
        return xi, yi

    def from_input_xy(self, xi: float, yi: float) -> tuple[float, float]:
        """Model-input position -> original-image position."""
        sx = self.resized_size[0] / self.original_size[0]
        sy = self.resized_size[1] / self.original_size[1]
        return (xi + self.crop_box[0]) / sx, (yi + self.crop_box[1]) / sy

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else "<image>"


def _to_rgb(img):
    """Any PIL mode -> RGB. Alpha is composited on white; 16/32-bit greys are scaled, not clipped."""
    import numpy as np
    from PIL import Image

    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            arr = arr / 65535.0
        elif mode == "I" and arr.max(initial=0) > 255:
            arr = arr / 65535.0 if arr.max() <= 65535 else (arr - arr.min()) / max(np.ptp(arr), 1)
        elif mode == "I":
            arr = arr / 255.0
        else:  # float: assume [0, 1] when it fits, else rescale its range
            lo, hi = float(arr.min(initial=0)), float(arr.max(initial=0))
            if lo < 0 or hi > 1:
                arr = (arr - lo) / max(hi - lo, 1e-12)
        grey = Image.fromarray(np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8), "L")
        return grey.convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, RGBX, ...


def load_image(path: Path, max_pixels: int = MAX_PIXELS):
    """Decode an image file fully and return it as RGB with EXIF orientation applied."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise HiloError(f"image not found: {path}")
    if path.is_dir():
        raise HiloError(f"{path} is a directory, not an image")
    old_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > max_pixels:  # before decoding anything
                    raise Image.DecompressionBombError(f"{w}x{h}")
                img.load()  # full decode: a truncated file fails here
                img = ImageOps.exif_transpose(img)
                rgb = _to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise HiloError(f"{path}: refusing to decode a possible decompression bomb ({exc}; "
                        f"limit {max_pixels:,} pixels)") from None
    except UnidentifiedImageError:
        raise HiloError(f"{path} is not an image PIL can read") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise HiloError(f"{path} is corrupt or truncated: {str(exc).splitlines()[0]}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit
    if rgb.width == 0 or rgb.height == 0:
        raise HiloError(f"{path} has no pixels")
    return rgb


def prepare(img, resolution: int, crop: bool = True, path: Path | None = None) -> PreparedImage:
    """The released preprocessing. crop=True: bicubic resize of the shorter side to
    int(resolution * 256 / 224), centre crop resolution x resolution. crop=False: bicubic resize of
    the shorter side to `resolution`, keeping the aspect ratio and the whole image."""
    import numpy as np
    import torch
    from PIL import Image

    if resolution <= 0:
        raise UsageError(f"--resolution must be a positive number of pixels, got {resolution}")
    w0, h0 = img.size
    short = int(resolution / CROP_RATIO) if crop else resolution
    if w0 <= h0:
        size = (short, max(1, int(h0 * short / w0)))  # long side truncated, as torchvision
    else:
        size = (max(1, int(w0 * short / h0)), short)
    resized = img.resize(size, Image.BICUBIC)
    if crop:
        left = int(round((size[0] - resolution) / 2.0))
        top = int(round((size[1] - resolution) / 2.0))
        box = (left, top, left + resolution, top + resolution)
        shown = resized.crop(box)
    else:
        box = (0, 0, size[0], size[1])
        shown = resized
    arr = np.asarray(shown, dtype=np.float32) / 255.0  # (H, W, 3)
    arr = (arr - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))  # (3, H, W)
    return PreparedImage(tensor=tensor, path=path, original_size=(w0, h0), resized_size=size,
                         crop_box=box, display=shown)


def load_prepared(path: Path, resolution: int, crop: bool = True) -> PreparedImage:
    return prepare(load_image(path), resolution, crop, Path(path))


def find_images(paths: list[Path]) -> list[Path]:
    """Files as given; directories searched recursively (sorted, hidden entries skipped).

    Every file found is returned, images or not: the loader decides and reports what it skips.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file()
                              and not any(part.startswith(".") for part in f.relative_to(p).parts)))
        elif p.exists():
            out.append(p)
        else:
            raise HiloError(f"no such file or directory: {p}")
    return out


def load_many(paths: list[Path], resolution: int, crop: bool = True
              ) -> tuple[list[PreparedImage], list[tuple[Path, str]]]:
    """Load and prepare every file; bad ones are skipped with a one-line reason."""
    good, skipped = [], []
    for p in paths:
        try:
            good.append(load_prepared(p, resolution, crop))
        except HiloError as exc:
            skipped.append((Path(p), str(exc)))
    return good, skipped
