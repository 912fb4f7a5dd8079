"""The one image loader: modes, EXIF, bad files, bombs, preprocessing and pixel geometry."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hilocli.errors import HiloError, UsageError
from hilocli.images import (IMAGENET_MEAN, IMAGENET_STD, find_images, load_image, load_many,
                            load_prepared, prepare)
from tests.conftest import SAMPLES


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("mode,value,expected", [
    ("L", 100, (100, 100, 100)),
    ("I;16", 65535, (255, 255, 255)),
    ("I;16", 32768, (128, 128, 128)),  # scaled, not clipped to 255
    ("RGBA", (10, 20, 30, 0), (255, 255, 255)),  # transparent -> white background
    ("RGBA", (10, 20, 30, 255), (10, 20, 30)),
    ("LA", (50, 255), (50, 50, 50)),
    ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
])
def test_modes_become_rgb(mode, value, expected, tmp_path):
    path = _save(Image.new(mode, (5, 4), value), tmp_path / "x.png" if mode != "CMYK"
                 else tmp_path / "x.tif")
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (5, 4)
    assert img.getpixel((2, 2)) == expected


def test_palette_with_and_without_transparency(tmp_path):
    pal = Image.new("P", (3, 3), 1)
    pal.putpalette([0, 0, 0, 200, 10, 30] + [0] * 762)
    assert load_image(_save(pal, tmp_path / "p.png")).getpixel((1, 1)) == (200, 10, 30)
    pal.info["transparency"] = 1
    assert load_image(_save(pal, tmp_path / "pt.png", transparency=1)).getpixel((0, 0)) == \
        (255, 255, 255)


def test_exif_orientation_is_honoured(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 0, 0), (0, 0, 8, 8))  # a red top-left block
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = _save(img, tmp_path / "rot.jpg", exif=exif, quality=100)
    out = load_image(path)
    assert out.size == (20, 40)
    r, g, b = out.getpixel((17, 2))  # the red top-left block ends at the top-right
    assert r > 200 and g < 60 and b < 60


def test_bad_files_raise_one_line_errors(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image\n")
    good = _save(Image.effect_noise((64, 64), 50).convert("RGB"), tmp_path / "g.jpg")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for path, fragment in ((text, "not an image"), (truncated, "truncated"),
                           (tmp_path / "missing.png", "not found"), (tmp_path, "directory")):
        with pytest.raises(HiloError, match=fragment) as err:
            load_image(path)
        assert "\n" not in str(err.value)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = _save(Image.new("L", (200, 200)), tmp_path / "big.png")
    with pytest.raises(HiloError, match="decompression bomb"):
        load_image(path, max_pixels=10_000)
    assert load_image(path, max_pixels=40_000).size == (200, 200)


def test_released_preprocessing_resize_and_centre_crop():
    img = Image.new("RGB", (300, 200), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 20, 200))  # a blue strip the crop removes
    prep = prepare(img, 224, crop=True)
    assert prep.resized_size == (384, 256)  # shorter side int(224 * 256 / 224) = 256
    assert prep.crop_box == (80, 16, 304, 240) and prep.input_size == (224, 224)
    assert tuple(prep.tensor.shape) == (3, 224, 224)
    red = [(1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], -IMAGENET_MEAN[1] / IMAGENET_STD[1],
           -IMAGENET_MEAN[2] / IMAGENET_STD[2]]
    np.testing.assert_allclose(prep.tensor[:, 100, 100].numpy(), red, atol=1e-5)
    np.testing.assert_allclose(prep.tensor[:, 0, 0].numpy(), red, atol=1e-2)


def test_no_crop_keeps_the_whole_image_and_aspect():
    prep = prepare(Image.new("RGB", (300, 200)), 224, crop=False)
    assert prep.input_size == (336, 224) and prep.crop_box == (0, 0, 336, 224)
    assert tuple(prep.tensor.shape) == (3, 224, 336)
    assert prep.to_input_xy(299.9, 0) == pytest.approx((299.9 * 336 / 300, 0))


def test_geometry_round_trips_and_rejects_points_outside():
    prep = prepare(Image.new("RGB", (300, 200)), 224, crop=True)
    sx = 384 / 300
    assert prep.to_input_xy(150, 100) == pytest.approx((150 * sx - 80, 100 * 256 / 200 - 16))
    for xy in ((150, 100), (70, 20), (230.5, 180)):
        assert prep.from_input_xy(*prep.to_input_xy(*xy)) == pytest.approx(xy)
    with pytest.raises(ValueError, match="outside"):
        prep.to_input_xy(300, 10)
    with pytest.raises(ValueError, match="cropped away"):
        prep.to_input_xy(5, 100)  # in the part the centre crop removes
    with pytest.raises(UsageError):
        prepare(Image.new("RGB", (8, 8)), 0)


def test_folder_batch_skips_bad_files_and_says_why(tmp_path):
    _save(Image.new("RGB", (40, 30), (9, 9, 9)), tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    _save(Image.new("L", (30, 40), 7), tmp_path / "sub" / "b.jpg")
    (tmp_path / "readme.txt").write_text("hello")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    (tmp_path / ".hidden.png").write_bytes(b"")
    files = find_images([tmp_path])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == [
        "a.png", "broken.jpg", "readme.txt", "sub/b.jpg"]
    good, skipped = load_many(files, 32)
    assert [p.path.name for p in good] == ["a.png", "b.jpg"]
    assert {p.name for p, _ in skipped} == {"broken.jpg", "readme.txt"}
    assert all(reason for _, reason in skipped)
    with pytest.raises(HiloError, match="no such file"):
        find_images([tmp_path / "nope"])


def test_sample_photos_load():
    photos = sorted(SAMPLES.glob("*.jpg"))
    assert len(photos) >= 4
    for p in photos:
        prep = load_prepared(p, 64)
        assert tuple(prep.tensor.shape) == (3, 64, 64) and prep.display.size == (64, 64)
