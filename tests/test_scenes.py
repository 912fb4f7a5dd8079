"""Source scenes: near-duplicates of one photo are one group, distinct scenes never merge.

Variants are made with PIL from the sample photos and go through the real input path
(`hilocli.images.prepare`, 224 px, the released centre crop), as `hilo spectrum` feeds them.

The margin of HASH_THRESHOLD (10 of 63 bits), measured on these cases and asserted below so that
it cannot shrink unnoticed: a variant lies at most MAX_WITHIN = 6 bits from its photo (80 variants
of 4 photos; two variants of one photo differ by up to 10, and join through the photo), distinct
scenes at least MIN_BETWEEN = 16 bits apart (26 scenes: 4 photos, their 16 quarters, 6 textures).
Every hash has 31 bits set, so distances between photos are even.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from hilocli.errors import HiloError, UsageError
from hilocli.image_decode import to_rgb
from hilocli.images import load_image, prepare
from hilocli.scenes import (
    HASH_THRESHOLD,
    SceneGroups,
    group_means,
    group_scenes,
    hamming,
    popcount,
    read_groups,
    scene_hashes,
    scenes_from_file,
    scenes_from_hashes,
)

SAMPLES = Path(__file__).parent.parent / "samples"
PHOTOS = sorted(SAMPLES.glob("*.jpg"))
MAX_WITHIN = 6  # measured: the largest distance of a variant from its photo (20 variants each)
MIN_BETWEEN = 16  # measured: the smallest distance between two of the 26 distinct scenes


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    """Encoded and decoded in memory; decoded to RGB as `load_image` does (no EXIF to apply)."""
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as decoded:
        decoded.load()
        return to_rgb(decoded)


def _resize(img: Image.Image, f: float) -> Image.Image:
    return img.resize((round(img.width * f), round(img.height * f)), Image.LANCZOS)


def _shift(img: Image.Image, dx: int, dy: int) -> Image.Image:
    """Content moved by (dx, dy) >= 0 pixels, the uncovered border filled with the edge pixels."""
    a = np.asarray(img)
    a = np.pad(a, ((dy, 0), (dx, 0), (0, 0)), mode="edge")[: img.height, : img.width]
    return Image.fromarray(a)


def _brighten(img: Image.Image, f: float) -> Image.Image:
    return ImageEnhance.Brightness(img).enhance(f)


VARIANTS = {  # the near-duplicates of the issue
    "resized 0.7x": lambda im: _resize(im, 0.7),
    "resized 1.5x": lambda im: _resize(im, 1.5),
    "JPEG 90": lambda im: _jpeg(im, 90),
    "JPEG 70": lambda im: _jpeg(im, 70),
    "mirrored": ImageOps.mirror,
    "cropped 3 px": lambda im: im.crop((3, 0, im.width, im.height)),
    "shifted 5 px": lambda im: _shift(im, 5, 0),
    "brightened 15%": lambda im: _brighten(im, 1.15),
}

MORE_VARIANTS = [  # 12 more, for 20 variants of one photo
    lambda im: _resize(im, 0.5),
    lambda im: _resize(im, 0.85),
    lambda im: _resize(im, 1.2),
    lambda im: _jpeg(im, 50),
    lambda im: _jpeg(im, 80),
    lambda im: _brighten(im, 0.85),
    lambda im: _brighten(im, 1.08),
    lambda im: im.crop((0, 3, im.width, im.height - 2)),
    lambda im: im.crop((0, 0, im.width - 4, im.height)),
    lambda im: _shift(im, 0, 5),
    lambda im: _jpeg(ImageOps.mirror(im), 85),
    lambda im: _brighten(_resize(im, 0.8), 1.1),
]


ALL_VARIANTS = [*VARIANTS.values(), *MORE_VARIANTS]


def _photo(path: Path) -> Image.Image:
    return load_image(path)


def _texture(seed: int, size: int = 256) -> Image.Image:
    """A natural-like image: colour noise with a 1/f amplitude spectrum (seeded)."""
    rng = np.random.default_rng(seed)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij"))
    f[0, 0] = 1.0
    spectrum = rng.normal(size=(3, size, size)) + 1j * rng.normal(size=(3, size, size))
    field = np.fft.ifft2(spectrum / f, axes=(-2, -1)).real  # (3, size, size)
    field = (field - field.min()) / (field.max() - field.min())
    return Image.fromarray((field.transpose(1, 2, 0) * 255).astype(np.uint8))


def _quadrants(img: Image.Image) -> list[Image.Image]:
    """The four non-overlapping quarters of an image, each a scene of its own."""
    w, h = img.width // 2, img.height // 2
    return [img.crop((x, y, x + w, y + h)) for y in (0, h) for x in (0, w)]


def _distinct_scenes() -> list[Image.Image]:
    """4 photos, their 16 quarters and 6 textures: 26 scenes, none a near-duplicate of another
    (the quarters share no pixels; a quarter is a quarter of its photo's frame, not a crop of a
    few pixels)."""
    photos = [_photo(p) for p in PHOTOS]
    quarters = [q for im in photos for q in _quadrants(im)]
    return photos + quarters + [_texture(seed) for seed in range(6)]


def _hashes(images: list[Image.Image]) -> np.ndarray:
    x = torch.stack([prepare(im, 224).tensor for im in images])  # (B, 3, 224, 224)
    return scene_hashes(x)


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The grouping's pair distance: min over image-image and image-mirror, both ways."""
    d = np.minimum(hamming(a[:, None, 0], b[None, :, 0]), hamming(a[:, None, 0], b[None, :, 1]))
    return np.minimum(d, hamming(a[:, None, 1], b[None, :, 0]))


@pytest.fixture(scope="module")
def variant_hashes() -> dict[str, np.ndarray]:
    """Photo name -> (21, 2) hashes: the photo, then its 20 variants."""
    out = {}
    for p in PHOTOS:
        im = _photo(p)
        out[p.name] = _hashes([im] + [make(im) for make in ALL_VARIANTS])
    return out


@pytest.fixture(scope="module")
def distinct_hashes() -> np.ndarray:
    return _hashes(_distinct_scenes())


# ----------------------------------------------------------------------------------------------
# The hash
# ----------------------------------------------------------------------------------------------


def _reference_hash(x: torch.Tensor) -> int:
    """pHash of one (3, 224, 224) ImageNet-normalised input, written out from the definitions:
    BT.601 luma, 7 x 7 block means, the orthonormal DCT-II as an explicit cosine matrix."""
    mean = np.array([0.485, 0.456, 0.406])[:, None, None]
    std = np.array([0.229, 0.224, 0.225])[:, None, None]
    rgb = x.double().numpy() * std + mean  # (3, 224, 224)
    luma = np.tensordot([0.299, 0.587, 0.114], rgb, axes=1)  # (224, 224)
    small = luma.reshape(32, 7, 32, 7).mean(axis=(1, 3))  # (32, 32)
    k, n = np.arange(32)[:, None], np.arange(32)[None, :]
    c = np.sqrt(2 / 32) * np.cos(np.pi * (2 * n + 1) * k / 64)
    c[0] /= np.sqrt(2)
    low = (c @ small @ c.T)[:8, :8].ravel()  # (64,), index 0 is DC
    bits = low > np.median(low[1:])
    return sum(1 << i for i in range(1, 64) if bits[i])


def test_hash_matches_the_definition_and_its_mirror():
    images = [_photo(p) for p in PHOTOS]
    x = torch.stack([prepare(im, 224).tensor for im in images])  # (4, 3, 224, 224)
    h = scene_hashes(x)
    assert h.dtype == np.uint64 and h.shape == (4, 2)
    assert [int(v) for v in h[:, 0]] == [_reference_hash(xi) for xi in x]
    assert [int(v) for v in h[:, 1]] == [_reference_hash(xi.flip(-1)) for xi in x]
    flipped = scene_hashes(x.flip(-1))
    assert np.array_equal(flipped, h[:, ::-1])
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    other = (x * std + mean - 0.5) / 0.25  # the same pixels under another normalisation
    assert np.array_equal(scene_hashes(other, mean=(0.5,) * 3, std=(0.25,) * 3), h)
    with pytest.raises(ValueError):
        scene_hashes(x[:, :2])  # not (B, 3, H, W)
    assert scene_hashes(x[:, :, :16, :16]).shape == (len(x), 2)  # small inputs are upsampled
    assert np.all(popcount(h) == 31)  # balanced: 31 of the 63 AC bits above their median
    assert np.all(h & np.uint64(1) == 0)  # the DC bit is never set


def test_flat_images_hash_to_zero():
    flat = [Image.new("RGB", (300, 200), c) for c in [(0, 0, 0), (255, 255, 255), (128, 30, 200)]]
    assert np.array_equal(_hashes(flat), np.zeros((3, 2), np.uint64))


def test_popcount_byte_table_matches_bit_counting(monkeypatch):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2**63, size=(5, 7), dtype=np.uint64) * np.uint64(3)
    expected = np.array([[bin(int(v)).count("1") for v in row] for row in a])
    assert np.array_equal(popcount(a), expected)
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    assert np.array_equal(popcount(a), expected)


# ----------------------------------------------------------------------------------------------
# Known answers on photos
# ----------------------------------------------------------------------------------------------


def test_margin_between_variants_and_distinct_scenes(variant_hashes, distinct_hashes):
    within = max(int(_distance(h[:1], h[1:]).max()) for h in variant_hashes.values())
    between = _distance(distinct_hashes, distinct_hashes)
    np.fill_diagonal(between, 64)
    assert within == MAX_WITHIN
    assert int(between.min()) == MIN_BETWEEN
    assert MAX_WITHIN < HASH_THRESHOLD < MIN_BETWEEN


def test_every_variant_joins_its_photo_and_photos_stay_apart(variant_hashes):
    hashes = np.concatenate(list(variant_hashes.values()))  # photo 0 and its variants, photo 1...
    per_photo = 1 + len(ALL_VARIANTS)
    expected = np.repeat(np.arange(len(PHOTOS)), per_photo)
    assert np.array_equal(group_scenes(hashes), expected)


def test_distinct_scenes_are_never_merged(distinct_hashes):
    n = len(distinct_hashes)
    assert n == len(PHOTOS) * 5 + 6  # photos, their quarters, textures
    assert np.array_equal(group_scenes(distinct_hashes), np.arange(n))


def test_five_photos_and_twenty_variants_of_one_are_five_scenes(variant_hashes, distinct_hashes):
    photos = np.concatenate([distinct_hashes[: len(PHOTOS)], distinct_hashes[-1:]])  # + a texture
    variants = variant_hashes[PHOTOS[0].name][1:]  # 20 variants of the first photo
    hashes = np.concatenate([photos, variants])
    labels = group_scenes(hashes)
    assert np.array_equal(labels, np.r_[np.arange(5), np.zeros(20, int)])
    order = np.random.default_rng(2).permutation(len(hashes))
    shuffled = group_scenes(hashes[order])  # the partition does not depend on the order
    assert len(np.unique(shuffled)) == 5
    for k in range(5):
        members = order[shuffled == k]
        assert np.all(labels[members] == labels[members[0]])


# ----------------------------------------------------------------------------------------------
# Grouping, against a brute-force reference
# ----------------------------------------------------------------------------------------------


def _reference_groups(hashes: np.ndarray, threshold: int) -> list[int]:
    """Pairwise links by counting bits in Python, components by flood fill, first-seen order."""
    h = [(int(a), int(b)) for a, b in hashes]

    def dist(i, j):
        d = [bin(h[i][0] ^ h[j][0]), bin(h[i][0] ^ h[j][1]), bin(h[i][1] ^ h[j][0])]
        return min(s.count("1") for s in d)

    label = [-1] * len(h)
    for start in range(len(h)):
        if label[start] >= 0:
            continue
        label[start], todo = max(label) + 1, [start]
        while todo:
            i = todo.pop()
            for j in range(len(h)):
                if label[j] < 0 and dist(i, j) <= threshold:
                    label[j] = label[start]
                    todo.append(j)
    return label


def _planted(rng: np.random.Generator, n_scenes: int, copies: int) -> np.ndarray:
    """Random scene hashes, each with noisy copies (a few bits flipped, mirror swapped at times),
    chains (a copy of a copy) and exact repeats, in random order."""
    base = rng.integers(0, 2**63, size=(n_scenes, 2), dtype=np.uint64)
    rows = [base]
    for _ in range(copies):
        src = np.concatenate(rows)[rng.integers(0, n_scenes * len(rows), n_scenes)]
        flips = rng.integers(0, 64, size=(n_scenes, 2, rng.integers(0, 7)))
        noise = np.bitwise_or.reduce(np.left_shift(np.uint64(1), flips.astype(np.uint64)), -1)
        copy = src ^ noise if flips.shape[-1] else src.copy()
        swap = rng.random(n_scenes) < 0.3
        copy[swap] = copy[swap][:, ::-1]
        rows.append(copy)
    hashes = np.concatenate(rows)
    return hashes[rng.permutation(len(hashes))]


@pytest.mark.parametrize("threshold", [0, 6, 10, 14])
def test_group_scenes_matches_brute_force(monkeypatch, threshold):
    import hilocli.scenes as scenes

    monkeypatch.setattr(scenes, "_BLOCK_ELEMENTS", 4096)  # many row blocks
    hashes = _planted(np.random.default_rng(threshold), n_scenes=40, copies=4)  # (200, 2)
    labels = group_scenes(hashes, threshold)
    assert labels.dtype == np.int64
    assert labels.tolist() == _reference_groups(hashes, threshold)


def test_group_scenes_edge_cases():
    assert group_scenes(np.zeros((0, 2), np.uint64)).shape == (0,)
    one = np.array([[5, 9]], np.uint64)
    assert group_scenes(one).tolist() == [0]
    far = np.array([[0, 0], [(1 << 63) - 1, (1 << 63) - 1], [0, 0]], np.uint64)
    assert group_scenes(far).tolist() == [0, 1, 0]
    with pytest.raises(ValueError):
        group_scenes(np.zeros((3,), np.uint64))


def test_group_means_ignore_undefined_members():
    values = np.array([[1.0, np.nan], [3.0, np.nan], [np.nan, 2.0], [5.0, 4.0], [7.0, np.nan]])
    labels = np.array([0, 0, 1, 1, 2])
    expected = np.array([[2.0, np.nan], [5.0, 3.0], [7.0, np.nan]])
    np.testing.assert_array_equal(group_means(values, labels), expected)
    np.testing.assert_array_equal(group_means(values[:, 0], labels), expected[:, 0])
    with pytest.raises(ValueError):
        group_means(values, labels[:4])


# ----------------------------------------------------------------------------------------------
# --groups FILE
# ----------------------------------------------------------------------------------------------


def _write_csv(path: Path, rows: list[tuple[str, str]], header: str = "path,group") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *(f"{p},{g}" for p, g in rows)]) + "\n")
    return path


def test_read_groups_maps_relative_absolute_and_exact_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [("img/b.jpg", "cat"), ("img/a.jpg", "dog"), ("img/c.jpg", "cat"), ("x.jpg", "z")]
    csv_file = _write_csv(tmp_path / "groups.csv", rows)
    analysed = [str(tmp_path / "img" / "a.jpg"), "img/b.jpg", "./img/c.jpg"]
    assert read_groups(csv_file, analysed).tolist() == [0, 1, 1]
    reversed_file = _write_csv(tmp_path / "reversed.csv", rows[::-1])
    assert read_groups(reversed_file, analysed).tolist() == [0, 1, 1]


def test_read_groups_resolves_against_the_csv_folder_then_the_current_one(tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    rows = [("a.jpg", "s1"), ("../work/b.jpg", "s2"), ("c.jpg", "s3")]
    csv_file = _write_csv(tmp_path / "meta" / "groups.csv", rows)
    analysed = [str(tmp_path / "meta" / "a.jpg"), "b.jpg", "./c.jpg", "../meta/c.jpg"]
    # a.jpg, b.jpg: against the CSV's folder; ./c.jpg: the current one; ../meta/c.jpg: the CSV's
    assert read_groups(csv_file, analysed).tolist() == [0, 1, 2, 2]
    (tmp_path / "photo.jpg").write_bytes(b"")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "photo.jpg")
    linked = _write_csv(tmp_path / "linked.csv", [("photo.jpg", "p")])
    assert read_groups(linked, [str(tmp_path / "link.jpg")]).tolist() == [0]


def test_read_groups_errors_are_one_line(tmp_path):
    ok = [("a.jpg", "1"), ("b.jpg", "2")]
    analysed = [str(tmp_path / n) for n in ("a.jpg", "b.jpg", "c.jpg", "d.jpg")]
    with pytest.raises(HiloError) as missing:
        read_groups(_write_csv(tmp_path / "g.csv", ok), analysed)
    assert not isinstance(missing.value, UsageError)
    assert "2 of 4 analysed images are not listed" in str(missing.value)
    assert "c.jpg" in str(missing.value)
    cases = {
        "no such file": tmp_path / "absent.csv",
        "bad header": _write_csv(tmp_path / "h.csv", ok, header="file,scene"),
        "bad row": tmp_path / "r.csv",
        "two groups": _write_csv(tmp_path / "t.csv", [*ok, ("a.jpg", "3")]),
        "not text": tmp_path / "bin.csv",
    }
    cases["bad row"].write_text("path,group\na.jpg,1,extra\n")
    cases["not text"].write_bytes(b"path,group\n\xff\xfe\x00a")
    for why, path in cases.items():
        with pytest.raises(UsageError) as err:
            read_groups(path, analysed[:2])
        message = str(err.value)
        assert "\n" not in message and str(path) in message, why


def test_scene_groups_report(tmp_path):
    far = (1 << 63) - 1
    hashes = np.array([[0, 0], [far, far], [0, 0], [0, 0]], np.uint64)
    paths = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    groups = scenes_from_hashes(hashes, paths)
    assert isinstance(groups, SceneGroups)
    assert (groups.n_images, groups.n_groups) == (4, 2)
    assert groups.members(0).tolist() == [0, 2, 3]
    assert groups.to_dict() == {
        "n_images": 4,
        "n_groups": 2,
        "source": f"perceptual hash, Hamming <= {HASH_THRESHOLD} of 63 bits "
        "on the image and its mirror",
        "threshold": HASH_THRESHOLD,
        "groups": [["a.jpg", "c.jpg", "d.jpg"]],
    }
    assert scenes_from_hashes(hashes).to_dict()["groups"] == [[0, 2, 3]]
    csv_file = _write_csv(tmp_path / "g.csv", [(p, g) for p, g in zip(paths, "xyyx")])
    from_file = scenes_from_file(csv_file, paths)
    assert from_file.labels.tolist() == [0, 1, 1, 0]
    assert from_file.to_dict()["source"] == f"--groups {csv_file}"
    assert from_file.to_dict()["threshold"] is None
