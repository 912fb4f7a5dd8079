"""One HiLo path for every model kind: the commands run the same code on LITv2 and on user models
of every forward signature, report the same numbers where the models compute the same thing, and
the attention each module really computed where they differ (birder's floor pooling)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import hilo

SPEC = "tests/fixtures/user_models.py"
SAME_MATHS = ["tokens_hw_net", "square_tokens_net", "tokens_h_net"]  # one HiLoCore, same weights


def _image(path, w: int, h: int):
    y, x = np.mgrid[0:h, 0:w]
    base = 127 + 100 * np.sin(x / 3.0) * np.cos(y / 5.0)
    rgb = np.stack([base, base[::-1], base[:, ::-1]], -1).clip(0, 255).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def _json(*args):
    res = hilo(*map(str, args), "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _loaded(fn: str):
    from hilocli.weights import WeightsRequest

    return WeightsRequest(model_fn=f"{SPEC}:{fn}").load("cpu")


@pytest.fixture(scope="module")
def odd_photo(tmp_path_factory):
    """112 x 76 px: a 28 x 19 token grid after the stride-4 stem (odd: pad and floor differ)."""
    return _image(tmp_path_factory.mktemp("img") / "odd.png", 112, 76)


def test_attn_map_on_floor_pooling_reports_the_attention_the_module_computed(odd_photo, tmp_path):
    from hilocli.images import load_prepared

    out = tmp_path / "o"
    args = ("attn-map", odd_photo, "--model-fn", f"{SPEC}:floor_net", "--no-crop", "-r", "76")
    rec = _json(*args, "--save-raw", "--layer", "0", "-o", out)
    layer = rec["results"]["layers"][0]
    assert layer["grid"] == [19, 28] and layer["pooling"] == "floor"
    assert layer["pooled_grid"] == [9, 14]  # the last odd row of windows dropped, not padded
    raw = np.load(out / "attn_raw.npz")["layer0_lofi"]
    assert raw.shape == (2, 532, 126)  # the module's (heads, H*W, M), not (2, 560, 140)
    loaded = _loaded("floor_net")
    x = load_prepared(odd_photo, 76, crop=False, preprocess=loaded.preprocess).tensor
    with torch.no_grad():
        loaded.model(x.unsqueeze(0))
    own = loaded.model.layers[0].last_lofi_attn[0].numpy()  # (h, H*W, M) the module computed
    np.testing.assert_allclose(raw, own, atol=1e-6)


@pytest.mark.parametrize("fn,rule", [("tokens_hw_net", "pad"), ("floor_net", "floor")])
def test_capture_learns_each_modules_pooling_rule(fn, rule):
    from hilocli.hilo.capture import capture

    loaded = _loaded(fn)
    x = torch.rand(2, 3, 76, 112)  # 19 x 28 tokens
    with torch.no_grad(), capture(loaded.model, loaded.layers, attn=True) as cap:
        loaded.model(x)
    got = cap.records[0]
    assert got.pooling == rule and got.grid == (19, 28)
    rows = 532 if rule == "floor" else 560
    assert got.lofi_attn.shape == (2, 2, rows, 126 if rule == "floor" else 140)
    if rule == "floor":
        torch.testing.assert_close(got.lofi_attn, loaded.model.layers[0].last_lofi_attn)


def test_a_layer_whose_maths_differ_fails_loudly():
    from hilocli.errors import HiloError
    from hilocli.hilo.capture import capture

    loaded = _loaded("tokens_hw_net")
    object.__setattr__(loaded.layers[0], "scale", 1.0)  # a view that disagrees with the module
    with pytest.raises(HiloError, match="does not reproduce its branch outputs"):
        with torch.no_grad(), capture(loaded.model, loaded.layers, verify=True):
            loaded.model(torch.rand(1, 3, 64, 64))


@pytest.fixture(scope="module")
def square_photo(tmp_path_factory):
    return _image(tmp_path_factory.mktemp("img") / "square.png", 64, 64)


@pytest.fixture(scope="module")
def attn_by_kind(square_photo, tmp_path_factory):
    out = {}
    for fn in [*SAME_MATHS, "floor_net", "map_net"]:
        folder = tmp_path_factory.mktemp(fn)
        args = ("attn-map", square_photo, "--model-fn", f"{SPEC}:{fn}", "-r", "64", "-o", folder)
        out[fn] = _json(*args)["results"]["layers"][0]
    return out


def test_same_maths_same_numbers_across_forward_signatures(attn_by_kind):
    ref = attn_by_kind["tokens_hw_net"]
    for fn in [*SAME_MATHS[1:], "floor_net"]:  # a 16 x 16 grid: floor pooling = pad-then-pool
        for b in ("hifi", "lofi"):
            np.testing.assert_allclose(
                attn_by_kind[fn][b]["mean_distance_px"], ref[b]["mean_distance_px"], rtol=1e-5
            )
    assert attn_by_kind["floor_net"]["pooling"] == "pad"  # the rules coincide; the first is named


def test_map_signature_runs_its_own_input(attn_by_kind):
    got = attn_by_kind["map_net"]  # no LayerNorm before this layer: other inputs, other maps
    assert got["grid"] == [16, 16]
    assert not np.allclose(
        got["lofi"]["mean_distance_px"], attn_by_kind["tokens_hw_net"]["lofi"]["mean_distance_px"]
    )


@pytest.mark.parametrize("fn", [*SAME_MATHS, "map_net", "floor_net"])
def test_info_and_flops_take_every_kind(fn, tmp_path):
    info = _json("info", "--model-fn", f"{SPEC}:{fn}", "-r", "76")["results"]
    (layer,) = info["hilo_layers"]
    assert layer["grid"] == [19, 19] and layer["path"] == "layers.0"
    flops = _json("flops", "--model-fn", f"{SPEC}:{fn}", "-r", "76", "-o", tmp_path)["results"]
    (row,) = flops["hilo_layers"]
    assert row["grid"] == [19, 19]
    # pad-then-pool on 20 x 20 padded tokens: the analytic MACs of the authors' count
    assert row["hifi_macs"] > 0 and row["lofi_macs"] > 0


def test_litv2_is_one_case_of_the_same_path(tiny_ckpt_path):
    from hilocli.weights import WeightsRequest

    loaded = WeightsRequest(checkpoint=tiny_ckpt_path).load("cpu")
    for x in loaded.layers:  # found by structure; the config adds stage, block name, stride
        assert x.info.path == f"{x.info.name}.attn" and x.info.path.startswith(
            f"layers.{x.info.stage}."
        )
        assert x.stride == 4 * 2**x.info.stage
    assert loaded.default_resolution == loaded.config.img_size
    assert loaded.min_input_size == 4 * 2 ** (loaded.config.num_stages - 1)


def test_depth_needs_blocks_a_config_states(square_photo, tmp_path):
    res = hilo("spectrum", str(square_photo), "--model-fn", f"{SPEC}:tokens_hw_net", "--depth",
               "-r", "64", "-o", str(tmp_path / "o"))  # fmt: skip
    assert res.returncode == 2 and "--depth follows every residual block" in res.stderr
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def spectrum_by_kind(square_photo, tmp_path_factory):
    out = {}
    for fn in [*SAME_MATHS, "floor_net"]:
        folder = tmp_path_factory.mktemp(f"s-{fn}")
        args = ("spectrum", square_photo, "--model-fn", f"{SPEC}:{fn}", "-r", "64", "-o", folder)
        out[fn] = _json(*args)["results"]["layers"][0]["branches"]
    return out


def test_spectrum_same_maths_same_numbers_across_forward_signatures(spectrum_by_kind):
    ref = spectrum_by_kind["tokens_hw_net"]
    for fn in [*SAME_MATHS[1:], "floor_net"]:  # 16 x 16 tokens: floor pooling = pad-then-pool
        for b in ("hifi", "lofi", "control"):
            got, want = spectrum_by_kind[fn][b]["median"], ref[b]["median"]
            for key in ("hf_fraction", "hf_fraction_deblocked", "nondc_power"):
                assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-9), (fn, b, key)
