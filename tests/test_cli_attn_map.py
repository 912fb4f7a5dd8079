"""`hilo attn-map` end to end on the tiny checkpoint (in process): files, JSON, figure data, bad
input as one line before any work."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from hilocli.output import RECORD_KEYS
from tests.conftest import SAMPLES, TINY_CKPT, assert_one_line_error, hilo, strict_json


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A 120 x 90 textured RGB image (not square: the crop matters)."""
    from PIL import Image

    y, x = np.mgrid[0:90, 0:120]
    base = 127 + 100 * np.sin(x / 4.0) * np.cos(y / 7.0)
    rgb = np.stack([base, base[::-1], base[:, ::-1]], -1).clip(0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("img") / "photo.png"
    Image.fromarray(rgb).save(path)
    return path


def test_end_to_end_files_json_and_figure_data(photo, tmp_path, monkeypatch):
    import hilocli.attn_map.figures as figures

    seen: list = []
    real = figures.layer_figure

    def spy(*args, **kwargs):
        fig, plotted = real(*args, **kwargs)
        seen.append(plotted)
        return fig, plotted

    monkeypatch.setattr(figures, "layer_figure", spy)
    out = tmp_path / "out"
    res = hilo(
        "attn-map",
        photo,
        "--checkpoint",
        TINY_CKPT,
        "--resolution",
        64,
        "--out",
        out,
        "--json",
        "--query",
        "60,45",
        "--query",
        "95.5,20",
        "--save-raw",
        "--layer",
        "all",
        "--detail",
    )
    assert res.returncode == 0, res.stderr
    record = strict_json(res.stdout)
    assert strict_json((out / "attn_map.json").read_text()) == record
    assert set(record) >= set(RECORD_KEYS)
    assert record["command"] == "attn-map" and record["inputs"]["analysed"] == [str(photo)]
    names = (
        "attn_map.png",
        "attn_map_layer0.png",
        "attn_map_layer1.png",
        "attn_map_layer2.png",
        "attn_distance.png",
        "attn_raw.npz",
        "attn_map.json",
    )
    assert sorted(Path(p).name for p in record["files"].values()) == sorted(names)
    for name in names:
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "attn-map.manifest.json").read_text())["files"].keys() == set(names)
    assert record["weights"]["source"] == "file" and record["weights"]["sha256"]
    assert record["environment"]["torch"]
    results = record["results"]
    assert results["image"]["input_size"] == [64, 64] and results["image"]["crop"] is True
    assert [q["source"] for q in results["queries"]] == ["user", "user"]
    # 120 x 90 -> shorter side int(256/224*64) = 73: resized 97 x 73, crop 64 from (16, 4)
    q0 = results["queries"][0]
    assert q0["x_input"] == pytest.approx(60 * 97 / 120 - 16)
    assert q0["y_input"] == pytest.approx(45 * 73 / 90 - 4)
    layers = results["layers"]
    assert [entry["index"] for entry in layers] == [0, 1, 2]
    hilo0, msa = layers[0], layers[2]
    assert hilo0["grid"] == [4, 4] and hilo0["window_size"] == 2 and hilo0["stage"] == 3
    # the token by integers: x_in = 60 * 97 / 120 - 16 = 32.5, y_in = 45 * 73 / 90 - 4 = 32.5
    assert hilo0["queries"][0]["token"] == [
        (45 * 73 - 4 * 90) // (16 * 90),
        (60 * 97 - 16 * 120) // (16 * 120),
    ]
    assert hilo0["hifi"]["num_keys"] == 4 and hilo0["lofi"]["num_keys"] == 4
    assert hilo0["hifi"]["num_queries"] == 16
    assert max(hilo0["hifi"]["mean_distance_px"]) <= hilo0["hifi_max_distance_px"] + 1e-9
    assert hilo0["hifi_max_distance_px"] == pytest.approx(16 * math.sqrt(2))
    assert msa["hifi"] is None and len(msa["lofi"]["mean_distance_px"]) == 4
    assert msa["lofi"]["num_keys"] == 4 and msa["grid"] == [2, 2]
    rec = np.asarray(hilo0["lofi"]["attention_received"])
    np.testing.assert_allclose(rec.sum(axis=(1, 2)), 1.0, rtol=1e-6)
    for entry in layers:
        for b in ("hifi", "lofi"):
            if entry[b] is not None:
                assert all(0 <= e <= 1 + 1e-6 for e in entry[b]["entropy_normalised"])
    # the raw matrices are the full ones, rows summing to 1, and agree with the query maps
    raw = np.load(out / "attn_raw.npz")
    assert raw["layer0_hifi"].shape == (4, 1, 4, 4) and raw["layer0_lofi"].shape == (1, 16, 4)
    assert raw["layer2_lofi"].shape == (4, 4, 4)
    np.testing.assert_allclose(raw["layer1_lofi"].sum(-1), 1.0, atol=1e-5)
    # the figure drew the query maps: column "head 1 Lo-Fi", query 0 = row of the raw matrix
    assert seen[0]["columns"] == ["head 0 Hi-Fi", "head 1 Lo-Fi"]
    r, c = hilo0["queries"][0]["token"]
    np.testing.assert_allclose(
        seen[0]["query_maps"][1][0].ravel(), raw["layer0_lofi"][0, r * 4 + c], atol=1e-6
    )
    np.testing.assert_allclose(seen[0]["received"][1], rec[0], rtol=1e-6)
    assert "attention distance" in res.stderr and "wrote" in res.stderr


def test_defaults_no_crop_and_head_means(photo, tmp_path, unrasterised_figures):
    out = tmp_path / "o"
    res = hilo(
        "attn-map",
        photo,
        "--checkpoint",
        TINY_CKPT,
        "--resolution",
        64,
        "--no-crop",
        "--layer",
        "2",
        "--heads",
        "mean",
        "--out",
        out,
        "--format",
        "svg",
    )
    assert res.returncode == 0, res.stderr
    results = strict_json((out / "attn_map.json").read_text())["results"]
    assert results["image"]["input_size"] == [85, 64]  # 120 x 90 -> 85 x 64, whole image
    assert len(results["queries"]) == 5 and results["queries"][0]["source"] == "default"
    centre = results["queries"][0]
    assert (centre["x_input"], centre["y_input"]) == (42.5, 32.0)
    assert (centre["x"], centre["y"]) == (60.0, 45.0)  # exactly the image centre
    (entry,) = results["layers"]
    assert entry["grid"] == [2, 2]  # 85 x 64: stage 1 22 x 16 -> 11 x 8 -> 5 x 4 -> 2 x 2
    assert [c["heads"] for c in entry["columns"]] == [[0, 1, 2, 3]]
    assert (out / "attn_map.svg").exists() and not (out / "attn_raw.npz").exists()
    assert not (out / "attn_map_layer2.svg").exists()  # per-layer detail only with --detail


def test_undefined_values_are_null_and_listed(photo, tmp_path, unrasterised_figures):
    """At 32 px layer 0 has one pooled Lo-Fi key: normalised entropy is undefined -> null."""
    res = hilo(
        "attn-map",
        photo,
        "--checkpoint",
        TINY_CKPT,
        "--resolution",
        32,
        "--layer",
        "0",
        "--out",
        tmp_path,
        "--json",
    )
    assert res.returncode == 0, res.stderr
    assert "NaN" not in res.stdout
    record = strict_json(res.stdout)
    lofi = record["results"]["layers"][0]["lofi"]
    assert lofi["num_keys"] == 1 and lofi["entropy_normalised"] == [None]
    assert "results.layers[0].lofi.entropy_normalised[0]" in record["undefined"]


@pytest.mark.parametrize(
    "args,code,fragment",
    [
        (["--query", "500,10"], 2, "outside the 120x90 image"),
        (["--query", "nope"], 2, "--query must be X,Y"),
        (["--layer", "3"], 2, "--layer 3 is out of range"),
        (["--heads", "3"], 2, "head 3 does not exist in layer 1"),  # default: 1 and 2
        (["--chunk-size", "0"], 2, "--chunk-size"),
        (["--resolution", "100000"], 2, "--resolution must be 1..8192"),
        (["--resolution", "8"], 2, "each side must be 32..8192 px"),
        (["--random-init"], 2, "conflict"),
        (
            ["--save-raw", "--max-raw-mb", "1", "--resolution", "1024", "--layer", "all"],
            1,
            "--resolution 384 would fit",
        ),
    ],
)
def test_bad_input_is_one_line(photo, tmp_path, args, code, fragment):
    base = ["attn-map", photo, "--checkpoint", TINY_CKPT, "--out", tmp_path / "x"]
    if "--resolution" not in args:
        base += ["--resolution", "64"]
    assert_one_line_error(hilo(*base, *args), code, fragment)
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_a_query_the_crop_removed_names_what_the_model_sees(photo, tmp_path):
    res = hilo(
        "attn-map",
        photo,
        "--checkpoint",
        TINY_CKPT,
        "--resolution",
        64,
        "--query",
        "2,45",
        "--out",
        tmp_path / "x",
    )
    # 120 x 90 at 64: resized 97 x 73, crop (16, 4, 80, 68) -> original x 16*120/97 .. 80*120/97
    x0, x1 = Fraction(16 * 120, 97), Fraction(80 * 120, 97)
    y0, y1 = Fraction(4 * 90, 73), Fraction(68 * 90, 73)
    assert_one_line_error(
        res,
        2,
        "--query 2,45",
        "cropped away",
        f"x {float(x0):.5g}..{float(x1):.5g}, y {float(y0):.5g}..{float(y1):.5g}",
        "--no-crop",
    )
    assert not (tmp_path / "x").exists()


def test_the_old_readme_example_is_a_usage_error(tmp_path):
    """`--query 60,60` on chelsea.jpg (451 x 300) is cropped away: exit 2, not a wrong map."""
    res = hilo(
        "attn-map",
        SAMPLES / "chelsea.jpg",
        "--checkpoint",
        TINY_CKPT,
        "--layer",
        "0",
        "--query",
        "220,150",
        "--query",
        "60,60",
        "--resolution",
        64,
        "--out",
        tmp_path,
    )
    assert_one_line_error(res, 2, "--query 60,60", "cropped away: the model sees x 91.0")


def test_out_is_checked_before_any_work(photo, tmp_path, monkeypatch):
    from hilocli.weights import WeightsRequest

    def no_work(*args, **kwargs):
        raise AssertionError("weights loaded before --out was checked")

    monkeypatch.setattr(WeightsRequest, "load", no_work)
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    res = hilo("attn-map", photo, "--checkpoint", TINY_CKPT, "--out", blocker)
    assert_one_line_error(res, 2, "--out", "exists and is not a folder")
    assert blocker.read_text() == "keep me"
    res = hilo(
        "attn-map", tmp_path / "missing.png", "--checkpoint", TINY_CKPT, "--out", tmp_path / "o"
    )
    assert_one_line_error(res, 1, "missing.png")
