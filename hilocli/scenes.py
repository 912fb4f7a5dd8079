"""Source scenes: near-duplicate images grouped, so that a test counts each scene once.

Resizes, recompressions, crops and shifts of a few pixels, brightness changes and mirror images of
one photo are one piece of evidence, not several. Two ways to say which images belong together:

- a perceptual hash (`scene_hashes`, `group_scenes`): the DCT hash ("pHash", Zauner 2010) of the
  model input. The input is turned back into luma (ITU-R BT.601 weights on the un-normalised
  RGB), area-averaged to 32 x 32 and transformed with the orthonormal 2-D DCT-II
  (scipy.fft.dctn). The 8 x 8 lowest-frequency coefficients describe the scene's coarse layout;
  each of the 63 that are not DC gives one bit: is it above their median? Why this hash: the
  low-frequency coefficients hardly move under resampling, recompression, or a shift or crop of
  a few pixels (a 1-2 % change of framing); a gain or offset in brightness changes neither the
  order of the AC coefficients nor their median; the median makes the bits balanced (31 of the
  63 set), so unrelated scenes differ in about 31.5 bits (sd about 4). The mirror image gets its
  own hash (the same steps on the mirrored 32 x 32 luma), so a mirrored copy is found by
  comparing with it. The DC bit is always 0 (brightness is not identity), and a flat image,
  whose AC coefficients are rounding noise, hashes to 0.
- a file (`read_groups`, `--groups FILE`): for structure a hash cannot see (frames of one video,
  several crops of one scene), the user's own labels.

`HASH_THRESHOLD`: two images are one scene when their hashes (or one's and the other's mirror)
differ in at most this many of the 63 bits. It lies between the largest distance of a variant
from its photo (resized, recompressed, mirrored, cropped or shifted by a few pixels, brightened)
and the smallest distance between distinct scenes, both measured and asserted in
tests/test_scenes.py. A rule about pictures, not a proof: photos of one scene from other
viewpoints are not near-duplicates, distinct scenes with the same coarse layout (or one
scene's mirror-symmetric halves) can be, and with many images chance links add up, because a
link of a link joins groups; `--groups` is the answer to all of these. A wrong merge makes the
test conservative (fewer, averaged units); a missed one makes it count a scene twice.

`group_scenes` links every pair within the threshold and returns the connected components (a
near-duplicate of a near-duplicate is the same scene). `group_means` averages a per-image quantity
over each group, so the test runs over scenes.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hilocli.errors import HiloError, UsageError
from hilocli.models.config import IMAGENET_MEAN, IMAGENET_STD

HASH_THRESHOLD = 10  # bits of 63 (see the module docstring)
HASH_BITS = 63  # informative bits of a hash (bit 0, DC, is always 0)
HASH_SIZE = 32  # the luma is area-averaged to HASH_SIZE x HASH_SIZE before the DCT
_LOW = 8  # the LOW x LOW lowest-frequency DCT coefficients make the hash
_ZERO = 1e-6  # |DCT coefficient| below this is rounding noise (float32: ~1e-7 on luma in [0, 1])
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601
_BLOCK_ELEMENTS = 1 << 19  # pairwise distances computed at most this many at a time


def scene_hashes(x, mean=None, std=None) -> np.ndarray:
    """(B, 3, H, W) model inputs (normalised with `mean`, `std`; ImageNet's by default) ->
    (B, 2) uint64: the perceptual hash of each image and of its left-right mirror image."""
    import scipy.fft  # lazy: a run of one file hashes nothing and skips this import

    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"scene_hashes wants (B, 3, H, W) inputs, got {tuple(x.shape)}")
    with torch.no_grad():
        m = torch.tensor(IMAGENET_MEAN if mean is None else mean, dtype=torch.float64)
        s = torch.tensor(IMAGENET_STD if std is None else std, dtype=torch.float64)
        luma = torch.tensor(_LUMA, dtype=torch.float64)
        w, b = (luma * s).float().to(x.device), float((luma * m).sum())
        gray = torch.einsum("bchw,c->bhw", x.float(), w) + b  # (B, H, W): sum_c L_c (x_c s_c + m_c)
        small = torch.nn.functional.adaptive_avg_pool2d(gray[:, None], HASH_SIZE)[:, 0]
    small = small.cpu().double().numpy()  # (B, 32, 32)
    both = np.stack([small, small[:, :, ::-1]], axis=1)  # (B, 2, 32, 32): image, mirror
    low = scipy.fft.dctn(both, type=2, axes=(-2, -1), norm="ortho")[..., :_LOW, :_LOW]
    low = low.reshape(*low.shape[:2], _LOW * _LOW)  # (B, 2, 64), index 0 is DC
    low[np.abs(low) < _ZERO] = 0.0  # rounding noise is no structure (a flat image hashes to 0)
    med = np.median(low[..., 1:], axis=-1, keepdims=True)  # (B, 2, 1)
    bits = low > med
    bits[..., 0] = False
    weights = np.left_shift(np.uint64(1), np.arange(_LOW * _LOW, dtype=np.uint64))
    return (bits.astype(np.uint64) * weights).sum(axis=-1, dtype=np.uint64)  # (B, 2)


_BYTE_COUNTS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount(a: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (np.bitwise_count where numpy has it, else a byte table)."""
    a = np.ascontiguousarray(a, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(a)
    per_byte = _BYTE_COUNTS[a.view(np.uint8)]  # (..., 8 * last)
    return per_byte.reshape(*a.shape, 8).sum(axis=-1, dtype=np.uint8)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits in which uint64 hashes differ (broadcasting)."""
    return popcount(np.bitwise_xor(a, b))


def _labels_in_order(components: np.ndarray) -> np.ndarray:
    """Arbitrary component ids -> 0..G-1 numbered in order of first appearance."""
    _, first, inverse = np.unique(components, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse.reshape(-1)]


def group_scenes(hashes: np.ndarray, threshold: int = HASH_THRESHOLD) -> np.ndarray:
    """(n, 2) hashes (image, mirror) -> (n,) int64 scene labels 0..G-1 in order of first appearance.

    Images i and j are linked when min(d(h_i, h_j), d(h_i, m_j), d(m_i, h_j)) <= threshold (d:
    Hamming distance); scenes are the connected components of the links. Exact, by blocks of
    rows: O(n^2) comparisons in O(n) memory; a block's links inside a scene already found are
    dropped, so many near-duplicates of one scene cost no more than distinct images."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    if hashes.ndim != 2 or hashes.shape[1] != 2:
        raise ValueError(f"group_scenes wants (n, 2) hashes, got shape {hashes.shape}")
    unique, inverse = np.unique(hashes, axis=0, return_inverse=True)  # identical: one node
    inverse = inverse.reshape(-1)
    m = len(unique)
    root = np.arange(m)  # a component id for each unique hash, merged block by block
    first, mirror = unique[:, 0].copy(), unique[:, 1].copy()  # (m,) each, contiguous
    rows = max(1, _BLOCK_ELEMENTS // max(m, 1))
    for start in range(0, m, rows):
        h, mir = first[start : start + rows, None], mirror[start : start + rows, None]  # (r, 1)
        h_rest, mir_rest = first[start:], mirror[start:]  # (m - start,): only pairs j >= i
        d = hamming(h, h_rest)  # (r, m - start)
        np.minimum(d, hamming(h, mir_rest), out=d)
        np.minimum(d, hamming(mir, h_rest), out=d)
        link = d <= threshold
        link &= root[start : start + rows, None] != root[None, start:]  # not yet one scene
        i, j = np.nonzero(link)
        if i.size == 0:
            continue
        # lazy: only when images link (distinct ones need no import)
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        edges = coo_matrix((np.ones(i.size, bool), (root[i + start], root[j + start])), (m, m))
        _, merged = connected_components(edges, directed=False)
        root = merged[root]
    return _labels_in_order(root[inverse])


def group_means(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n, L) per-image values -> (G, L) per-group means over members with a defined (non-NaN)
    value; NaN where no member has one. A 1-D (n,) input gives (G,)."""
    values = np.asarray(values, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    flat = values.reshape(len(values), -1)  # (n, L)
    if len(labels) != len(flat):
        raise ValueError(f"{len(flat)} values but {len(labels)} labels")
    n_groups = int(labels.max()) + 1 if labels.size else 0
    defined = ~np.isnan(flat)
    sums = np.zeros((n_groups, flat.shape[1]))
    counts = np.zeros((n_groups, flat.shape[1]))
    np.add.at(sums, labels, np.where(defined, flat, 0.0))
    np.add.at(counts, labels, defined)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / counts, np.nan)
    return means.reshape((n_groups, *values.shape[1:]))


# ----------------------------------------------------------------------------------------------
# --groups FILE
# ----------------------------------------------------------------------------------------------

GROUPS_HEADER = ["path", "group"]


def _read_rows(path: Path) -> list[tuple[str, str]]:
    """The (path, group) rows of a --groups CSV; UsageError (one line) on anything malformed."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        reason = getattr(exc, "strerror", None) or (str(exc).splitlines() or [repr(exc)])[0]
        raise UsageError(f"--groups {path}: cannot read it ({reason})") from exc
    if not rows or [c.strip() for c in rows[0]] != GROUPS_HEADER:
        raise UsageError(f"--groups {path}: the first line must be the header 'path,group'")
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue  # a blank line
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise UsageError(f"--groups {path}: line {line} is not 'path,group'")
        out.append((row[0].strip(), row[1].strip()))
    return out


def _resolved(p: str, base: Path) -> str:
    return os.path.realpath(base / p)  # an absolute p ignores base


def read_groups(path: Path, analysed: list[str]) -> np.ndarray:
    """Scene labels of `analysed` (paths as the run lists them) from a CSV `path,group`, numbered
    0..G-1 in order of first appearance; rows for other files are ignored.

    A CSV path matches an analysed one by exact string, else by resolved path (a relative CSV
    path against the CSV's folder, then against the current directory). UsageError: unreadable
    file, bad header or row, an analysed image in two groups; HiloError: analysed images not
    listed."""
    path = Path(path)
    folder, cwd = path.resolve().parent, Path.cwd()
    tables: tuple[dict[str, set[str]], ...] = ({}, {}, {})  # exact, by folder, by cwd
    for p, group in _read_rows(path):
        for table, key in zip(tables, (p, _resolved(p, folder), _resolved(p, cwd))):
            table.setdefault(key, set()).add(group)
    groups: list[str | None] = []
    for a in analysed:
        real = os.path.realpath(a)
        found = tables[0].get(a) or tables[1].get(real) or tables[2].get(real)
        if found is not None and len(found) > 1:
            raise UsageError(f"--groups {path}: {a} is listed in {len(found)} groups")
        groups.append(next(iter(found)) if found else None)
    missing = [a for a, g in zip(analysed, groups) if g is None]
    if missing:
        raise HiloError(
            f"--groups {path}: {len(missing)} of {len(analysed)} analysed images are not listed "
            f"(first: {missing[0]})"
        )
    return _labels_in_order(np.array(groups, dtype=object).astype(str))


# ----------------------------------------------------------------------------------------------
# The result
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SceneGroups:
    """Which analysed image belongs to which source scene."""

    labels: np.ndarray  # (n,) int64, 0..n_groups-1 in order of first appearance
    source: str  # how the groups were made, in words
    threshold: int | None = None  # Hamming threshold (hash groups), None for --groups
    paths: list[str] | None = None  # the analysed images, for to_dict

    @property
    def n_images(self) -> int:
        return len(self.labels)

    @property
    def n_groups(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def members(self, k: int) -> np.ndarray:
        """Indices of the images in group k, in order."""
        return np.flatnonzero(self.labels == k)

    def to_dict(self) -> dict:
        """For the JSON: counts, how, and every group of more than one image (paths if known)."""
        counts = np.bincount(self.labels, minlength=self.n_groups)
        shared = []
        for k in np.flatnonzero(counts > 1):
            idx = self.members(int(k)).tolist()
            shared.append([self.paths[i] for i in idx] if self.paths is not None else idx)
        return {
            "n_images": self.n_images,
            "n_groups": self.n_groups,
            "source": self.source,
            "threshold": self.threshold,
            "groups": shared,
        }


def hash_source(threshold: int) -> str:
    return (
        f"perceptual hash, Hamming <= {threshold} of {HASH_BITS} bits on the image and its mirror"
    )


def scenes_from_hashes(
    hashes: np.ndarray, paths: list[str] | None = None, threshold: int = HASH_THRESHOLD
) -> SceneGroups:
    """SceneGroups of the perceptual hashes of the analysed images."""
    labels = group_scenes(hashes, threshold)
    return SceneGroups(labels, hash_source(threshold), threshold, paths)


def scenes_from_file(path: Path, analysed: list[str]) -> SceneGroups:
    """SceneGroups of a --groups FILE."""
    return SceneGroups(read_groups(path, analysed), f"--groups {path}", None, list(analysed))


BLANK_LEVEL = 0.5 / 255  # pixel standard deviation (values in [0, 1]) below which a channel is flat


def no_spatial_content(x, mean=None, std=None) -> np.ndarray:
    """(B, 3, H, W) model inputs (normalised with `mean`, `std`; ImageNet's by default) -> (B,)
    bool: images whose every channel is flat (standard deviation under half a grey level). Their
    branch maps show only what the architecture adds (zero-padding at the borders), so their
    deltas are undefined: excluded from the verdict and counted."""
    s = torch.tensor(IMAGENET_STD if std is None else std, dtype=torch.float32, device=x.device)
    spread = x.float().flatten(2).std(-1) * s  # (B, 3) in [0, 1] pixel units
    return (spread < BLANK_LEVEL).all(-1).cpu().numpy()
