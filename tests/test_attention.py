"""Attention maps and summaries: the weights are the model's, the numbers are what they claim."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hilocli.attention import (
    HeadColumn,
    full_matrices,
    head_columns,
    layer_geometry,
    layer_qk,
    query_map_distances,
    query_maps,
    query_to_token,
    raw_budget,
    raw_nbytes,
    summarise_layer,
    token_stride,
)
from hilocli.capture import capture

SIZES = [(64, 64), (88, 72), (70, 50)]  # (w, h): square; odd stage-3 width; partial patches


def _run(model, size, layers=(0, 1, 2), attn=False, seed=0):
    """One forward on a random (1, 3, h, w) image; the capture records."""
    w, h = size
    torch.manual_seed(seed)
    x = torch.randn(1, 3, h, w)
    with torch.no_grad(), capture(model, list(layers), attn=attn) as cap:
        model(x)
    return cap.records


def _qk(model, size, index, rec):
    g = layer_geometry(model, index, size)
    return layer_qk(model.hilo_layers()[index][1], rec.control, g)


# -- query pixel -> token ----------------------------------------------------------------------


def test_query_to_token_matches_the_patch_embedding(tiny_model):
    """Stage 1: perturbing input pixel (x, y) changes exactly the patch token query_to_token
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
        assert query_to_token(px + 0.5, py + 0.5, 0, grid0) == (int(rows[0]), int(cols[0]))


@pytest.mark.parametrize("w,h", SIZES + [(96, 64), (64, 100)])
def test_query_to_token_covers_the_pixel_at_every_stage(tiny_model, w, h):
    grids = tiny_model.grid_sizes(h, w)
    for stage, (H, W) in enumerate(grids):
        t = token_stride(stage)
        for x in np.linspace(0, w - 1e-3, 23):
            for y in np.linspace(0, h - 1e-3, 19):
                r, c = query_to_token(float(x), float(y), stage, (H, W))
                assert 0 <= r < H and 0 <= c < W
                # covered: inside [c t, (c+1) t); or clamped because merging dropped the pixels
                assert c * t <= x < (c + 1) * t or (c == W - 1 and x >= W * t)
                assert r * t <= y < (r + 1) * t or (r == H - 1 and y >= H * t)
                if stage:  # a stage token holds the previous stage's covering token (2x2 merge)
                    pr, pc = query_to_token(float(x), float(y), stage - 1, grids[stage - 1])
                    assert (min(pr // 2, H - 1), min(pc // 2, W - 1)) == (r, c)


def test_query_to_token_known_values_and_clamping():
    # 88 x 72 input: stage 3 (index 2) grid 4 x 5, stride 16; pixels 80..87 were floored away
    assert query_to_token(87.9, 71.9, 2, (4, 5)) == (3, 4)
    assert query_to_token(40.0, 16.0, 2, (4, 5)) == (1, 2)
    assert query_to_token(15.99, 0.0, 2, (4, 5)) == (0, 0)
    # 70 x 50: stage 2 (index 1) grid 6 x 9, stride 8: y 49.5 -> row 6 -> clamped to 5
    assert query_to_token(69.5, 49.5, 1, (6, 9)) == (5, 8)
    with pytest.raises(ValueError):
        query_to_token(-1.0, 3.0, 0, (4, 4))


def test_original_pixels_map_to_tokens_with_and_without_crop(tiny_model):
    from PIL import Image

    from hilocli.images import prepare

    img = Image.new("RGB", (300, 200), (120, 60, 30))
    whole = prepare(img, 64, crop=False)  # shorter side 64: input 96 x 64
    assert whole.input_size == (96, 64)
    grid = tiny_model.grid_sizes(64, 96)[2]
    assert grid == (4, 6)
    assert query_to_token(*whole.to_input_xy(299.9, 199.9), 2, grid) == (3, 5)
    assert query_to_token(*whole.to_input_xy(0, 0), 2, grid) == (0, 0)
    assert query_to_token(*whole.to_input_xy(150, 100), 2, grid) == (2, 3)  # input (48, 32)
    cropped = prepare(img, 64, crop=True)  # resized 109 x 73, centre crop 64 from left 22
    xi, yi = cropped.to_input_xy(150, 100)
    assert query_to_token(xi, yi, 2, (4, 4)) == (2, 2)
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
            np.testing.assert_allclose(m.lofi.reshape(m.lofi.shape[0], -1),
                                       full["lofi"][:, r * g.padded[1] + c], atol=1e-6)
            np.testing.assert_allclose(m.lofi.sum(axis=(1, 2)), 1.0, atol=1e-5)
            if m.hifi is not None:
                s = g.window_size
                win = (r // s) * g.pooled[1] + c // s
                pos = (r % s) * s + c % s
                np.testing.assert_allclose(m.hifi.reshape(m.hifi.shape[0], -1),
                                           full["hifi"][win, :, pos], atol=1e-6)


@pytest.mark.parametrize("size", SIZES)
def test_weights_times_values_reproduce_the_branch_outputs(tiny_model, size):
    """The recomputed weights, applied to the layer's values and projections, give the outputs
    the model computed on its fused (SDPA) path: the maps are the real attention."""
    recs = _run(tiny_model, size, attn=False)  # the fast path, as the command runs it
    for i, rec in recs.items():
        layer = tiny_model.hilo_layers()[i][1]
        qk = _qk(tiny_model, size, i, rec)
        full = full_matrices(qk, chunk_size=4)
        g = qk.geometry
        H, W = g.grid
        Hp, Wp = g.padded
        s = g.window_size
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
    s, t = g.window_size, g.stride
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
        if g.h_heads:
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
            bound = (g.window_size - 1) * math.sqrt(2) * g.stride
            assert bound == pytest.approx(g.hifi_max_distance) and bound < g.window_diagonal
            assert np.all(summ.hifi.mean_distance <= bound + 1e-9)
            assert np.all(summ.hifi.mean_distance > 0)
            H, W = g.grid
            for m in query_maps(qk, [(r, c) for r in range(H) for c in range(W)]):
                assert np.all(query_map_distances(g, m)[:g.h_heads] <= bound + 1e-6)


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
    g = qk.geometry  # grid 4x4, s = 2: pooled 2x2, stride 16
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
        assert [c.branch for c in head_columns(qk.geometry, "all")] == ["hifi"] * 3
    else:
        assert summ.hifi is None and m.hifi is None and summ.lofi.mean_distance.shape == (2,)
    assert query_map_distances(qk.geometry, m).shape == (2,)


# -- heads and budgets --------------------------------------------------------------------------


def test_head_columns(tiny_model):
    g = layer_geometry(tiny_model, 0, (64, 64))  # 1 Hi-Fi + 1 Lo-Fi head
    assert [c.heads for c in head_columns(g, "all")] == [(0,), (1,)]
    assert [(c.branch, c.heads) for c in head_columns(g, "mean")] == [("hifi", (0,)),
                                                                       ("lofi", (1,))]
    msa = layer_geometry(tiny_model, 2, (64, 64))  # 4 MSA heads
    cols = head_columns(msa, "all")
    assert [c.heads for c in cols] == [(0,), (1,), (2,), (3,), (0, 1, 2, 3)]
    assert cols[-1].label.startswith("MSA mean")
    assert [c.heads for c in head_columns(msa, [1, 3])] == [(1,), (3,)]
    with pytest.raises(ValueError, match="head 2 does not exist in layer 0"):
        head_columns(g, [2])
    lofi = np.arange(4 * 3).reshape(4, 3, 1).astype(float)
    np.testing.assert_allclose(HeadColumn("m", "lofi", (1, 3)).select(msa, None, lofi),
                               (lofi[1] + lofi[3]) / 2)


def test_raw_budget_counts_the_full_matrices(tiny_model):
    size = (88, 72)
    recs = _run(tiny_model, size)
    total = 0
    for i, rec in recs.items():
        qk = _qk(tiny_model, size, i, rec)
        full = full_matrices(qk)
        assert raw_nbytes(qk.geometry) == sum(a.nbytes for a in full.values())
        total += raw_nbytes(qk.geometry)
    assert raw_budget(tiny_model, [0, 1, 2], size, total, 72).fits
    tight = raw_budget(tiny_model, [0, 1, 2], (512, 512), 20_000, 512)
    assert not tight.fits and tight.needed > 20_000
    r = tight.fitting_resolution
    assert r is not None and r % 32 == 0

    def need(res):
        return sum(raw_nbytes(layer_geometry(tiny_model, i, (res, res))) for i in range(3))

    assert need(r) <= 20_000 < need(r + 32)
