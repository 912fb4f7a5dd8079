"""`hilo flops` end to end, in a subprocess as a user runs it."""

from __future__ import annotations

import json

import pytest

from tests.conftest import assert_one_line_error, run_hilo


def _json(proc) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_default_litv2_s_reproduces_published(manifest):
    d = _json(run_hilo("flops", "--json"))
    assert d["model"] == "litv2_s" and d["input"] == {"height": 224, "width": 224}
    assert d["macs"] == manifest["litv2_s"]["official_macs"]
    assert d["flops"] == 2 * d["macs"]
    assert d["params"] == manifest["litv2_s"]["num_params"]
    assert d["convention"]["name"] == "authors"
    assert [s["grid"] for s in d["stages"]] == [[56, 56], [28, 28], [14, 14], [7, 7]]
    att = {r["name"]: r for r in d["attention"]["rows"]}
    assert d["attention"]["tokens"] == [14, 14] and d["attention"]["dim"] == 384
    assert att["HiLo"]["extra"]["h_heads"] == 2 and att["HiLo"]["extra"]["l_heads"] == 10
    assert sum(r["macs"] for r in d["rows"]) == d["macs"]


def test_attention_options_and_tables():
    proc = run_hilo("flops", "--model", "litv2_b_384", "--tokens", "14x14", "--dim", "768",
                    "--heads", "12", "--json")
    d = _json(proc)
    assert d["input"] == {"height": 384, "width": 384}  # the weights' training size
    att = {r["name"]: r["macs"] for r in d["attention"]["rows"]}
    assert att == {"MSA": 521_428_992, "SRA": 419_559_168, "Window": 477_173_760,
                   "HiLo": 298_296_320}
    assert "one attention layer" in proc.stderr and "MACs" in proc.stderr


def test_alpha_window_nonsquare_and_count():
    d = _json(run_hilo("flops", "--height", "200", "--width", "328", "--alpha", "0.5",
                       "--window", "4", "--count", "--json"))
    assert d["config"]["alpha"] == 0.5 and d["config"]["local_ws"] == [0, 0, 4, 1]
    assert d["stages"][2]["grid"] == [12, 20] and d["stages"][2]["attn_grid"] == [12, 20]
    assert d["counted"]["all_match"] is True
    assert d["counted"]["total_counted_flops"] == d["counted"]["total_analytic_product_flops"]
    assert any("LayerNorm" in s for s in d["counted"]["not_counted"])


def test_sweep_writes_figure(tmp_path):
    d = _json(run_hilo("flops", "--sweep", "224,320", "--out", tmp_path, "--json"))
    assert [p["resolution"] for p in d["sweep"]] == [224, 320]
    assert d["sweep"][1]["model_macs"] > d["sweep"][0]["model_macs"]
    fig = tmp_path / "flops_sweep_litv2_s.png"
    assert fig.exists() and fig.stat().st_size > 10_000 and d["figure"] == str(fig)


def test_checkpoint_architecture_and_benchmark(tiny_ckpt_path, tmp_path):
    d = _json(run_hilo("flops", "--checkpoint", tiny_ckpt_path, "--resolution", "64",
                       "--benchmark", "--device", "cpu", "--repeats", "2", "--warmup", "1",
                       "--threads", "1", "--json"))
    assert d["config"]["embed_dim"] == 16 and d["provenance"]["source"] == "file"
    res = d["benchmark"]["results"]
    assert [r["case"]["name"] for r in res][:4] == ["MSA", "SRA", "Window", "HiLo"]
    assert res[4]["case"]["kind"] == "model"
    assert all(r["status"] == "ok" and r["img_per_s"] > 0 for r in res)
    assert all(r["threads"] == 1 and r["case"]["dtype"] == "float32" for r in res)
    assert d["benchmark"]["environment"]["torch"]


@pytest.mark.parametrize("args,fragment", [
    (["--resolution", "0"], "positive"),
    (["--resolution", "-5"], "positive"),
    (["--resolution", "16"], "smallest"),
    (["--height", "224"], "together"),
    (["--resolution", "224", "--width", "100"], "not both"),
    (["--sweep", "224,abc"], "--sweep"),
    (["--sweep", "224,8"], "--sweep entry 8"),
    (["--alpha", "1.5"], "--alpha"),
    (["--tokens", "14by14", "--dim", "64", "--heads", "2"], "--tokens"),
    (["--dim", "100", "--heads", "12"], "multiple"),
    (["--model", "nope"], "unknown model"),
])
def test_bad_input_exits_2(args, fragment):
    assert_one_line_error(run_hilo("flops", *args), 2, fragment)
