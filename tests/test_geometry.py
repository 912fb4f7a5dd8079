"""Grid geometry: one home, exact arithmetic, one wording for input-size errors."""

from __future__ import annotations

from fractions import Fraction

import pytest

from hilocli.errors import UsageError
from hilocli.models import create_model, get_variant
from hilocli.models.geometry import (
    MAX_INPUT_SIDE,
    check_input_size,
    grid_sizes,
    layer_geometry,
    min_input_size,
    padded_grid,
    pixel_to_token,
    pooled_grid,
)
from tests.conftest import hilo_layers


def test_grids_against_the_model_run(tiny_model):
    """The predicted stage grids equal the shapes the model really produces."""
    import torch

    for h, w in [(64, 64), (72, 88), (100, 36), (33, 47)]:
        with torch.no_grad():
            feats = tiny_model.forward_stages(torch.zeros(1, 3, h, w))
        assert grid_sizes(tiny_model.cfg, h, w) == [tuple(f.shape[2:]) for f in feats]
    assert min_input_size(tiny_model.cfg) == 32


def test_padding_and_pooling_known_values():
    assert padded_grid((7, 5), 2) == (8, 6) and pooled_grid((7, 5), 2) == (4, 3)
    assert padded_grid((7, 5), 1) == (7, 5) and pooled_grid((7, 5), 1) == (7, 5)
    assert padded_grid((14, 14), 2) == (14, 14) and pooled_grid((14, 14), 2) == (7, 7)
    assert pooled_grid((9, 9), 3) == (3, 3) and pooled_grid((10, 9), 3) == (4, 3)


def test_pixel_to_token_is_exact_at_many_sizes():
    """Against an independent integer computation: pixel (px, py) at stride t lies in token
    (py // t, px // t); a position given as a float that is exactly an integer maps the same way,
    and rational positions (x = n / d) floor exactly."""
    for stage, t in enumerate((4, 8, 16, 32)):
        for size in (32, 96, 100, 448):
            H = W = size // 4 >> stage
            if H < 1:
                continue
            for p in range(0, size, 7):
                expect = (min(p // t, H - 1), min(p // t, W - 1))
                assert pixel_to_token(p, p, stage, (H, W)) == expect
                assert pixel_to_token(float(p), float(p), stage, (H, W)) == expect
    # 336 / 16 = 21 exactly: a rational position lands on token 21, not 20.
    assert pixel_to_token(Fraction(336 * 448, 448), Fraction(0), 2, (28, 28)) == (0, 21)
    assert pixel_to_token(Fraction(335999, 1000), 0, 2, (28, 28)) == (0, 20)
    with pytest.raises(ValueError):
        pixel_to_token(-1, 0, 0, (4, 4))


def test_one_wording_for_input_sizes():
    check_input_size(32, 4000, smallest=32)
    for h, w in [(31, 64), (64, 16), (MAX_INPUT_SIDE + 1, 64), (100000, 100000)]:
        with pytest.raises(UsageError, match=r"input size .* is out of range: each side must be"):
            check_input_size(h, w, smallest=32)


def test_layer_info_and_geometry_of_litv2_s():
    model = create_model(get_variant("litv2_s").cfg)
    found = hilo_layers(model)
    layers = [layer.info for layer in found]
    assert len(layers) == 8  # stage 3 (6 HiLo blocks) and stage 4 (2 MSA blocks)
    first, last = layers[0], layers[-1]
    # Published split at alpha 0.9: stage 3 has 12 heads -> 10 Lo-Fi, 2 Hi-Fi; stage 4 is MSA.
    assert (first.name, first.stage, first.window_size) == ("layers.2.blocks.0", 2, 2)
    assert (first.hifi_heads, first.lofi_heads, first.head_dim) == (2, 10, 32)
    assert (last.window_size, last.hifi_heads, last.lofi_heads) == (1, 0, 24)
    assert found[0].module is model.layers[2].blocks[0].attn
    g = layer_geometry(first, model.cfg, (224, 224))
    assert (g.grid, g.padded, g.pooled, g.stride) == ((14, 14), (14, 14), (7, 7), 16)
    assert g.num_lofi_keys == 49 and g.num_hifi_keys == 4
    assert g.to_dict()["hifi_heads"] == 2 and g.to_dict()["stage"] == 3
