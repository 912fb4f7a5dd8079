"""`hilo info`: the record, the tables, inferred settings, and one-line errors for every kind of bad
checkpoint (in process, through the real CLI entry point `hilocli.cli.run`)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile

import pytest
import torch

from hilocli.output import RECORD_KEYS
from tests.conftest import TINY_CKPT, assert_one_line_error, hilo, run_hilo

TORCH_WORDING = (
    "enforce fail",
    "inline_container",
    "miniz",
    "weights_only",
    "Re-running",
    "torch.load",
    "WeightsUnpickler",
    "PytorchStreamReader",
    "Traceback",
)
RECORD_KEYS = set(RECORD_KEYS)


def test_help_does_not_import_torch():
    code = (
        "import sys; from hilocli.cli import app; "
        "print(any(m in sys.modules for m in ('torch', 'matplotlib', 'scipy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    proc = run_hilo("--help")
    assert proc.returncode == 0
    for cmd in ("info", "spectrum", "attn-map", "flops", "compare"):
        assert cmd in proc.stdout


def test_info_json_on_the_tiny_checkpoint():
    res = hilo("info", "--checkpoint", TINY_CKPT, "--resolution", "64", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert set(data) == RECORD_KEYS and data["command"] == "info"
    results, weights = data["results"], data["weights"]
    sd = torch.load(TINY_CKPT, weights_only=True)["model"]  # parameters = all but BN statistics
    assert results["num_params"] == sum(
        v.numel()
        for k, v in sd.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert weights["source"] == "file" and len(weights["sha256"]) == 64
    assert [s["grid"] for s in results["stages"]] == [[16, 16], [8, 8], [4, 4], [2, 2]]
    layers = results["hilo_layers"]
    assert [(r["index"], r["name"]) for r in layers] == [
        (0, "layers.2.blocks.0"),
        (1, "layers.2.blocks.1"),
        (2, "layers.3.blocks.0"),
    ]
    assert [(r["hifi_heads"], r["lofi_heads"], r["head_dim"]) for r in layers] == [
        (1, 1, 32),
        (1, 1, 32),
        (0, 4, 32),
    ]
    assert layers[0]["hifi_channels"] == [0, 31] and layers[0]["lofi_channels"] == [32, 63]
    # the fixture's alpha is 0.5; the split fixes it only to [0.5, 1.0), and the record says so
    assert results["config"]["alpha"] == 0.5
    alpha = weights["inferred"]["alpha"]
    assert alpha["value"] == 0.5 and alpha["source"] == "tensors"
    assert "alpha in [0.5, 1.0): any value gives this head split" in alpha["ambiguity"]
    assert "--head-dim" in weights["inferred"]["head_dim"]["ambiguity"]


def test_info_table_on_the_tiny_checkpoint_names_what_was_inferred():
    res = hilo("info", "--checkpoint", TINY_CKPT, "--resolution", "64")
    assert res.returncode == 0 and res.stdout == ""
    err = " ".join(res.stderr.split())  # undo the console's line wrapping
    assert "alpha 0.5" in err and "alpha 0.9" not in err
    assert "alpha = 0.5 [tensors]: alpha in [0.5, 1.0)" in err
    assert "head_dim = 32 [assumption]" in err and "pass --head-dim" in err
    assert "layers.2.blocks.1" in err and "0..31" in err and "32..63" in err


def test_info_litv2_s_table_names_layers():
    res = hilo("info", "--model", "litv2_s", "--height", "240", "--width", "320")
    assert res.returncode == 0, res.stderr
    assert "random init" in res.stderr and "inferred" not in res.stderr
    assert "27,844,000 parameters" in res.stderr
    assert "layers.2.blocks.5" in res.stderr and "15x20" in res.stderr


def test_info_list_shows_each_variants_preprocessing():
    res = hilo("info", "--list", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)["results"]["variants"]}
    assert rows["litv2_b_384"]["preprocess"]["mode"] == "resize"
    assert rows["litv2_s"]["preprocess"] == {
        "mode": "crop",
        "interpolation": "bicubic",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }
    table = hilo("info", "--list")
    assert table.returncode == 0 and "litv2_b_384" in table.stderr and "resize" in table.stderr


@pytest.mark.parametrize(
    "args,code,fragment",
    [
        (["--model", "litv2_xxl"], 2, "unknown model"),
        (["--resolution", "0"], 2, "out of range"),
        (["--resolution", "100000"], 2, "each side must be 32..8192 px"),
        (["--model", "litv2_s", "--resolution", "16"], 2, "each side must be 32..8192 px"),
        (["--height", "64"], 2, "--height and --width go together"),
        (["--checkpoint", "/nonexistent/x.pth"], 2, "no such file"),
        (["--checkpoint", TINY_CKPT, "--random-init"], 2, "conflict"),
        (["--checkpoint", TINY_CKPT, "--head-dim", "24"], 2, "--head-dim 24 does not fit"),
        (["--checkpoint", TINY_CKPT, "--window-sizes", "2,1"], 2, "needs 4 entries"),
        (["--window-sizes", "2,1"], 2, "--window-sizes 2,1 does not fit litv2_s"),
        (["--model", "litv2_b", "--head-dim", "16"], 2, "whose heads are 32-dimensional"),
        (["--checkpoint", __file__], 1, "not a PyTorch checkpoint"),
    ],
)
def test_info_bad_input(args, code, fragment):
    assert_one_line_error(hilo("info", *map(str, args)), code, fragment)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_for_but_absent():
    assert_one_line_error(hilo("info", "--device", "cuda"), 1, "CUDA is not available")


def test_offline_pretrained_names_url(tmp_path):
    res = hilo(
        "info",
        "--model",
        "litv2_b",
        "--pretrained",
        env={"TORCH_HOME": str(tmp_path), "HILO_RELEASE_URL": (tmp_path / "x").as_uri()},
    )
    assert_one_line_error(res, 1, "/v1.0/litv2_b.pth", "--checkpoint PATH", "copy the file to")
    assert "--random-init" not in res.stderr  # `hilo compare` refuses it: never suggested


def test_pretrained_download_from_the_command_line(tmp_path, manifest):
    """`--pretrained` fetches the release file (here a local file:// mirror) into the hub cache."""
    (tmp_path / "rel" / "v1.1").mkdir(parents=True)
    shapes = manifest["litv2_s_alpha0.5"]["state_dict"]
    torch.save(
        {"model": {k: torch.zeros(s) for k, s in shapes.items()}},
        tmp_path / "rel" / "v1.1" / "alpha_0.5.pth",
    )
    env = {"TORCH_HOME": str(tmp_path / "th"), "HILO_RELEASE_URL": (tmp_path / "rel").as_uri()}
    res = hilo("info", "--model", "litv2_s_alpha0.5", "--pretrained", "--json", env=env)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    cached = tmp_path / "th" / "hub" / "checkpoints" / "litv2_s_alpha_0.5.pth"
    assert data["weights"]["path"] == str(cached) and cached.exists()
    assert data["weights"]["source"] == "pretrained" and data["weights"]["inferred"] == {}
    assert data["results"]["num_params"] == 27647392
    assert [(s["hifi_heads"], s["lofi_heads"]) for s in data["results"]["stages"]][2] == (6, 6)


# ---------------------------------------------------------------------------------------------
# Every kind of bad checkpoint: exit 1, one line in hilo's words, never torch's
# ---------------------------------------------------------------------------------------------


class _System:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def _bad_file(kind: str, tmp_path, tiny_model):
    """Build a bad checkpoint of `kind` in tmp_path; returns its path."""
    sd = tiny_model.state_dict()
    path = tmp_path / ("bad.safetensors" if kind == "damaged safetensors" else "bad.pth")
    if kind == "empty":
        path.write_bytes(b"")
    elif kind in ("truncated zip", "truncated legacy"):
        torch.save(sd, path, _use_new_zipfile_serialization=kind == "truncated zip")
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "random bytes":
        path.write_bytes(bytes(range(7, 256)) * 40)
    elif kind == "text":
        path.write_text("these are not weights\n")
    elif kind == "plain pickle":
        path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    elif kind == "zip, not torch":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("notes/readme.txt", "hello")
    elif kind == "pickled module":
        torch.save(tiny_model, path)
    elif kind == "hostile":
        torch.save({"model": sd, "x": _System()}, path)
    elif kind == "damaged safetensors":
        from safetensors.torch import save_file

        save_file(dict(sd), path)
        path.write_bytes(path.read_bytes()[:-100])
    elif kind == "not LITv2":
        torch.save(
            {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 64)}, path
        )
    return path


@pytest.mark.parametrize(
    "kind,fragments",
    [
        ("empty", ["is empty (0 bytes)"]),
        ("truncated zip", ["is a truncated or damaged checkpoint: its zip archive is incomplete"]),
        ("truncated legacy", ["is a damaged PyTorch checkpoint (truncated or corrupted)"]),
        (
            "random bytes",
            [
                "is not a PyTorch checkpoint: neither a torch.save zip archive, a legacy "
                "torch pickle, nor safetensors"
            ],
        ),
        ("text", ["is not a PyTorch checkpoint", "(it is a text file)"]),
        ("plain pickle", ["is a plain Python pickle, not a PyTorch checkpoint"]),
        ("zip, not torch", ["is a zip archive but not a PyTorch checkpoint", "notes/readme.txt"]),
        (
            "pickled module",
            [
                "holds a whole pickled model object (hilocli.models.litv2.LITv2), not a state dict",
                "refused it and ran nothing",
                "model.state_dict()",
            ],
        ),
        (
            "hostile",
            [
                "refusing to load",
                "references posix.system (that is, os.system)",
                "it was refused and nothing in it was run",
            ],
        ),
        ("damaged safetensors", ["is a damaged safetensors file"]),
        ("not LITv2", ["not a LITv2 checkpoint: no patch_embed.proj.weight"]),
    ],
)
def test_every_bad_checkpoint_is_one_line_in_hilos_words(kind, fragments, tmp_path, tiny_model):
    path = _bad_file(kind, tmp_path, tiny_model)
    res = hilo("info", "--checkpoint", path)
    assert_one_line_error(res, 1, str(path), *fragments)
    assert not [w for w in TORCH_WORDING if w in res.stderr], res.stderr


def test_safetensors_bytes_under_a_pth_name_load(tmp_path, tiny_model):
    from safetensors.torch import save_file

    path = tmp_path / "weights.pth"
    save_file(dict(tiny_model.state_dict()), path)
    res = hilo("info", "--checkpoint", path, "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["weights"]["format"] == "safetensors" and data["results"]["config"]["alpha"] == 0.5
