"""hilocli.images: every PIL mode, EXIF, bad files, bombs, the released preprocessing and geometry.

Expected values are worked out by hand or by an independent computation (numpy / torch in
torchvision's order of operations), never copied from the loader's own output."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from hilocli.errors import HiloError, UsageError
from hilocli.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_PIXELS,
    find_images,
    load_image,
    load_many,
    load_prepared,
    prepare,
)
from hilocli.models import VARIANTS, Preprocess

SAMPLES = Path(__file__).parent.parent / "samples"
MEAN = np.array(IMAGENET_MEAN, np.float32)
STD = np.array(IMAGENET_STD, np.float32)


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def _pixel(img: Image.Image, xy=(1, 1)) -> tuple[int, int, int]:
    assert img.mode == "RGB"
    return tuple(int(v) for v in np.asarray(img)[xy[1], xy[0]])


def _pgm16(path: Path, values: list[int]) -> Path:
    """A 16-bit binary PGM (Pillow opens it in mode I), one row."""
    path.write_bytes(
        f"P5 {len(values)} 1 65535\n".encode() + np.array(values, dtype=">u2").tobytes()
    )
    return path


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims width x height pixels (a decompression-bomb shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
    return path


# ---------------------------------------------------------------- modes


def test_the_test_files_have_the_modes_they_claim(tmp_path):
    """Guards the mode tests below: each file really opens in the mode under test."""
    assert Image.open(_pgm16(tmp_path / "a.pgm", [1, 2])).mode == "I"
    assert Image.open(_save(Image.new("I;16", (2, 2)), tmp_path / "b.png")).mode == "I;16"
    f = Image.fromarray(np.zeros((2, 2), np.float32))
    assert Image.open(_save(f, tmp_path / "c.tif")).mode == "F"
    assert Image.open(_save(Image.new("1", (2, 2)), tmp_path / "d.png")).mode == "1"
    assert Image.open(_save(Image.new("CMYK", (2, 2)), tmp_path / "e.tif")).mode == "CMYK"
    assert Image.open(_save(Image.new("LA", (2, 2)), tmp_path / "f.png")).mode == "LA"


@pytest.mark.parametrize(
    "value,expected",
    [
        (65535, 255),  # full scale -> full scale (clipping would also give 255 ...)
        (257, 1),  # ... but these show it is scaled by 255/65535, not clipped
        (32896, 128),
        (1000, 4),  # round(1000 / 257) = round(3.89)
        (0, 0),
    ],
)
def test_16bit_grey_is_scaled_not_clipped(tmp_path, value, expected):
    path = _save(Image.new("I;16", (3, 3), value), tmp_path / "g16.png")
    assert _pixel(load_image(path)) == (expected,) * 3


def test_mode_I_is_read_as_16_bit(tmp_path):
    img = load_image(_pgm16(tmp_path / "g.pgm", [65535, 257, 0, 100]))
    assert np.asarray(img)[0, :, 0].tolist() == [255, 1, 0, 0]  # 100/257 rounds to 0: not 8-bit


def test_mode_I_outside_16_bit_range_is_stretched(tmp_path):
    arr = np.array([[-1000, 0, 99000]], np.int32)  # no fixed range: its own range -> 0..255
    img = load_image(_save(Image.fromarray(arr), tmp_path / "i32.tif"))
    expected = np.round((arr[0] + 1000) / 100000 * 255).astype(int)  # [0, 3, 255]
    assert np.asarray(img)[0, :, 1].tolist() == expected.tolist()


def test_float_grey_in_unit_range_and_outside(tmp_path):
    unit = np.array([[0.0, 0.5, 1.0, 0.25]], np.float32)
    img = load_image(_save(Image.fromarray(unit), tmp_path / "f.tif"))
    assert np.asarray(img)[0, :, 0].tolist() == [0, 128, 255, 64]  # round(0.5*255)=128 (127.5)
    wide = np.array([[10.0, 20.0, np.nan, 30.0]], np.float32)  # outside 0..1: stretched
    img = load_image(_save(Image.fromarray(wide), tmp_path / "w.tif"))
    assert np.asarray(img)[0, :, 2].tolist() == [0, 128, 0, 255]  # NaN -> the lowest value


def test_one_bit_grey_and_cmyk(tmp_path):
    bw = Image.new("1", (4, 2), 0)
    bw.putpixel((1, 0), 1)
    img = load_image(_save(bw, tmp_path / "bw.png"))
    assert _pixel(img, (1, 0)) == (255, 255, 255) and _pixel(img, (0, 0)) == (0, 0, 0)
    assert _pixel(load_image(_save(Image.new("L", (2, 2), 77), tmp_path / "l.png"))) == (77,) * 3
    for cmyk, rgb in (
        ((0, 128, 0, 0), (255, 127, 255)),
        ((0, 0, 0, 255), (0, 0, 0)),
        ((255, 0, 255, 0), (0, 255, 0)),
    ):
        path = _save(Image.new("CMYK", (2, 2), cmyk), tmp_path / "c.tif")
        assert _pixel(load_image(path)) == rgb


def test_alpha_is_composited_on_white(tmp_path):
    def load_rgba(value):
        return _pixel(load_image(_save(Image.new("RGBA", (3, 3), value), tmp_path / "a.png")))

    assert load_rgba((10, 20, 30, 0)) == (255, 255, 255)
    assert load_rgba((10, 20, 30, 255)) == (10, 20, 30)
    a = 128 / 255  # half transparent: c * a + 255 * (1 - a)
    expected = [c * a + 255 * (1 - a) for c in (200, 100, 0)]  # 227.4, 177.2, 127.0
    np.testing.assert_allclose(load_rgba((200, 100, 0, 128)), expected, atol=1)
    la = load_image(_save(Image.new("LA", (3, 3), (40, 0)), tmp_path / "la.png"))
    assert _pixel(la) == (255, 255, 255)
    la = load_image(_save(Image.new("LA", (3, 3), (40, 255)), tmp_path / "la.png"))
    assert _pixel(la) == (40, 40, 40)


def test_premultiplied_modes_become_white_where_transparent():
    for mode, value in (("RGBa", (0, 0, 0, 0)), ("La", (0, 0))):
        shown = prepare(Image.new(mode, (8, 8), value), 8, mode="resize").display
        assert _pixel(shown) == (255, 255, 255)


@pytest.mark.parametrize("suffix", ["png", "gif"])
def test_palette_with_and_without_transparency(tmp_path, suffix):
    pal = Image.new("P", (4, 4), 2)
    pal.putpixel((0, 0), 1)
    pal.putpalette([0, 0, 0, 200, 10, 30, 5, 250, 60] + [0] * (768 - 9))
    img = load_image(_save(pal, tmp_path / f"p.{suffix}"))
    assert _pixel(img, (0, 0)) == (200, 10, 30) and _pixel(img, (2, 2)) == (5, 250, 60)
    img = load_image(_save(pal, tmp_path / f"pt.{suffix}", transparency=2))
    assert _pixel(img, (0, 0)) == (200, 10, 30) and _pixel(img, (2, 2)) == (255, 255, 255)


def test_single_colour_transparency_of_grey_and_rgb(tmp_path):
    grey = Image.new("L", (3, 1), 10)
    grey.putpixel((1, 0), 200)
    img = load_image(_save(grey, tmp_path / "g.png", transparency=200))
    assert _pixel(img, (0, 0)) == (10, 10, 10) and _pixel(img, (1, 0)) == (255, 255, 255)
    rgb = Image.new("RGB", (3, 1), (1, 2, 3))
    rgb.putpixel((2, 0), (9, 9, 9))
    img = load_image(_save(rgb, tmp_path / "c.png", transparency=(1, 2, 3)))
    assert _pixel(img, (0, 0)) == (255, 255, 255) and _pixel(img, (2, 0)) == (9, 9, 9)


# ---------------------------------------------------------------- EXIF orientation


def _oriented(a: np.ndarray, orientation: int) -> np.ndarray:
    """What a viewer shows for EXIF orientation 1..8 (TIFF/EXIF spec), by numpy."""
    return {
        1: a,
        2: a[:, ::-1],
        3: a[::-1, ::-1],
        4: a[::-1],
        5: a.transpose(1, 0, 2),  # transpose (mirror about the main diagonal)
        6: np.rot90(a, k=-1),  # rotate 90 degrees clockwise
        7: np.rot90(a, k=2).transpose(1, 0, 2),  # transverse (anti-diagonal)
        8: np.rot90(a, k=1),  # rotate 90 degrees counter-clockwise
    }[orientation]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_honoured(tmp_path, orientation):
    rng = np.random.default_rng(orientation)
    a = rng.integers(0, 256, (3, 5, 3), dtype=np.uint8)  # 5 wide, 3 high, distinct pixels
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(Image.fromarray(a), tmp_path / "o.png", exif=exif)  # lossless: exact check
    np.testing.assert_array_equal(np.asarray(load_image(path)), _oriented(a, orientation))


def test_exif_orientation_in_a_jpeg_and_original_size_after_it(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 0, 0), (0, 0, 8, 8))  # red block at the top-left
    exif = Image.Exif()
    exif[0x0112] = 8  # 90 degrees counter-clockwise to display
    path = _save(img, tmp_path / "r.jpg", exif=exif, quality=95)
    prep = load_prepared(path, 16, crop=False)
    assert prep.original_size == (20, 40)  # (w, h) after EXIF rotation
    r, g, b = _pixel(load_image(path), (3, 36))  # the top-left block ends at the bottom-left
    assert r > 200 and g < 60 and b < 60


# ---------------------------------------------------------------- bad files


def test_missing_directory_text_empty_and_truncated_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("this is not an image\n" * 20)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 96, 3), np.uint8))
    good = _save(noise, tmp_path / "good.jpg", quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size * 6 // 10])
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    cases = [
        (tmp_path / "missing.png", "not found"),
        (tmp_path, "is a directory"),
        (text, "not an image"),
        (empty, "empty file"),
        (cut, "truncated"),
        (fake, "corrupt or truncated"),
    ]
    for path, fragment in cases:
        with pytest.raises(HiloError, match=fragment) as err:
            load_image(path)
        message = str(err.value)
        assert "\n" not in message and str(path) in message


def test_truncated_jpeg_is_refused_even_if_pil_was_told_to_accept_it(tmp_path, monkeypatch):
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), np.uint8))
    good = _save(noise, tmp_path / "good.jpg")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:-200])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # someone else's setting
    with pytest.raises(HiloError, match="truncated"):
        load_image(cut)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored
    assert load_image(good).size == (64, 64)


def test_decompression_bomb_header_is_refused_without_decoding(tmp_path, recwarn, capfd):
    bomb = _png_header_only(tmp_path / "bomb.png", 100_000, 100_000)  # 10^10 px in ~100 bytes
    assert bomb.stat().st_size < 200
    with pytest.raises(HiloError, match="decompression bomb") as err:
        load_image(bomb)
    assert "\n" not in str(err.value) and "bomb.png" in str(err.value)
    assert len(recwarn) == 0 and capfd.readouterr().err == ""  # PIL printed nothing
    assert Image.MAX_IMAGE_PIXELS == MAX_PIXELS  # PIL's global is back to its default


@pytest.mark.parametrize("limit", [10_000, 30_000])  # PIL's error (> 2x) and warning (1-2x) range
def test_pixel_limit_parameter_and_environment(tmp_path, monkeypatch, limit):
    path = _save(Image.new("L", (200, 200), 5), tmp_path / "big.png")  # 40,000 px
    with pytest.raises(HiloError, match="decompression bomb"):
        load_image(path, max_pixels=limit)
    assert load_image(path, max_pixels=40_000).size == (200, 200)
    monkeypatch.setenv("HILO_MAX_PIXELS", str(limit))
    with pytest.raises(HiloError, match="HILO_MAX_PIXELS"):
        load_image(path)
    monkeypatch.setenv("HILO_MAX_PIXELS", "lots")
    with pytest.raises(UsageError, match="HILO_MAX_PIXELS"):
        load_image(path)


def test_extreme_aspect_ratio_is_refused_by_prepare():
    strip = Image.new("RGB", (4000, 1), (1, 2, 3))  # 4,000 px, but 256 x 1,024,000 after resize
    with pytest.raises(HiloError, match="aspect ratio"):
        prepare(strip, 224)
    assert prepare(Image.new("RGB", (40, 10)), 8, crop=False).input_size == (32, 8)


# ---------------------------------------------------------------- preprocessing


def _reference_tensor(img: Image.Image, size, box) -> torch.Tensor:
    """torchvision's Resize + CenterCrop + ToTensor + Normalize, written out independently."""
    arr = np.array(img.resize(size, Image.BICUBIC).crop(box))
    t = torch.from_numpy(arr).permute(2, 0, 1).contiguous().to(torch.float32).div(255)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    return t.sub(mean[:, None, None]).div(std[:, None, None])


@pytest.mark.parametrize(
    "w,h,res,resized,box",
    [
        (300, 200, 224, (384, 256), (80, 16, 304, 240)),
        (301, 200, 224, (385, 256), (80, 16, 304, 240)),  # int(385.28); round(80.5) = 80 (even)
        (303, 200, 224, (387, 256), (82, 16, 306, 240)),  # int(387.84); round(81.5) = 82 (even)
        (200, 300, 224, (256, 384), (16, 80, 240, 304)),  # portrait
        (500, 500, 384, (438, 438), (27, 27, 411, 411)),  # int(256 / 224 * 384) = int(438.86)
    ],
)
def test_released_crop_geometry(w, h, res, resized, box):
    img = Image.fromarray(np.random.default_rng(w).integers(0, 256, (h, w, 3), np.uint8))
    prep = prepare(img, res)
    assert prep.resized_size == resized and prep.crop_box == box
    assert prep.input_size == (res, res) and tuple(prep.tensor.shape) == (3, res, res)
    assert prep.tensor.dtype == torch.float32 and prep.display.size == (res, res)
    assert torch.equal(prep.tensor, _reference_tensor(img, resized, box))


def test_normalised_values_of_a_known_colour():
    prep = prepare(Image.new("RGB", (90, 60), (128, 64, 32)), 32)
    expected = (np.array([128, 64, 32], np.float32) / 255 - MEAN) / STD  # 0.1096, -0.9216, -1.2492
    np.testing.assert_allclose(prep.tensor[:, 5, 7].numpy(), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(prep.tensor.mean(dim=(1, 2)).numpy(), expected, atol=1e-6)
    # display is exactly what the model saw, before normalisation
    shown = np.asarray(prep.display, np.float32) / 255
    np.testing.assert_allclose(
        prep.tensor.permute(1, 2, 0).numpy(), (shown - MEAN) / STD, atol=1e-6
    )


@pytest.mark.parametrize(
    "w,h,expected",
    [
        (300, 200, (336, 224)),
        (200, 300, (224, 336)),
        (301, 200, (337, 224)),
        (224, 224, (224, 224)),
    ],
)
def test_no_crop_keeps_the_whole_image_and_its_aspect(w, h, expected):
    prep = prepare(Image.new("RGB", (w, h), (9, 9, 9)), 224, crop=False)
    assert prep.mode == "whole" and prep.input_size == expected == prep.resized_size
    assert prep.crop_box == (0, 0, *expected) and prep.display.size == expected
    assert tuple(prep.tensor.shape) == (3, expected[1], expected[0])
    assert abs(expected[0] / expected[1] - w / h) < 1 / min(expected)  # aspect kept to a pixel


def test_plain_resize_mode_and_bad_arguments():
    prep = prepare(Image.new("RGB", (300, 200)), 384, mode="resize")
    assert prep.input_size == (384, 384) and prep.crop_box == (0, 0, 384, 384)
    assert prep.scale == (384 / 300, 384 / 200)
    for bad in (0, -5, 2.5, True):
        with pytest.raises(UsageError, match="resolution"):
            prepare(Image.new("RGB", (8, 8)), bad)
    with pytest.raises(UsageError, match="mode"):
        prepare(Image.new("RGB", (8, 8)), 8, mode="squash")


def test_each_variant_carries_the_preprocessing_it_was_evaluated_with():
    """litv2_b_384 was evaluated with a plain resize to 384 x 384; the others with the crop."""
    assert VARIANTS["litv2_b_384"].preprocess == Preprocess(mode="resize")
    assert {v.preprocess.mode for n, v in VARIANTS.items() if n != "litv2_b_384"} == {"crop"}
    assert all(
        v.preprocess.interpolation == "bicubic"
        and v.preprocess.mean == IMAGENET_MEAN
        and v.preprocess.std == IMAGENET_STD
        for v in VARIANTS.values()
    )
    img = Image.fromarray(np.random.default_rng(3).integers(0, 256, (200, 300, 3), np.uint8))
    prep = prepare(img, 384, preprocess=VARIANTS["litv2_b_384"].preprocess)
    assert prep.mode == "resize" and prep.input_size == (384, 384)
    assert torch.equal(prep.tensor, _reference_tensor(img, (384, 384), (0, 0, 384, 384)))
    whole = prepare(img, 384, crop=False, preprocess=VARIANTS["litv2_b_384"].preprocess)
    assert whole.mode == "whole" and whole.input_size == (576, 384)  # --no-crop still wins


def test_preprocess_interpolation_mean_and_std_are_used():
    img = Image.fromarray(np.random.default_rng(4).integers(0, 256, (30, 40, 3), np.uint8))
    pre = Preprocess(
        mode="resize", interpolation="bilinear", mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0)
    )
    prep = prepare(img, 16, preprocess=pre)
    arr = np.asarray(img.resize((16, 16), Image.BILINEAR), np.float32) / 255  # (H, W, 3)
    expected = (arr - 0.5) / np.array([0.25, 0.5, 1.0], np.float32)
    np.testing.assert_allclose(prep.tensor.permute(1, 2, 0).numpy(), expected, atol=1e-6)
    bicubic = np.asarray(img.resize((16, 16), Image.BICUBIC), np.float32) / 255
    assert np.abs(bicubic - arr).max() > 0.01  # the two filters differ: the test can tell
    with pytest.raises(ValueError, match="interpolation"):
        Preprocess(interpolation="area")


def test_load_many_takes_a_preprocess(tmp_path):
    _save(Image.new("RGB", (60, 30), (10, 200, 30)), tmp_path / "a.png")
    good, skipped = load_many([tmp_path / "a.png"], 16, preprocess=Preprocess(mode="resize"))
    assert not skipped and good[0].mode == "resize" and good[0].input_size == (16, 16)
    good, _ = load_many([tmp_path / "a.png"], 16, False, preprocess=Preprocess(mode="resize"))
    assert good[0].input_size == (32, 16)  # crop=False: the whole image
    good, _ = load_many([tmp_path / "a.png"], 16, True)  # the old positional call
    assert good[0].mode == "crop" and good[0].input_size == (16, 16)


# ---------------------------------------------------------------- geometry


def test_to_input_xy_corners_and_round_trips_with_crop():
    prep = prepare(Image.new("RGB", (300, 200)), 224)  # resize x1.28 to 384x256, crop at (80, 16)
    assert prep.scale == (1.28, 1.28) and prep.crop_offset == (80, 16)
    assert prep.to_input_xy(62.5, 12.5) == pytest.approx((0, 0))  # the input's top-left corner
    assert prep.from_input_xy(0, 0) == pytest.approx((62.5, 12.5))
    assert prep.from_input_xy(223.99, 223.99) == pytest.approx(((303.99) / 1.28, 239.99 / 1.28))
    assert prep.to_input_xy(150, 100) == pytest.approx((112, 112))  # centre -> centre
    for xy in ((62.5, 12.5), (150, 100), (70.25, 180.5), (237, 187.4)):
        assert prep.from_input_xy(*prep.to_input_xy(*xy)) == pytest.approx(xy)
    for xy in ((0, 0), (299.5, 100), (150, 199.5), (62, 100)):  # cropped away
        with pytest.raises(ValueError, match="cropped away"):
            prep.to_input_xy(*xy)
    for xy in ((-0.1, 5), (300, 5), (5, 200), (5, -1)):  # outside the 300 x 200 image
        with pytest.raises(ValueError, match="outside"):
            prep.to_input_xy(*xy)
    for xy in ((-1, 0), (224, 5), (5, 224)):
        with pytest.raises(ValueError, match="outside"):
            prep.from_input_xy(*xy)


def test_to_input_xy_corners_without_crop():
    prep = prepare(Image.new("RGB", (300, 200)), 224, crop=False)  # 336 x 224, x1.12
    assert prep.to_input_xy(0, 0) == (0, 0)
    assert prep.to_input_xy(0.5, 0.5) == pytest.approx((0.56, 0.56))  # first pixel centre
    assert prep.to_input_xy(299.5, 199.5) == pytest.approx((335.44, 223.44))  # last pixel centre
    assert prep.from_input_xy(335.44, 223.44) == pytest.approx((299.5, 199.5))


@pytest.mark.parametrize("crop", [True, False])
def test_to_input_xy_finds_a_marked_spot_in_what_the_model_saw(crop):
    """The geometry agrees with the pixels: a bright square lands where to_input_xy says."""
    img = Image.new("RGB", (320, 240), (0, 0, 0))
    img.paste((255, 255, 255), (180, 100, 196, 116))  # 16 x 16 square, centre (188, 108)
    prep = prepare(img, 64, crop=crop)
    lum = np.asarray(prep.display, np.float64).mean(axis=2)
    ys, xs = np.mgrid[0 : lum.shape[0], 0 : lum.shape[1]]
    centroid = ((xs + 0.5) * lum).sum() / lum.sum(), ((ys + 0.5) * lum).sum() / lum.sum()
    assert prep.to_input_xy(188, 108) == pytest.approx(centroid, abs=0.05)


# ---------------------------------------------------------------- folders and batches


def test_find_images_walks_folders_sorted_and_skips_hidden(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / ".cache").mkdir()
    for rel in ("z.png", "b/a.png", "a.png", ".hidden.png", ".cache/x.png", "b/c.txt"):
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "b" / "loop").symlink_to(tmp_path, target_is_directory=True)  # not followed
    found = find_images([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.png",
        "b/a.png",
        "b/c.txt",
        "z.png",
    ]
    hidden = tmp_path / ".hidden.png"
    assert find_images([hidden, tmp_path / "a.png"]) == [hidden, tmp_path / "a.png"]  # as given
    with pytest.raises(HiloError, match="no such file") as err:
        find_images([tmp_path / "a.png", tmp_path / "nope.jpg"])
    assert "nope.jpg" in str(err.value)


def test_load_many_skips_bad_files_with_reasons_and_keeps_going(tmp_path):
    _save(Image.new("RGB", (40, 30), (200, 0, 0)), tmp_path / "a.png")
    (tmp_path / "b_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    (tmp_path / "c_notes.txt").write_text("hello, not an image")
    _save(Image.new("L", (30, 40), 7), tmp_path / "d.jpg")
    good, skipped = load_many(find_images([tmp_path]), 32)
    assert [p.path.name for p in good] == ["a.png", "d.jpg"]
    assert [p.name for p, _ in skipped] == ["b_corrupt.jpg", "c_notes.txt"]
    reasons = dict((p.name, r) for p, r in skipped)
    assert "corrupt" in reasons["b_corrupt.jpg"] and "not an image" in reasons["c_notes.txt"]
    assert all("\n" not in r and name in r for name, r in reasons.items())
    assert all(tuple(p.tensor.shape) == (3, 32, 32) for p in good)
    with pytest.raises(UsageError, match="resolution"):  # not 'skip every file'
        load_many([tmp_path / "a.png"], 0)


def test_sample_photos_are_real_small_and_documented():
    photos = sorted(SAMPLES.glob("*.jpg"))
    assert [p.stem for p in photos] == ["astronaut", "chelsea", "coffee", "rocket"]
    readme = (SAMPLES / "README.md").read_text()
    for p in photos:
        assert p.stat().st_size < 300_000 and p.name in readme
        img = load_image(p)
        assert min(img.size) >= 300 and np.asarray(img).std() > 20  # a photo, not a flat fill
        prep = load_prepared(p, 64)
        assert tuple(prep.tensor.shape) == (3, 64, 64) and prep.display.size == (64, 64)
    assert "CC0" in readme and "public domain" in readme


def test_module_import_does_not_import_torch():
    code = (
        "import sys, hilocli.images; "
        "print(sorted(m for m in ('torch', 'numpy', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
