"""`hilo info` and the CLI's contract: instant help, one-line errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import TINY_CKPT, assert_one_line_error, run_hilo


def test_help_does_not_import_torch():
    code = ("import sys; from hilocli.cli import app; "
            "print(any(m in sys.modules for m in ('torch', 'matplotlib', 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    proc = run_hilo("--help")
    assert proc.returncode == 0
    for cmd in ("info", "spectrum", "attn-map", "flops"):
        assert cmd in proc.stdout


def test_info_json_on_the_tiny_checkpoint():
    proc = run_hilo("info", "--checkpoint", TINY_CKPT, "--resolution", "64", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    sd = torch.load(TINY_CKPT, weights_only=True)["model"]  # parameters = all but BN statistics
    assert data["num_params"] == sum(v.numel() for k, v in sd.items()
                                     if not k.endswith(("running_mean", "running_var",
                                                        "num_batches_tracked")))
    assert data["weights"]["source"] == "file" and len(data["weights"]["sha256"]) == 64
    assert [s["grid"] for s in data["stages"]] == [[16, 16], [8, 8], [4, 4], [2, 2]]
    assert [(r["index"], r["name"]) for r in data["hilo_layers"]] == [
        (0, "layers.2.blocks.0"), (1, "layers.2.blocks.1"), (2, "layers.3.blocks.0")]
    assert data["hilo_layers"][0]["hifi_channels"] == [0, 31]
    assert data["hilo_layers"][0]["lofi_channels"] == [32, 63]


def test_info_litv2_s_table_names_layers():
    proc = run_hilo("info", "--model", "litv2_s", "--height", "240", "--width", "320")
    assert proc.returncode == 0, proc.stderr
    assert "random init" in proc.stderr
    assert "27,844,000 parameters" in proc.stderr
    assert "layers.2.blocks.5" in proc.stderr and "15x20" in proc.stderr


@pytest.mark.parametrize("args,code,fragment", [
    (["info", "--model", "litv2_xxl"], 2, "unknown model"),
    (["info", "--resolution", "0"], 2, "positive"),
    (["info", "--resolution", "16"], 2, "minimum"),
    (["info", "--checkpoint", "/nonexistent/x.pth"], 1, "not found"),
    (["info", "--checkpoint", __file__], 1, "not a readable"),
])
def test_info_bad_input(args, code, fragment):
    assert_one_line_error(run_hilo(*args), code, fragment)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_for_but_absent():
    assert_one_line_error(run_hilo("info", "--device", "cuda"), 1, "CUDA is not available")


def test_offline_pretrained_names_url(tmp_path):
    proc = run_hilo("info", "--model", "litv2_b", "--pretrained",
                    env={"TORCH_HOME": str(tmp_path), "HILO_RELEASE_URL": (tmp_path / "x").as_uri()})
    assert_one_line_error(proc, 1, "/v1.0/litv2_b.pth", "--checkpoint PATH")


def test_pretrained_download_from_the_command_line(tmp_path):
    """`--pretrained` fetches the release file (here a local file:// mirror) into the hub cache."""
    from hilocli.models import create_model

    (tmp_path / "rel" / "v1.1").mkdir(parents=True)
    torch.manual_seed(7)
    weights = create_model("litv2_s_alpha0.5").state_dict()
    torch.save({"model": weights}, tmp_path / "rel" / "v1.1" / "alpha_0.5.pth")
    env = {"TORCH_HOME": str(tmp_path / "th"), "HILO_RELEASE_URL": (tmp_path / "rel").as_uri()}
    proc = run_hilo("info", "--model", "litv2_s_alpha0.5", "--pretrained", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    cached = tmp_path / "th" / "hub" / "checkpoints" / "litv2_s_alpha_0.5.pth"
    assert data["weights"]["path"] == str(cached) and cached.exists()
    assert data["weights"]["source"] == "pretrained" and data["num_params"] == 27647392
    assert [(s["hifi_heads"], s["lofi_heads"]) for s in data["stages"]][2] == (6, 6)
