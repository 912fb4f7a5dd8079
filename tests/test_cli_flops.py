"""`hilo flops` through the CLI, in process (one end-to-end benchmark run is marked slow)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hilocli.output import RECORD_KEYS
from tests.conftest import assert_one_line_error, hilo, strict_json


def _record(res) -> dict:
    """The run record on stdout, parsed strictly (no NaN/Infinity tokens)."""
    assert res.returncode == 0, res.stderr
    return strict_json(res.stdout)


def test_default_litv2_s_reproduces_published(manifest):
    rec = _record(hilo("flops", "--json"))
    assert list(rec) == list(RECORD_KEYS)
    assert rec["command"] == "flops" and rec["files"] == {} and rec["undefined"] == []
    d = rec["results"]
    assert d["model"] == "litv2_s" and d["input"] == {"height": 224, "width": 224}
    assert d["macs"] == manifest["litv2_s"]["official_macs"]
    assert d["flops"] == 2 * d["macs"]
    assert d["params"] == manifest["litv2_s"]["num_params"]
    assert d["convention"]["name"] == "authors"
    assert [s["grid"] for s in d["stages"]] == [[56, 56], [28, 28], [14, 14], [7, 7]]
    att = {r["name"]: r for r in d["attention"]["rows"]}
    assert d["attention"]["tokens"] == [14, 14] and d["attention"]["dim"] == 384
    assert att["HiLo"]["extra"]["hifi_heads"] == 2 and att["HiLo"]["extra"]["lofi_heads"] == 10
    assert sum(r["macs"] for r in d["rows"]) == d["macs"]


def test_weights_block_says_architecture_only():
    rec = _record(hilo("flops", "--model", "litv2_m", "--json"))
    assert rec["weights"]["source"] == "architecture only"
    assert rec["weights"]["variant"] == "litv2_m"
    assert "never uses weight values" in rec["weights"]["note"]
    assert "provenance" not in json.dumps(rec)
    assert rec["results"]["macs"] == analytic_macs("litv2_m", 224)


def analytic_macs(name: str, res: int) -> int:
    from hilocli.flops.analytic import model_cost
    from hilocli.models import get_variant

    return model_cost(get_variant(name).cfg, res, res).macs


def test_analytic_run_does_not_import_torch():
    """The command's own path (options -> run -> tables) stays torch-free without --count,
    --benchmark or --checkpoint. (That the other commands do not import torch at start-up is
    tested with `hilo --help`.)"""
    code = (
        "import sys, typer; from hilocli.commands.flops import flops; "
        "app = typer.Typer(); app.command()(flops); "
        "app(['--resolution', '1024'], standalone_mode=False); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "one attention layer" in proc.stderr and "96.4 G" in proc.stderr


def test_attention_options_and_tables():
    res = hilo(
        "flops",
        "--model",
        "litv2_b_384",
        "--tokens",
        "14x14",
        "--dim",
        "768",
        "--heads",
        "12",
        "--json",
    )
    d = _record(res)["results"]
    assert d["input"] == {"height": 384, "width": 384}  # the weights' training size
    att = {r["name"]: r["macs"] for r in d["attention"]["rows"]}
    assert att == {
        "MSA": 521_428_992,
        "SRA": 419_559_168,
        "Window": 477_173_760,
        "HiLo": 298_296_320,
    }
    assert "one attention layer" in res.stderr and "521,428,992" in res.stderr


def test_alpha_window_nonsquare_and_count():
    d = _record(
        hilo(
            "flops",
            "--height",
            "200",
            "--width",
            "328",
            "--alpha",
            "0.5",
            "--window",
            "4",
            "--count",
            "--json",
        )
    )["results"]
    assert d["config"]["alpha"] == 0.5 and d["config"]["local_ws"] == [0, 0, 4, 1]
    assert d["stages"][2]["grid"] == [12, 20] and d["stages"][2]["attn_grid"] == [12, 20]
    assert d["counted"]["all_match"] is True
    assert d["counted"]["total_counted_flops"] == d["counted"]["total_analytic_product_flops"]
    assert any("LayerNorm" in s for s in d["counted"]["not_counted"])


def test_sweep_writes_figure_and_record(tmp_path):
    rec = _record(hilo("flops", "--sweep", "224,320", "--out", tmp_path, "--json"))
    d = rec["results"]
    assert [p["resolution"] for p in d["sweep"]] == [224, 320]
    assert d["sweep"][0]["model_macs"] == 3_734_401_596
    assert d["sweep"][1]["model_macs"] > d["sweep"][0]["model_macs"]
    fig = tmp_path / "flops_sweep_litv2_s.png"
    assert rec["files"] == {"figure": str(fig), "json": str(tmp_path / "flops.json")}
    assert fig.stat().st_size > 10_000
    assert json.loads((tmp_path / "flops.json").read_text())["results"] == d
    assert set(json.loads((tmp_path / "flops.manifest.json").read_text())["files"]) == {
        fig.name,
        "flops.json",
    }


def test_out_is_checked_before_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(hilo("flops", "--sweep", "224", "--out", blocker), 2, "not a folder")
    assert hilo("flops", "--out", blocker).returncode == 0  # nothing written without --sweep


def test_checkpoint_gives_architecture_and_weights_block(tiny_ckpt_path):
    import hashlib

    rec = _record(hilo("flops", "--checkpoint", tiny_ckpt_path, "--resolution", "64", "--json"))
    assert rec["results"]["config"]["embed_dim"] == 16
    w = rec["weights"]
    assert (
        w["source"] == "file"
        and w["sha256"] == hashlib.sha256(tiny_ckpt_path.read_bytes()).hexdigest()
    )
    assert "never uses weight values" in w["note"]


def test_benchmark_in_process_through_run(tiny_ckpt_path, monkeypatch):
    """The benchmark path of `run` (cases in this process: fast), checked field by field. The
    matmul peak (seconds of large matmuls) is a stand-in, 80 then 100 GFLOP/s: the MFU arithmetic
    (against the higher of the runs before and after the cases) is what is checked."""
    import importlib

    from hilocli.flops import FlopsRequest, run

    flops_run = importlib.import_module("hilocli.flops.run")  # the module (`run` is shadowed)
    from hilocli.flops.bench import UNSTABLE_SPREAD

    peaks = iter([80.0, 100.0])
    monkeypatch.setattr(flops_run, "matmul_peak_at", lambda device, dtype, threads: next(peaks))
    lines = []
    result = run(
        FlopsRequest(
            checkpoint=tiny_ckpt_path,
            resolution=32,
            benchmark=True,
            device="cpu",
            repeats=5,
            warmup=1,
            threads=1,
            isolate=False,
        ),
        progress=lines.append,
    )
    res = result.bench
    assert [r.case.name for r in res][:4] == ["MSA", "SRA", "Window", "HiLo"]
    assert res[4].case.kind == "model" and len(lines) == 5
    for r in res:
        assert r.status == "ok" and r.img_per_s > 0 and len(r.seconds) == 5
        assert r.unstable == (r.spread > UNSTABLE_SPREAD) and r.warmup_runs >= 1
        assert r.case.dtype == "float32"  # --dtype auto on the CPU
    rec = result.to_record().to_dict()
    assert rec["settings"]["dtype"] == "float32" and rec["settings"]["dtype_requested"] == "auto"
    bench = rec["results"]["benchmark"]
    assert bench["matmul_peak_gflop_per_s"] == {"float32": 100.0}
    assert bench["matmul_peak_runs_gflop_per_s"] == {"float32": [80.0, 100.0]}
    assert bench["matmul_peak_moved"] == pytest.approx(0.2)
    for row in rec["results"]["benchmark"]["results"]:
        assert row["mfu"] == pytest.approx(row["gflop_per_s"] / 100.0)
    assert rec["results"]["benchmark"]["unstable_above_spread"] == UNSTABLE_SPREAD
    assert len(rec["results"]["benchmark"]["load_average"]) == 2
    assert rec["results"]["benchmark"]["busy"] is result.busy
    assert rec["environment"]["torch"] and rec["weights"]["source"] == "file"


@pytest.mark.slow
def test_a_case_runs_isolated_in_its_own_process():
    """The isolation --benchmark uses on CPU: one case in a fresh Python process, its result
    parsed back (one small HiLo layer keeps this to one interpreter start)."""
    from hilocli.flops.bench import BenchCase
    from hilocli.flops.runner import run_case_isolated

    case = BenchCase(
        kind="attention",
        name="HiLo",
        height=8,
        width=8,
        dim=64,
        num_heads=2,
        threads=1,
        warmup=1,
        repeats=5,
    )
    res = run_case_isolated(case, timeout=120)
    assert res.status == "ok", res.status
    assert res.img_per_s > 0 and res.threads == 1 and isinstance(res.unstable, bool)
    assert res.case == case


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--resolution", "100000"], "8192 px"),
        (["--resolution", "0"], "out of range"),
        (["--resolution", "16"], "32..8192 px"),
        (["--height", "224"], "together"),
        (["--resolution", "224", "--width", "100"], "give one or the other"),
        (["--sweep", "224,abc"], "--sweep"),
        (["--sweep", "224,8"], "--sweep entry 8"),
        (["--alpha", "1.5"], "--alpha"),
        (["--batch-size", "0"], "--batch-size"),
        (["--repeats", "2"], "--repeats"),
        (["--threads", "0"], "--threads"),
        (["--tokens", "14by14", "--dim", "64", "--heads", "2"], "--tokens"),
        (["--tokens", "100000x5"], "2..8192 tokens"),
        (["--dim", "100", "--heads", "12"], "multiple"),
        (["--dim", "96"], "together"),
        (["--model", "nope"], "unknown model"),
        (["--dtype", "float16"], "float16 needs CUDA"),  # no model runs: auto counts as CPU
        (["--dtype", "float16", "--benchmark", "--device", "cpu"], "float16 needs CUDA"),
        (["--dtype", "float64"], "--dtype"),
    ],
)
def test_bad_input_exits_2(args, fragment):
    assert_one_line_error(hilo("flops", *args), 2, fragment)
