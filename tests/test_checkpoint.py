"""Checkpoint layouts, safety, architecture inference and the download path."""

from __future__ import annotations

import http.server
import os
import pickle
import subprocess
import sys
import textwrap
import threading
from functools import partial
from pathlib import Path

import pytest
import torch

from hilocli.checkpoint import (Provenance, infer_config, load_model, read_checkpoint,
                                sha256sum)
from hilocli.errors import HiloError, UsageError
from hilocli.models import VARIANTS, create_model, filter_state_dict
from tests.conftest import TINY_CKPT


@pytest.fixture(scope="module")
def tiny_sd():
    return torch.load(TINY_CKPT, weights_only=True)["model"]


def _same_weights(model, sd) -> bool:
    own = model.state_dict()
    return all(torch.equal(own[k], v) for k, v in sd.items())


def test_tiny_checkpoint_infers_its_architecture(tiny_sd, tiny_cfg):
    loaded = load_model(checkpoint=TINY_CKPT)
    cfg = loaded.model.cfg
    assert (cfg.embed_dim, cfg.depths, cfg.local_ws, cfg.num_classes) == (16, (1, 1, 2, 1),
                                                                          (0, 0, 2, 1), 10)
    assert cfg.num_heads[2:] == tiny_cfg.num_heads[2:]
    assert [(a.h_heads, a.l_heads) for _, a in loaded.model.hilo_layers()] == [(1, 1), (1, 1),
                                                                               (0, 4)]
    assert _same_weights(loaded.model, tiny_sd)
    assert loaded.provenance.source == "file"
    assert loaded.provenance.sha256 == sha256sum(TINY_CKPT)
    assert loaded.provenance.sha256 in loaded.provenance.describe()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_inference_recovers_every_released_variant(name, manifest):
    sd = {k: torch.empty(shape, device="meta") for k, shape in manifest[name]["state_dict"].items()}
    cfg = infer_config(sd)
    want = VARIANTS[name].cfg
    assert (cfg.embed_dim, cfg.depths, cfg.num_heads, cfg.local_ws) == (
        want.embed_dim, want.depths, want.num_heads, want.local_ws)
    with torch.device("meta"):
        built = create_model(cfg)
    assert {k: list(v.shape) for k, v in built.state_dict().items()} == manifest[name]["state_dict"]


def _layouts(sd):
    neck = {"neck.lateral_convs.0.conv.weight": torch.zeros(3, 3), "decode_head.conv.weight":
            torch.zeros(2)}
    backbone = {f"backbone.{k}": v for k, v in sd.items() if not k.startswith(("head.", "norm."))}
    backbone.update({f"backbone.norm{i}.{p}": torch.ones(16 * 2**i) for i in (1, 2, 3)
                     for p in ("weight", "bias")})
    return {
        "bare": sd,
        "model": {"model": sd, "epoch": 3},
        "state_dict": {"state_dict": sd},
        "ddp": {"model": {f"module.{k}": v for k, v in sd.items()}},
        "mmdet": {"meta": {"epoch": 12}, "state_dict": {**backbone, **neck}},
    }


@pytest.mark.parametrize("layout", ["bare", "model", "state_dict", "ddp", "mmdet"])
def test_layouts_load_strictly(layout, tiny_sd, tmp_path):
    path = tmp_path / f"{layout}.pth"
    torch.save(_layouts(tiny_sd)[layout], path)
    loaded = load_model(checkpoint=path)
    if layout == "mmdet":
        cfg = loaded.model.cfg
        assert cfg.stage_norms and cfg.num_classes == 0 and not cfg.final_norm
        feats = loaded.model.forward_stages(torch.randn(1, 3, 64, 96))
        assert [f.shape[1] for f in feats] == [16, 32, 64, 128]
        expected = {k: v for k, v in tiny_sd.items() if not k.startswith(("head.", "norm."))}
    else:
        expected = tiny_sd
    assert _same_weights(loaded.model, expected)


YACS_STUB = '''
class CfgNode(dict):
    def __init__(self, init_dict=None):
        super().__init__(init_dict or {})
        self.__dict__["_immutable"] = False
'''


def test_authors_trainer_file_loads_without_yacs(tiny_sd, tmp_path):
    """The trainer pickles a yacs CfgNode, optimizer and scheduler state beside the model."""
    pkg = tmp_path / "fake" / "yacs"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "config.py").write_text(YACS_STUB)
    torch.save(tiny_sd, tmp_path / "sd.pth")
    script = textwrap.dedent(f"""
        import torch, numpy as np
        from yacs.config import CfgNode
        sd = torch.load({str(tmp_path / 'sd.pth')!r}, weights_only=True)
        cfg = CfgNode({{"MODEL": CfgNode({{"TYPE": "litv2", "LIT": CfgNode({{"ALPHA": 0.5}})}})}})
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])
        torch.save({{"model": sd, "optimizer": opt.state_dict(),
                    "lr_scheduler": {{"t_initial": 300, "base_values": [1e-3]}},
                    "max_accuracy": np.float64(82.0), "epoch": 299, "config": cfg}},
                   {str(tmp_path / 'trainer.pth')!r})
    """)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "fake")}
    subprocess.run([sys.executable, "-c", script], check=True, env=env)
    with pytest.raises(ImportError):
        __import__("yacs.config")  # not installed here: loading must not need it
    loaded = load_model(checkpoint=tmp_path / "trainer.pth")
    assert _same_weights(loaded.model, tiny_sd)
    assert read_checkpoint(tmp_path / "trainer.pth")["epoch"] == 299


class _Hostile:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("fmt", ["zip", "legacy", "raw-pickle"])
def test_hostile_pickle_is_refused_and_never_runs(fmt, tiny_sd, tmp_path):
    marker = tmp_path / "side_effect"
    path = tmp_path / "evil.pth"
    payload = {"model": tiny_sd, "x": _Hostile(marker)}
    if fmt == "raw-pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=fmt == "zip")
    with pytest.raises(HiloError, match="refusing|not a readable"):
        load_model(checkpoint=path)
    assert not marker.exists()


def test_hostile_pickle_disguised_as_config_class_does_nothing(tmp_path):
    """REDUCE on an allowed name calls the inert stand-in, which only stores its arguments."""
    marker = tmp_path / "side_effect"
    # GLOBAL yacs.config.CfgNode, then call it with a string: harmless with the stand-in
    data = (b"\x80\x02cyacs.config\nCfgNode\nq\x00X" + len(str(marker)).to_bytes(4, "little")
            + str(marker).encode() + b"\x85R.")
    path = tmp_path / "disguised.pth"
    path.write_bytes(data)
    with pytest.raises(HiloError):
        load_model(checkpoint=path)  # loads an inert object, which holds no tensors
    assert not marker.exists()


def test_bad_files_give_one_line_errors(tmp_path, tiny_sd):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    good = tmp_path / "good.pth"
    torch.save(tiny_sd, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    resnet = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "bn1.weight": torch.zeros(64),
                "fc.weight": torch.zeros(1000, 512)}, resnet)
    for path, fragment in ((empty, "empty"), (text, "not a readable"),
                           (truncated, "not a readable"), (resnet, "not a LITv2"),
                           (tmp_path / "missing.pth", "not found")):
        with pytest.raises(HiloError, match=fragment) as err:
            load_model(checkpoint=path)
        assert "\n" not in str(err.value)


def test_mismatch_is_reported_as_short_key_lists(tiny_sd, tmp_path):
    bad = dict(tiny_sd)
    bad["layers.2.blocks.0.attn.h_proj.weight"] = torch.zeros(31, 32)
    bad["extra.weight"] = torch.zeros(1)
    del bad["layers.0.blocks.0.mlp.fc1.bias"]
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(HiloError) as err:
        load_model(checkpoint=path, window_sizes=[0, 0, 2, 1])
    msg = str(err.value)
    assert "missing 1: layers.0.blocks.0.mlp.fc1.bias" in msg
    assert "unexpected 1: extra.weight" in msg
    assert "wrong shape 1: layers.2.blocks.0.attn.h_proj.weight (31, 32) vs (32, 32)" in msg


def test_window_size_override_and_validation(tiny_sd, tmp_path):
    path = tmp_path / "t.pth"
    torch.save(tiny_sd, path)
    assert load_model(checkpoint=path, window_sizes=[0, 0, 4, 1]).model.cfg.local_ws == (0, 0, 4, 1)
    with pytest.raises(UsageError, match="4 entries"):
        load_model(checkpoint=path, window_sizes=[2, 1])
    with pytest.raises(UsageError, match="stage 1"):
        load_model(checkpoint=path, window_sizes=[2, 0, 2, 1])


def test_random_init_is_seeded_and_named():
    a = load_model("litv2_s", seed=3)
    b = load_model("litv2_s", seed=3)
    assert a.provenance == Provenance(source="random init", variant="litv2_s", seed=3)
    assert "random init" in a.provenance.describe()
    assert torch.equal(a.model.head.weight, b.model.head.weight)


def test_unknown_variant_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown model"):
        load_model("litv2_xl")


# ---------------------------------------------------------------------------------------------
# Released weights: downloaded from a local file:// URL or local HTTP server, never the internet
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def release_dir(tmp_path, monkeypatch):
    """A local stand-in for the release: v1.0/litv2_s.pth holding litv2_s random-init weights."""
    (tmp_path / "release" / "v1.0").mkdir(parents=True)
    torch.manual_seed(5)
    weights = create_model("litv2_s").state_dict()
    torch.save({"model": weights}, tmp_path / "release" / "v1.0" / "litv2_s.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "release", weights


def test_pretrained_downloads_once_into_the_hub_cache(release_dir, monkeypatch):
    root, weights = release_dir
    monkeypatch.setenv("HILO_RELEASE_URL", root.as_uri())
    loaded = load_model("litv2_s", pretrained=True, progress=False)
    cached = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / "litv2_s.pth"
    assert cached.exists() and Path(loaded.provenance.path) == cached
    assert loaded.provenance.source == "pretrained"
    assert loaded.provenance.url == f"{root.as_uri()}/v1.0/litv2_s.pth"
    assert torch.equal(loaded.model.head.weight, weights["head.weight"])
    # second use: the cached file, even with the source gone
    (root / "v1.0" / "litv2_s.pth").unlink()
    again = load_model("litv2_s", pretrained=True, progress=False)
    assert again.provenance.sha256 == loaded.provenance.sha256


def test_pretrained_over_http(release_dir, monkeypatch):
    root, weights = release_dir
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HILO_RELEASE_URL", f"http://127.0.0.1:{server.server_port}")
        loaded = load_model("litv2_s", pretrained=True, progress=False)
    finally:
        server.shutdown()
    assert torch.equal(loaded.model.head.bias, weights["head.bias"])


def test_offline_download_names_url_and_alternative(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setenv("HILO_RELEASE_URL", (tmp_path / "nowhere").as_uri())
    with pytest.raises(HiloError) as err:
        load_model("litv2_s_alpha0.5", pretrained=True, progress=False)
    msg = str(err.value)
    assert f"{(tmp_path / 'nowhere').as_uri()}/v1.1/alpha_0.5.pth" in msg
    assert "--checkpoint PATH" in msg
    assert not list((tmp_path / "th").rglob("*.pth"))  # nothing half-written


def test_released_urls_are_the_authors():
    assert VARIANTS["litv2_s"].url == "https://github.com/ziplab/LITv2/releases/download/v1.0/litv2_s.pth"
    assert VARIANTS["litv2_s_alpha0.0"].url.endswith("/v1.1/alpha_0.pth")
    assert VARIANTS["litv2_s_alpha1.0"].url.endswith("/v1.1/alpha_1.pth")
    assert VARIANTS["litv2_s_alpha0.7"].url.endswith("/v1.1/alpha_0.7.pth")


def test_filter_state_dict_rejects_non_dicts():
    with pytest.raises(ValueError):
        filter_state_dict([1, 2])
    with pytest.raises(ValueError):
        filter_state_dict({"epoch": 3})
