"""`hilo attn-map` end to end on the tiny checkpoint: files, JSON, figure data, bad input."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_CKPT, assert_one_line_error, run_hilo


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


def _main(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """The real entry point in-process (errors become one line and an exit code)."""
    from hilocli.cli import main

    monkeypatch.setattr(sys, "argv", ["hilo", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_end_to_end_files_json_and_figure_data(photo, tmp_path, monkeypatch, capsys):
    import hilocli.plotting_attention as plotting

    seen: list = []
    real = plotting.layer_figure

    def spy(*args, **kwargs):
        fig, plotted = real(*args, **kwargs)
        seen.append(plotted)
        return fig, plotted

    monkeypatch.setattr(plotting, "layer_figure", spy)
    out = tmp_path / "out"
    code, stdout, stderr = _main(monkeypatch, capsys, "attn-map", photo, "--checkpoint",
                                 TINY_CKPT, "--resolution", 64, "--out", out, "--json",
                                 "--query", "60,45", "--query", "95.5,20", "--save-raw")
    assert code in (0, None), stderr
    payload = json.loads(stdout)
    assert json.loads((out / "attn_map.json").read_text()) == payload
    for name in ("attn_map_layer0.png", "attn_map_layer1.png", "attn_map_layer2.png",
                 "attn_distance.png", "attn_raw.npz"):
        assert (out / name).stat().st_size > 0
    assert payload["weights"]["source"] == "file" and payload["weights"]["sha256"]
    assert payload["environment"]["torch"]
    assert payload["image"]["input_size"] == [64, 64] and payload["image"]["crop"] is True
    assert [q["source"] for q in payload["queries"]] == ["user", "user"]
    # 120 x 90 -> shorter side int(256/224*64) = 73: resized 97 x 73, crop 64 from (16, 4)
    q0 = payload["queries"][0]
    assert q0["x_input"] == pytest.approx(60 * 97 / 120 - 16)
    assert q0["y_input"] == pytest.approx(45 * 73 / 90 - 4)
    layers = payload["layers"]
    assert [entry["index"] for entry in layers] == [0, 1, 2]
    hilo0, msa = layers[0], layers[2]
    assert hilo0["grid"] == [4, 4] and hilo0["window_size"] == 2 and hilo0["stage"] == 3
    assert hilo0["queries"][0]["token"] == [int(q0["y_input"] // 16), int(q0["x_input"] // 16)]
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
    np.testing.assert_allclose(seen[0]["query_maps"][1][0].ravel(),
                               raw["layer0_lofi"][0, r * 4 + c], atol=1e-6)
    np.testing.assert_allclose(seen[0]["received"][1], rec[0], rtol=1e-6)
    assert "attention distance" in stderr and "wrote" in stderr


def test_defaults_no_crop_and_head_means(photo, tmp_path, monkeypatch, capsys):
    out = tmp_path / "o"
    code, _, stderr = _main(monkeypatch, capsys, "attn-map", photo, "--checkpoint", TINY_CKPT,
                            "--resolution", 64, "--no-crop", "--layer", "2", "--heads",
                            "mean", "--out", out, "--format", "svg")
    assert code in (0, None), stderr
    payload = json.loads((out / "attn_map.json").read_text())
    assert payload["image"]["input_size"] == [85, 64]  # 120 x 90 -> 85 x 64, whole image
    assert len(payload["queries"]) == 5 and payload["queries"][0]["source"] == "default"
    centre = payload["queries"][0]
    assert (centre["x_input"], centre["y_input"]) == pytest.approx((42.5, 32.0))
    (entry,) = payload["layers"]
    assert entry["grid"] == [2, 2]  # 85 x 64: stage 1 22 x 16 -> 11 x 8 -> 5 x 4 -> 2 x 2
    assert [c["heads"] for c in entry["columns"]] == [[0, 1, 2, 3]]
    assert (out / "attn_map_layer2.svg").exists() and not (out / "attn_raw.npz").exists()


@pytest.mark.parametrize("args,code,fragment", [
    (["--query", "500,10"], 2, "outside the 120x90 image"),
    (["--query", "2,45"], 2, "cropped away"),
    (["--query", "nope"], 2, "--query must be X,Y"),
    (["--layer", "3"], 2, "--layer 3 is out of range"),
    (["--heads", "3"], 2, "head 3 does not exist in layer 0"),
    (["--chunk-size", "0"], 2, "--chunk-size"),
    (["--save-raw", "--max-raw-mb", "1", "--resolution", "1024"], 1, "--resolution 384 would fit"),
])
def test_bad_input_is_one_line(photo, tmp_path, monkeypatch, capsys, args, code, fragment):
    base = ["attn-map", photo, "--checkpoint", TINY_CKPT, "--out", tmp_path / "x"]
    if "--resolution" not in args:
        base += ["--resolution", "64"]
    got, _, stderr = _main(monkeypatch, capsys, *base, *args)
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert got == code and len(lines) == 1 and lines[0].startswith("hilo: error:"), stderr
    assert fragment in lines[0], lines[0]
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_subprocess_as_a_user_runs_it(photo, tmp_path):
    proc = run_hilo("attn-map", photo, "--checkpoint", TINY_CKPT, "--resolution", 64,
                    "--query", "-3,4", "--out", tmp_path)
    assert_one_line_error(proc, 2, "outside the 120x90 image")
    proc = run_hilo("attn-map", tmp_path / "missing.png", "--checkpoint", TINY_CKPT)
    assert_one_line_error(proc, 1, "missing.png")
