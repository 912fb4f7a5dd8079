"""attn-map analysis: the weights are the model's, the numbers are what they claim, queries land
on the right token exactly, and the figures read at every size."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from hilocli.attn_map.heads import HeadColumn, head_columns
from hilocli.attn_map.maps import layer_qk, query_map_distances, query_maps
from hilocli.attn_map.raw import full_matrices, raw_budget, raw_nbytes
from hilocli.attn_map.summaries import summarise_layer
from hilocli.errors import UsageError
from hilocli.models.geometry import (
    layer_geometry,
    min_input_size,
    pixel_to_token,
    token_stride,
)
from tests.conftest import capture_layers, hilo_layers

SIZES = [(64, 64), (88, 72), (70, 50)]  # (w, h): square; odd stage-3 width; partial patches


def _run(model, size, layers=(0, 1, 2), attn=False, seed=0):
    """One forward on a random (1, 3, h, w) image; the capture records."""
    w, h = size
    torch.manual_seed(seed)
    x = torch.randn(1, 3, h, w)
    with torch.no_grad(), capture_layers(model, list(layers), attn=attn) as cap:
        model(x)
    return cap.records


def _geometry(model, index, size):
    return layer_geometry(hilo_layers(model)[index].info, model.cfg, size)


def _qk(model, size, index, rec):
    return layer_qk(hilo_layers(model)[index], rec.control, _geometry(model, index, size))


# -- query pixel -> token ----------------------------------------------------------------------


def test_pixel_to_token_matches_the_patch_embedding(tiny_model):
    """Stage 1: perturbing input pixel (x, y) changes exactly the patch token pixel_to_token
    names (the conv patch embedding is the physical definition of "covers")."""
    w, h = 70, 50  # not multiples of 4: partial patches at the right/bottom
    grid0 = tiny_model.grid_sizes(h, w)[0]
    torch.manual_seed(1)
    x = torch.randn(1, 3, h, w)
    with torch.no_grad():
        base, H, W = tiny_model.patch_embed(x)
    assert (H, W) == grid0 == (13, 18)
    for px, py in [(0, 0), (37, 21), (69, 49), (3, 48), (68, 4)]:
        x2 = x.clone()
        x2[0, :, py, px] += 5.0
        with torch.no_grad():
            pert, _, _ = tiny_model.patch_embed(x2)
        changed = (pert - base).abs().amax(-1).reshape(H, W) > 1e-6  # (H, W)
        rows, cols = torch.nonzero(changed, as_tuple=True)
        assert len(rows) == 1
        assert pixel_to_token(px + 0.5, py + 0.5, 0, grid0) == (int(rows[0]), int(cols[0]))


@pytest.mark.parametrize("w,h", SIZES + [(96, 64), (64, 100)])
def test_pixel_to_token_covers_the_pixel_at_every_stage(tiny_model, w, h):
    grids = tiny_model.grid_sizes(h, w)
    for stage, (H, W) in enumerate(grids):
        t = token_stride(stage)
        for x in np.linspace(0, w - 1e-3, 23):
            for y in np.linspace(0, h - 1e-3, 19):
                r, c = pixel_to_token(float(x), float(y), stage, (H, W))
                assert 0 <= r < H and 0 <= c < W
                # covered: inside [c t, (c+1) t); or clamped because merging dropped the pixels
                assert c * t <= x < (c + 1) * t or (c == W - 1 and x >= W * t)
                assert r * t <= y < (r + 1) * t or (r == H - 1 and y >= H * t)
                if stage:  # a stage token holds the previous stage's covering token (2x2 merge)
                    pr, pc = pixel_to_token(float(x), float(y), stage - 1, grids[stage - 1])
                    assert (min(pr // 2, H - 1), min(pc // 2, W - 1)) == (r, c)


def test_pixel_to_token_known_values_and_clamping():
    # 88 x 72 input: stage 3 (index 2) grid 4 x 5, stride 16; pixels 80..87 were floored away
    assert pixel_to_token(87.9, 71.9, 2, (4, 5)) == (3, 4)
    assert pixel_to_token(40.0, 16.0, 2, (4, 5)) == (1, 2)
    assert pixel_to_token(15.99, 0.0, 2, (4, 5)) == (0, 0)
    # 70 x 50: stage 2 (index 1) grid 6 x 9, stride 8: y 49.5 -> row 6 -> clamped to 5
    assert pixel_to_token(69.5, 49.5, 1, (6, 9)) == (5, 8)
    with pytest.raises(ValueError):
        pixel_to_token(-1.0, 3.0, 0, (4, 4))


def test_original_pixels_map_to_tokens_with_and_without_crop(tiny_model):
    from PIL import Image

    from hilocli.images import prepare

    img = Image.new("RGB", (300, 200), (120, 60, 30))
    whole = prepare(img, 64, crop=False)  # shorter side 64: input 96 x 64
    assert whole.input_size == (96, 64)
    grid = tiny_model.grid_sizes(64, 96)[2]
    assert grid == (4, 6)
    assert pixel_to_token(*whole.to_input_xy(299.9, 199.9), 2, grid) == (3, 5)
    assert pixel_to_token(*whole.to_input_xy(0, 0), 2, grid) == (0, 0)
    assert pixel_to_token(*whole.to_input_xy(150, 100), 2, grid) == (2, 3)  # input (48, 32)
    cropped = prepare(img, 64, crop=True)  # resized 109 x 73, centre crop 64 from left 22
    xi, yi = cropped.to_input_xy(150, 100)
    assert pixel_to_token(xi, yi, 2, (4, 4)) == (2, 2)
    with pytest.raises(ValueError, match="cropped away"):
        cropped.to_input_xy(5, 100)


# -- the weights are the model's ---------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_weights_are_the_captured_ones_and_rows_sum_to_one(tiny_model, size):
    recs = _run(tiny_model, size, attn=True)
    for i, rec in recs.items():
        qk = _qk(tiny_model, size, i, rec)
        full = full_matrices(qk, chunk_size=5)
        if rec.hifi_attn is None:
            assert "hifi" not in full
        else:
            torch.testing.assert_close(torch.from_numpy(full["hifi"]), rec.hifi_attn[0])
            np.testing.assert_allclose(full["hifi"].sum(-1), 1.0, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(full["lofi"]), rec.lofi_attn[0])
        np.testing.assert_allclose(full["lofi"].sum(-1), 1.0, atol=1e-5)
        # the per-query maps are rows of the same matrices
        g = qk.geometry
        H, W = g.grid
        tokens = [(0, 0), (H - 1, W - 1), (H // 2, W - 1)]
        for m in query_maps(qk, tokens):
            r, c = m.token
            np.testing.assert_allclose(
                m.lofi.reshape(m.lofi.shape[0], -1), full["lofi"][:, r * g.padded[1] + c], atol=1e-6
            )
            np.testing.assert_allclose(m.lofi.sum(axis=(1, 2)), 1.0, atol=1e-5)
            if m.hifi is not None:
                s = g.layer.window_size
                win = (r // s) * g.pooled[1] + c // s
                pos = (r % s) * s + c % s
                np.testing.assert_allclose(
                    m.hifi.reshape(m.hifi.shape[0], -1), full["hifi"][win, :, pos], atol=1e-6
                )


@pytest.mark.parametrize("size", SIZES)
def test_weights_times_values_reproduce_the_branch_outputs(tiny_model, size):
    """The recomputed weights, applied to the layer's values and projections, give the outputs
    the model computed on its fused (SDPA) path: the maps are the real attention."""
    recs = _run(tiny_model, size, attn=False)  # the fast path, as the command runs it
    for i, rec in recs.items():
        layer = hilo_layers(tiny_model)[i].module
        qk = _qk(tiny_model, size, i, rec)
        full = full_matrices(qk, chunk_size=4)
        g = qk.geometry
        H, W = g.grid
        Hp, Wp = g.padded
        s = g.layer.window_size
        with torch.no_grad():
            padded = layer.pad(rec.control)  # (1, Hp, Wp, C)
            if layer.h_heads:
                _, _, v = layer.hifi_qkv(padded)  # (1, G, h, s*s, d)
                out = torch.from_numpy(full["hifi"]) @ v[0]  # (G, h, s*s, d)
                out = out.transpose(1, 2).reshape(Hp // s, Wp // s, s, s, -1)
                out = out.transpose(1, 2).reshape(Hp, Wp, -1)  # windows back on the grid
                hifi_out = layer.h_proj(out)[:H, :W]
                torch.testing.assert_close(hifi_out, rec.hifi_out[0], atol=1e-5, rtol=1e-4)
            _, _, v = layer.lofi_qkv(padded)  # (1, h, M, d)
            out = torch.from_numpy(full["lofi"]) @ v[0]  # (h, Hp*Wp, d)
            out = out.transpose(0, 1).reshape(Hp, Wp, -1)
            lofi_out = layer.l_proj(out)[:H, :W]
            torch.testing.assert_close(lofi_out, rec.lofi_out[0], atol=1e-5, rtol=1e-4)


# -- summaries ----------------------------------------------------------------------------------


def _brute_force(g, full):
    """Per-head distance, entropy and received by explicit loops over real query tokens."""
    H, W = g.grid
    Hp, Wp = g.padded
    s, t = g.layer.window_size, g.stride
    Hk, Wk = g.pooled
    res = {}
    if "hifi" in full:
        h = full["hifi"].shape[1]
        dist, ent = np.zeros(h), np.zeros(h)
        for r in range(H):
            for c in range(W):
                win = (r // s) * Wk + c // s
                row = full["hifi"][win, :, (r % s) * s + c % s]  # (h, s*s)
                for j in range(s * s):
                    kr, kc = (r // s) * s + j // s, (c // s) * s + j % s
                    dist += row[:, j] * math.hypot((kc - c) * t, (kr - r) * t)
                ent += -(row * np.log(row)).sum(-1)
        res["hifi"] = (dist / (H * W), ent / (H * W))
    lofi = full["lofi"]
    h = lofi.shape[0]
    dist, ent, received = np.zeros(h), np.zeros(h), np.zeros((h, Hk * Wk))
    for r in range(H):
        for c in range(W):
            row = lofi[:, r * Wp + c]  # (h, M)
            for j in range(Hk * Wk):
                kx, ky = (j % Wk + 0.5) * s * t, (j // Wk + 0.5) * s * t
                dist += row[:, j] * math.hypot(kx - (c + 0.5) * t, ky - (r + 0.5) * t)
            ent += -(row * np.log(row)).sum(-1)
            received += row
    res["lofi"] = (dist / (H * W), ent / (H * W), received.reshape(h, Hk, Wk) / (H * W))
    return res


@pytest.mark.parametrize("size", [(88, 72), (70, 50)])
def test_summaries_match_a_brute_force_count_over_real_queries(tiny_model, size):
    recs = _run(tiny_model, size, seed=3)
    for i, rec in recs.items():
        qk = _qk(tiny_model, size, i, rec)
        g = qk.geometry
        summ = summarise_layer(qk, chunk_size=3)
        ref = _brute_force(g, full_matrices(qk))
        H, W = g.grid
        assert summ.lofi.num_queries == H * W  # padded positions are not queries
        np.testing.assert_allclose(summ.lofi.mean_distance, ref["lofi"][0], rtol=1e-5)
        np.testing.assert_allclose(summ.lofi.entropy, ref["lofi"][1], rtol=1e-5)
        np.testing.assert_allclose(summ.lofi.received, ref["lofi"][2], rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(summ.lofi.received.sum(axis=(1, 2)), 1.0, rtol=1e-6)
        assert np.all(summ.lofi.entropy_normalised <= 1 + 1e-6)
        if g.layer.hifi_heads:
            assert summ.hifi.num_queries == H * W
            np.testing.assert_allclose(summ.hifi.mean_distance, ref["hifi"][0], rtol=1e-5)
            np.testing.assert_allclose(summ.hifi.entropy, ref["hifi"][1], rtol=1e-5)
        else:
            assert summ.hifi is None


@pytest.mark.parametrize("size", SIZES)
def test_hifi_distance_never_exceeds_the_window_diagonal(tiny_model, size):
    for seed in range(3):
        recs = _run(tiny_model, size, layers=(0, 1), seed=seed)
        for i, rec in recs.items():
            qk = _qk(tiny_model, size, i, rec)
            g = qk.geometry
            summ = summarise_layer(qk)
            bound = (g.layer.window_size - 1) * math.sqrt(2) * g.stride
            assert bound == pytest.approx(g.hifi_max_distance) and bound < g.window_diagonal
            assert np.all(summ.hifi.mean_distance <= bound + 1e-9)
            assert np.all(summ.hifi.mean_distance > 0)
            H, W = g.grid
            for m in query_maps(qk, [(r, c) for r in range(H) for c in range(W)]):
                assert np.all(query_map_distances(g, m)[: g.layer.hifi_heads] <= bound + 1e-6)


def test_chunked_and_unchunked_summaries_agree(tiny_model):
    size = (88, 72)
    recs = _run(tiny_model, size, seed=5)
    for i, rec in recs.items():
        qk = _qk(tiny_model, size, i, rec)
        whole = summarise_layer(qk, chunk_size=10_000)
        for chunk in (1, 3, 7):
            part = summarise_layer(qk, chunk_size=chunk)
            for a, b in zip(whole.branches(), part.branches()):
                np.testing.assert_allclose(a.mean_distance, b.mean_distance, rtol=1e-6)
                np.testing.assert_allclose(a.entropy, b.entropy, rtol=1e-6)
                assert a.uniform_distance == pytest.approx(b.uniform_distance, rel=1e-12)
                if a.received is not None:
                    np.testing.assert_allclose(a.received, b.received, rtol=1e-5, atol=1e-9)


def test_distance_of_a_one_hot_head_is_the_geometric_distance(tiny_model):
    """Make the Lo-Fi keys so large along the query direction that every query attends to one
    pooled key: the mean distance is then the distance to that key's centre."""
    size = (64, 64)
    rec = _run(tiny_model, size, layers=(0,))[0]
    qk = _qk(tiny_model, size, 0, rec)
    # grid 4x4, s = 2: pooled 2x2, stride 16
    qk.lofi_q = torch.ones_like(qk.lofi_q)
    qk.lofi_k = torch.zeros_like(qk.lofi_k)
    qk.lofi_k[:, 3] = 1000.0  # pooled key (1, 1): centre (48, 48)
    summ = summarise_layer(qk)
    token_xy = [((c + 0.5) * 16, (r + 0.5) * 16) for r in range(4) for c in range(4)]
    expected = np.mean([math.hypot(x - 48, y - 48) for x, y in token_xy])
    assert summ.lofi.mean_distance[0] == pytest.approx(expected, rel=1e-6)
    assert summ.lofi.entropy[0] == pytest.approx(0.0, abs=1e-6)
    assert summ.lofi.received[0, 1, 1] == pytest.approx(1.0)
    # uniform weights over the same keys: the mean distance to all four key centres
    keys = [(16, 16), (48, 16), (16, 48), (48, 48)]
    uni = np.mean([np.mean([math.hypot(x - kx, y - ky) for kx, ky in keys]) for x, y in token_xy])
    assert summ.lofi.uniform_distance == pytest.approx(uni)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_layers_with_one_branch(tiny_cfg, alpha):
    from hilocli.models import create_model

    torch.manual_seed(0)
    model = create_model(tiny_cfg.replace(alpha=alpha))
    recs = _run(model, (64, 64), layers=(0,))
    qk = _qk(model, (64, 64), 0, recs[0])
    summ = summarise_layer(qk)
    (m,) = query_maps(qk, [(1, 2)])
    if alpha == 0.0:  # no Lo-Fi heads
        assert summ.lofi is None and m.lofi is None and summ.hifi.mean_distance.shape == (2,)
        assert [c.branch for c in head_columns(qk.geometry.layer, "all")] == ["hifi"] * 3
    else:
        assert summ.hifi is None and m.hifi is None and summ.lofi.mean_distance.shape == (2,)
    assert query_map_distances(qk.geometry, m).shape == (2,)


def test_non_finite_activations_are_refused(tiny_model):
    from hilocli.errors import HiloError

    rec = _run(tiny_model, (64, 64), layers=(0,))[0]
    control = rec.control.clone()
    control[0, 1, 2, 3] = float("nan")
    with pytest.raises(HiloError, match=r"non-finite values .* layer 0 \(layers.2.blocks.0\)"):
        layer_qk(hilo_layers(tiny_model)[0], control, _geometry(tiny_model, 0, (64, 64)))


# -- heads and budgets --------------------------------------------------------------------------


def test_head_columns(tiny_model):
    g = hilo_layers(tiny_model)[0].info  # 1 Hi-Fi + 1 Lo-Fi head
    assert [c.heads for c in head_columns(g, "all")] == [(0,), (1,)]
    assert [(c.branch, c.heads) for c in head_columns(g, "mean")] == [
        ("hifi", (0,)),
        ("lofi", (1,)),
    ]
    msa = hilo_layers(tiny_model)[2].info  # 4 MSA heads
    cols = head_columns(msa, "all")
    assert [c.heads for c in cols] == [(0,), (1,), (2,), (3,), (0, 1, 2, 3)]
    assert cols[-1].label.startswith("MSA mean")
    assert [c.heads for c in head_columns(msa, [1, 3])] == [(1,), (3,)]
    with pytest.raises(UsageError, match="head 2 does not exist in layer 0"):
        head_columns(g, [2])
    lofi = np.arange(4 * 3).reshape(4, 3, 1).astype(float)
    np.testing.assert_allclose(
        HeadColumn("m", "lofi", (1, 3)).select(msa, None, lofi), (lofi[1] + lofi[3]) / 2
    )


def test_raw_budget_counts_the_full_matrices(tiny_model):
    size = (88, 72)
    recs = _run(tiny_model, size)
    total = 0
    for i, rec in recs.items():
        qk = _qk(tiny_model, size, i, rec)
        full = full_matrices(qk)
        assert raw_nbytes(qk.geometry) == sum(a.nbytes for a in full.values())
        total += raw_nbytes(qk.geometry)
    smallest = min_input_size(tiny_model.cfg)
    geoms = [_geometry(tiny_model, i, size) for i in range(3)]
    assert raw_budget(geoms, total, 72, smallest).fits
    big = [_geometry(tiny_model, i, (512, 512)) for i in range(3)]
    tight = raw_budget(big, 20_000, 512, smallest)
    assert not tight.fits and tight.needed > 20_000
    r = tight.fitting_resolution
    assert r is not None and r % 32 == 0

    def need(res):
        return sum(raw_nbytes(_geometry(tiny_model, i, (res, res))) for i in range(3))

    assert need(r) <= 20_000 < need(r + 32)


# -- exact geometry: original pixel -> input position -> token ----------------------------------

GEOMETRY_SIZES = [(451, 300), (600, 400), (640, 427), (512, 512), (97, 61), (61, 97)]
RESOLUTIONS = [64, 100, 224, 225, 448, 511, 1024]


@functools.cache
def _prepared(w0: int, h0: int, res: int, crop: bool):
    """The preprocessing geometry of a w0 x h0 image (its pixels do not matter here)."""
    from PIL import Image

    from hilocli.images import prepare

    return prepare(Image.new("RGB", (w0, h0)), res, crop=crop)


def _token_by_integers(prep, i: int, j: int, stage: int, grid) -> tuple[int, int]:
    """Independent reference: the token of original pixel (i, j)'s centre, integers only.
    x_in = (i + 1/2) rw / w0 - left, so floor(x_in / t) = ((2i + 1) rw - 2 left w0) // (2 t w0)."""
    (w0, h0), (rw, rh) = prep.original_size, prep.resized_size
    left, top = prep.crop_box[:2]
    t = 4 * 2**stage
    col = ((2 * i + 1) * rw - 2 * left * w0) // (2 * t * w0)
    row = ((2 * j + 1) * rh - 2 * top * h0) // (2 * t * h0)
    return min(row, grid[0] - 1), min(col, grid[1] - 1)


def _visible(prep, i: int, j: int) -> bool:
    (w0, h0), (rw, rh) = prep.original_size, prep.resized_size
    left, top, right, bottom = prep.crop_box
    return (
        2 * left * w0 <= (2 * i + 1) * rw < 2 * right * w0
        and 2 * top * h0 <= (2 * j + 1) * rh < 2 * bottom * h0
    )


@pytest.mark.parametrize("crop", [True, False])
def test_query_tokens_are_exact_at_many_sizes(tiny_cfg, crop):
    """Every 9th original pixel centre of a row and a column through the middle (and the middle
    pixel), at 6 image sizes x 7 resolutions: the token equals an all-integer computation, at
    every stage; pixels the crop removes are usage errors."""
    from fractions import Fraction

    from hilocli.attn_map.queries import user_queries
    from hilocli.models.geometry import grid_sizes

    checked = 0
    for w0, h0 in GEOMETRY_SIZES:
        for res in RESOLUTIONS:
            prep = _prepared(w0, h0, res, crop)
            w, h = prep.input_size
            grids = grid_sizes(tiny_cfg, h, w)
            pixels = {(i, h0 // 2) for i in range(0, w0, 9)} | {
                (w0 // 2, j) for j in range(0, h0, 9)
            }
            for i, j in sorted(pixels):
                point = [(Fraction(2 * i + 1, 2), Fraction(2 * j + 1, 2))]
                if not _visible(prep, i, j):
                    with pytest.raises(UsageError, match="cropped away: the model sees x"):
                        user_queries(prep, point)
                    continue
                (q,) = user_queries(prep, point)
                for stage, grid in enumerate(grids):
                    got = pixel_to_token(q.x_input, q.y_input, stage, grid)
                    assert got == _token_by_integers(prep, i, j, stage, grid), (w0, h0, res, i, j)
                    checked += 1
    assert checked > 5_000


def test_the_issue_case_lands_on_the_right_token():
    """coffee.jpg (600 x 400) --no-crop --resolution 448: input 672 x 448; the centre 336 (once
    335.99999999999994 in floating point, one token off) is token column 21 at stage 3."""
    from PIL import Image

    from hilocli.attn_map.queries import default_queries, parse_query, user_queries
    from hilocli.images import prepare

    prep = prepare(Image.new("RGB", (600, 400)), 448, crop=False)
    assert prep.input_size == (672, 448)
    centre = default_queries(prep)[0]
    assert (centre.x_input, centre.y_input) == (336, 224) and (centre.x, centre.y) == (300, 200)
    (user,) = user_queries(prep, [parse_query("300,200")])
    assert (user.x_input, user.y_input) == (336, 224)
    assert pixel_to_token(user.x_input, user.y_input, 2, (28, 42)) == (14, 21)


@pytest.mark.parametrize("crop", [True, False])
def test_default_queries_are_inside_what_the_model_sees(crop):
    """Centre and quadrant centres, exactly; back and forth through the original image without
    drift (the earlier floating-point round trip put 28 of these 1,260 query/stage cases one
    token off)."""
    from hilocli.attn_map.queries import default_queries

    for w0, h0 in GEOMETRY_SIZES:
        for res in RESOLUTIONS:
            prep = _prepared(w0, h0, res, crop)
            w, h = prep.input_size
            queries = default_queries(prep)
            assert [(q.x_input / w, q.y_input / h) for q in queries] == [
                (0.5, 0.5),
                (0.25, 0.25),
                (0.75, 0.25),
                (0.25, 0.75),
                (0.75, 0.75),
            ]
            for q, (a, b) in zip(queries, [(2, 2), (1, 1), (3, 1), (1, 3), (3, 3)]):
                assert 0 <= q.x < w0 and 0 <= q.y < h0
                assert prep.to_input_xy(q.x, q.y) == (q.x_input, q.y_input)  # round trip, exact
                for stage in range(3):  # the token by integers: x_in = a w / 4, y_in = b h / 4
                    t = 4 * 2**stage
                    grid = (-(-h // 4) >> stage, -(-w // 4) >> stage)
                    assert pixel_to_token(q.x_input, q.y_input, stage, grid) == (
                        min(b * h // (4 * t), grid[0] - 1),
                        min(a * w // (4 * t), grid[1] - 1),
                    )


def test_a_query_outside_the_crop_names_the_visible_region():
    from PIL import Image

    from hilocli.attn_map.queries import parse_query, user_queries
    from hilocli.images import prepare

    prep = prepare(Image.new("RGB", (451, 300)), 224)  # chelsea.jpg: 384 x 256, crop at (80, 16)
    assert prep.resized_size == (384, 256) and prep.crop_box == (80, 16, 304, 240)
    with pytest.raises(UsageError) as exc:
        user_queries(prep, [parse_query("60,60")])
    x0, x1 = 80 * 451 / 384, 304 * 451 / 384  # 93.958, 357.04
    assert f"x {x0:.5g}..{x1:.5g}, y 18.75..281.25" in str(exc.value)
    assert str(exc.value).startswith("--query 60,60: ") and "--no-crop" in str(exc.value)
    for bad in ("1", "a,b", "1,2,3", "nan,1", "inf,2"):
        with pytest.raises(UsageError, match="--query must be X,Y"):
            parse_query(bad)


# -- figures read at every size -----------------------------------------------------------------


def _synthetic_layer(num_heads: int, hifi_heads: int, window: int, input_size, seed: int = 0):
    """A LayerResult and its queries for a stage-3 layer with random (valid) weights."""
    from PIL import Image

    from hilocli.attn_map.maps import QueryMap
    from hilocli.attn_map.queries import DEFAULT_POINTS, Query
    from hilocli.attn_map.run import LayerResult
    from hilocli.attn_map.summaries import BranchSummary, LayerSummary
    from hilocli.models.geometry import HiLoLayerInfo, LayerGeometry

    rng = np.random.default_rng(seed)
    info = HiLoLayerInfo(
        index=3,
        name="layers.2.blocks.3",
        path="layers.2.blocks.3.attn",
        stage=2,
        window_size=window,
        num_heads=num_heads,
        hifi_heads=hifi_heads,
        lofi_heads=num_heads - hifi_heads,
        head_dim=32,
    )
    w, h = input_size
    g = LayerGeometry(
        layer=info, grid=(-(-h // 4) >> 2, -(-w // 4) >> 2), stride=16, input_size=(w, h)
    )
    s, (Hk, Wk) = window, g.pooled
    queries, maps = [], []
    for fx, fy in DEFAULT_POINTS:
        q = Query(x=fx * w * 3, y=fy * h * 3, x_input=fx * w, y_input=fy * h, source="default")
        r, c = pixel_to_token(q.x_input, q.y_input, 2, g.grid)
        hifi = rng.dirichlet(np.ones(s * s), hifi_heads).reshape(-1, s, s) if hifi_heads else None
        lofi = rng.dirichlet(np.ones(Hk * Wk), num_heads - hifi_heads).reshape(-1, Hk, Wk)
        queries.append(q)
        maps.append(
            QueryMap(
                token=(r, c),
                centre=((c + 0.5) * 16, (r + 0.5) * 16),
                hifi=hifi,
                window_origin=(r // s * s, c // s * s) if hifi_heads else None,
                lofi=lofi,
            )
        )

    def branch(name, heads, keys, received=None):
        n = len(heads)
        return BranchSummary(
            name,
            heads,
            keys,
            g.grid[0] * g.grid[1],
            rng.uniform(5, 50, n),
            rng.uniform(0, 1, n),
            30.0,
            received,
        )

    lofi_heads = list(range(hifi_heads, num_heads))
    summary = LayerSummary(
        g,
        branch("hifi", list(range(hifi_heads)), s * s) if hifi_heads else None,
        branch(
            "lofi",
            lofi_heads,
            Hk * Wk,
            rng.dirichlet(np.ones(Hk * Wk), len(lofi_heads)).reshape(-1, Hk, Wk),
        ),
    )
    layer = LayerResult(geometry=g, columns=head_columns(info, "all"), summary=summary, maps=maps)
    display = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    return layer, queries, display


def _text_problems(fig, draw: bool = False) -> list[str]:
    """Texts that overlap another text or leave the figure (tick labels: those drawn)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    canvas = FigureCanvasAgg(fig)
    if draw:
        canvas.draw()
    renderer = canvas.get_renderer()
    ticks, drawn = set(), []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks():
                ticks.add(id(tick.label1))
                if lo - 1e-9 <= tick.get_loc() <= hi + 1e-9 and tick.label1.get_visible():
                    drawn.append(tick.label1)
    texts = [t for t in fig.findobj(Text) if id(t) not in ticks] + drawn
    texts = [t for t in texts if t.get_visible() and t.get_text().strip()]
    boxes = np.array([t.get_window_extent(renderer).extents for t in texts])  # (n, 4)
    W, H = fig.bbox.width, fig.bbox.height
    problems = [
        f"outside: {t.get_text()!r}"
        for t, (x0, y0, x1, y1) in zip(texts, boxes)
        if x0 < -1 or y0 < -1 or x1 > W + 1 or y1 > H + 1
    ]
    x0, y0, x1, y1 = (boxes[:, k] for k in range(4))
    hit = (
        (x0[:, None] < x1[None] - 0.5)
        & (x0[None] < x1[:, None] - 0.5)
        & (y0[:, None] < y1[None] - 0.5)
        & (y0[None] < y1[:, None] - 0.5)
    )
    for i, j in zip(*np.nonzero(np.triu(hit, 1))):
        problems.append(f"overlap: {texts[i].get_text()!r} / {texts[j].get_text()!r}")
    return problems


@pytest.mark.parametrize(
    "heads,hifi,window,size",
    [
        (1, 0, 1, (64, 64)),
        (32, 3, 2, (64, 64)),
        (12, 2, 2, (1024, 1024)),
        (2, 1, 2, (96, 64)),
        (24, 0, 1, (200, 64)),
    ],
)
def test_layer_figure_text_never_overlaps(heads, hifi, window, size):
    """1 to 32 heads, 64 to 1024 px, square and not: no label runs into another or off the
    figure, and the heads wrap into rows instead of widening the figure."""
    from hilocli.attn_map.figures import MAX_COLUMNS, layer_figure

    layer, queries, display = _synthetic_layer(heads, hifi, window, size)
    title = (
        "litv2_b (random init (litv2_b architecture, seed 0))\nlayer 3 = layers.2.blocks.3: "
        "stage 3, s = 2, grid 4x4 (rows x cols), 2 Hi-Fi + 10 Lo-Fi heads; a.jpg at 64x64"
    )
    fig, plotted = layer_figure(display, layer, queries, title)
    assert _text_problems(fig) == []
    assert plotted["columns"] == [c.label for c in layer.columns]
    # heads wrap into bands: never wider than MAX_COLUMNS panels plus margins
    panel_w = max(170, 128 * size[0] / min(size))
    assert fig.get_figwidth() * 100 <= MAX_COLUMNS * (panel_w + 10) + 200
    # the figure draws what the maps hold: column 0, query 0
    col = layer.columns[0]
    np.testing.assert_allclose(
        plotted["query_maps"][0][0],
        col.select(layer.geometry.layer, layer.maps[0].hifi, layer.maps[0].lofi),
    )


def test_distance_figure_text_never_overlaps():
    from hilocli.attn_map.figures import distance_figure

    for layers in ([(1, 0, 1)], [(16, 2, 2)] * 3 + [(24, 0, 1), (12, 2, 2), (32, 3, 2)]):
        summaries = [
            _synthetic_layer(*spec, (224, 224), seed=k)[0].summary for k, spec in enumerate(layers)
        ]
        fig, plotted = distance_figure(
            summaries,
            "mean attention distance per head: litv2_b "
            "(random init (litv2_b architecture, seed 0)); "
            "coffee.jpg at 224x224",
        )
        assert _text_problems(fig, draw=True) == [], layers
        assert "farthest a Hi-Fi head can reach" in plotted["legend"] or layers[0][1] == 0
        np.testing.assert_allclose(plotted["layers"][0]["lofi"], summaries[0].lofi.mean_distance)
