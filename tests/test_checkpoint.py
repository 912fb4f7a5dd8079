"""Checkpoint layouts, safety, architecture inference (with its ambiguity) and the download path.

Every failure class of a bad file is also checked end to end in tests/test_cli_info.py."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import os
import pickle
import sys
import threading
import types
from fractions import Fraction
from functools import partial
from pathlib import Path

import pytest
import torch

from hilocli.checkpoint import Provenance, fetch_released, load_model, read_checkpoint
from hilocli.errors import HiloError, UsageError
from hilocli.models import VARIANTS, LITv2Config, create_model
from hilocli.models.inferred import alpha_interval
from hilocli.models.litv2_checkpoint import filter_state_dict, infer_config, trainer_config
from hilocli.output import sha256_file
from tests.conftest import TINY_CKPT


@pytest.fixture(scope="module")
def tiny_sd():
    return torch.load(TINY_CKPT, weights_only=True)["model"]


def _same_weights(model, sd) -> bool:
    own = model.state_dict()
    return all(torch.equal(own[k], v) for k, v in sd.items())


def test_tiny_checkpoint_infers_its_architecture_and_says_what_it_guessed(tiny_sd, tiny_cfg):
    loaded = load_model(checkpoint=TINY_CKPT)
    cfg = loaded.model.cfg
    assert (cfg.embed_dim, cfg.depths, cfg.local_ws, cfg.num_classes) == (
        16,
        (1, 1, 2, 1),
        (0, 0, 2, 1),
        10,
    )
    assert cfg.num_heads[2:] == tiny_cfg.num_heads[2:]
    assert [(i.hifi_heads, i.lofi_heads) for i in (layer.info for layer in loaded.layers)] == [
        (1, 1),
        (1, 1),
        (0, 4),
    ]
    assert _same_weights(loaded.model, tiny_sd)
    prov = loaded.provenance
    assert prov.source == "file" and prov.format == "torch zip"
    assert (
        prov.sha256 == hashlib.sha256(TINY_CKPT.read_bytes()).hexdigest()
        and prov.sha256 in prov.describe()
    )
    # the fixture was trained at alpha 0.5: never reported as the fact "alpha 0.9"
    fields = {f.name: f for f in prov.inferred}
    assert cfg.alpha == 0.5 == fields["alpha"].value and fields["alpha"].source == "tensors"
    assert fields["alpha"].ambiguity.startswith(
        "alpha in [0.5, 1.0): any value gives this head split; 0.5 used"
    )
    assert fields["head_dim"].value == 32 and fields["head_dim"].source == "assumption"
    assert "1, 2, 4, 8, 16" in fields["head_dim"].ambiguity
    assert "--head-dim" in fields["head_dim"].ambiguity
    assert fields["local_ws"].source == "assumption" and "--window-sizes" in (
        fields["local_ws"].ambiguity
    )
    weights = prov.to_dict()
    assert weights["inferred"]["alpha"] == {
        "value": 0.5,
        "source": "tensors",
        "ambiguity": fields["alpha"].ambiguity,
    }


@pytest.mark.parametrize("name", list(VARIANTS))
def test_inference_recovers_every_released_variant(name, manifest):
    sd = {k: torch.empty(shape, device="meta") for k, shape in manifest[name]["state_dict"].items()}
    inference = infer_config(sd)
    cfg, want = inference.cfg, VARIANTS[name].cfg
    assert (cfg.embed_dim, cfg.depths, cfg.num_heads, cfg.local_ws, cfg.alpha) == (
        want.embed_dim,
        want.depths,
        want.num_heads,
        want.local_ws,
        want.alpha,
    )
    with torch.device("meta"):
        built = create_model(cfg)
    assert {k: list(v.shape) for k, v in built.state_dict().items()} == manifest[name]["state_dict"]


def _brute_alphas(heads, lofi, steps=2520):
    """Every alpha k/steps in [0, 1] that gives int(n * alpha) == l for all stages (floats, as the
    authors' code computes it). 2520 = lcm(1..10): every endpoint l/n (n <= 10) is on the grid."""
    return [
        k / steps
        for k in range(steps + 1)
        if all(int(n * (k / steps)) == lo for n, lo in zip(heads, lofi))
    ]


@pytest.mark.parametrize(
    "heads,lofi",
    [
        ((2,), (1,)),
        ((12,), (10,)),
        ((4, 8), (3, 7)),
        ((3, 6), (1, 2)),
        ((5,), (5,)),
        ((6,), (0,)),
        ((4, 8), (1, 7)),
    ],
)
def test_alpha_interval_is_exactly_the_alphas_that_reproduce_the_split(heads, lofi):
    grid = _brute_alphas(heads, lofi)
    interval = alpha_interval(list(heads), list(lofi))
    if not grid:
        assert interval is None
        return
    lo, hi = interval
    assert grid[0] == float(lo)  # the lower end is attained
    assert all(float(lo) <= a < float(hi) for a in grid)  # nothing outside fits ...
    step = Fraction(1, 2520)  # ... and every grid point inside does (no gaps)
    assert len(grid) == len([k for k in range(2521) if lo <= k * step < hi])


def test_head_dim_40_is_inferred_and_ambiguity_named(tmp_path):
    """Not 32-dimensional heads: 32 does not divide the Hi-Fi channels (40), so the largest head
    dim that fits is used, and the other candidates are named with --head-dim."""
    cfg = LITv2Config(
        embed_dim=40, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), alpha=0.9, num_classes=5
    )  # stage 3: 4 heads of 40, int(3.6) = 3 Lo-Fi
    torch.manual_seed(0)
    original = create_model(cfg)
    path = tmp_path / "hd40.pth"
    torch.save(original.state_dict(), path)
    loaded = load_model(checkpoint=path)
    assert loaded.model.cfg.num_heads == (1, 2, 4, 8) and loaded.model.cfg.alpha == 0.9
    field = {f.name: f for f in loaded.provenance.inferred}["head_dim"]
    assert field.value == 40 and "1, 2, 4, 5, 8, 10, 20" in field.ambiguity
    assert "--head-dim" in field.ambiguity
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), original(x), rtol=0, atol=1e-6)
    assert load_model(checkpoint=path, head_dim=20).model.cfg.num_heads[2] == 8
    with pytest.raises(UsageError, match="--head-dim 32 does not fit.*40 Hi-Fi channels"):
        load_model(checkpoint=path, head_dim=32)


def _layouts(sd):
    neck = {
        "neck.lateral_convs.0.conv.weight": torch.zeros(3, 3),
        "decode_head.conv.weight": torch.zeros(2),
    }
    backbone = {f"backbone.{k}": v for k, v in sd.items() if not k.startswith(("head.", "norm."))}
    backbone.update(
        {
            f"backbone.norm{i}.{p}": torch.ones(16 * 2**i)
            for i in (1, 2, 3)
            for p in ("weight", "bias")
        }
    )
    return {
        "bare": sd,
        "model": {"model": sd, "epoch": 3},
        "state_dict": {"state_dict": sd},
        "ddp": {"model": {f"module.{k}": v for k, v in sd.items()}},
        "mmdet": {"meta": {"epoch": 12}, "state_dict": {**backbone, **neck}},
    }


@pytest.mark.parametrize(
    "layout",
    ["bare", "model", "state_dict", "ddp", "mmdet", "legacy", "safetensors", "safetensors-as-pth"],
)
def test_layouts_and_formats_load_strictly(layout, tiny_sd, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / ("w.safetensors" if layout == "safetensors" else f"{layout}.pth")
    if layout.startswith("safetensors"):
        save_file(dict(tiny_sd), path)  # safetensors bytes, whatever the name
    elif layout == "legacy":
        torch.save({"model": tiny_sd}, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(_layouts(tiny_sd)[layout], path)
    loaded = load_model(checkpoint=path)
    fmt = {
        "legacy": "torch legacy",
        "safetensors": "safetensors",
        "safetensors-as-pth": "safetensors",
    }.get(layout, "torch zip")
    assert loaded.provenance.format == fmt
    if layout == "mmdet":
        cfg = loaded.model.cfg
        assert cfg.stage_norms and cfg.num_classes == 0 and not cfg.final_norm
        feats = loaded.model.forward_stages(torch.randn(1, 3, 64, 96))
        assert [f.shape[1] for f in feats] == [16, 32, 64, 128]
        expected = {k: v for k, v in tiny_sd.items() if not k.startswith(("head.", "norm."))}
    else:
        expected = tiny_sd
    assert _same_weights(loaded.model, expected)


@pytest.fixture()
def fake_yacs(monkeypatch):
    """A stand-in for yacs' CfgNode (a dict subclass with sets in its __dict__, like the real one),
    importable while the test pickles and gone when hilo loads."""
    module = types.ModuleType("yacs.config")

    class CfgNode(dict):
        def __init__(self, init=None):
            super().__init__(init or {})
            self.__dict__["__immutable__"] = True
            self.__dict__["__deprecated_keys__"] = set()
            self.__dict__["__new_allowed__"] = False

    CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"
    module.CfgNode = CfgNode
    monkeypatch.setitem(sys.modules, "yacs", types.ModuleType("yacs"))
    monkeypatch.setitem(sys.modules, "yacs.config", module)
    return CfgNode


def _trainer_file(path, sd, CfgNode, **lit):
    """The authors' trainer checkpoint: model, optimizer, scheduler, numpy scalar, yacs config."""
    import numpy as np

    cfg = CfgNode(
        {
            "MODEL": CfgNode({"TYPE": "litv2", "NUM_CLASSES": 10, "LIT": CfgNode(lit)}),
            "DATA": CfgNode({"IMG_SIZE": 64, "INTERPOLATION": "bicubic"}),
            "TEST": CfgNode({"CROP": False}),
        }
    )
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])
    torch.save(
        {
            "model": sd,
            "optimizer": opt.state_dict(),
            "lr_scheduler": {"t_initial": 300, "base_values": [1e-3]},
            "max_accuracy": np.float64(82.0),
            "epoch": 299,
            "config": cfg,
        },
        path,
    )


@pytest.mark.parametrize(
    "alpha,used,source",
    [
        (0.5, 0.5, "checkpoint config"),
        (0.9, 0.9, "checkpoint config"),  # also fits
        (0.2, 0.5, "tensors"),
    ],
)  # contradicts the tensors
def test_authors_trainer_file_config_is_read_inert(
    alpha, used, source, tiny_sd, tmp_path, fake_yacs, monkeypatch
):
    path = tmp_path / "trainer.pth"
    _trainer_file(
        path, tiny_sd, fake_yacs, ALPHA=alpha, LOCAL_WS=[0, 0, 2, 1], NUM_HEADS=[1, 1, 2, 4]
    )
    monkeypatch.delitem(sys.modules, "yacs.config")
    monkeypatch.delitem(sys.modules, "yacs")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "yacs" not in p])
    with pytest.raises(ImportError):
        __import__("yacs.config")  # not installed here: loading must not need it
    raw = read_checkpoint(path)
    assert raw["epoch"] == 299 and trainer_config(raw)["alpha"] == alpha
    loaded = load_model(checkpoint=path)
    assert _same_weights(loaded.model, tiny_sd)
    fields = {f.name: f for f in loaded.provenance.inferred}
    assert (fields["alpha"].value, fields["alpha"].source) == (used, source)
    assert loaded.model.cfg.alpha == used
    if source == "tensors":
        assert "ALPHA 0.2 does not give this head split; ignored" in fields["alpha"].ambiguity
    for name in ("head_dim", "local_ws", "img_size", "preprocess"):
        assert fields[name].source == "checkpoint config" and fields[name].ambiguity is None
    assert loaded.model.cfg.img_size == 64 and loaded.preprocess.mode == "resize"


class _Hostile:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("fmt", ["zip", "legacy", "raw-pickle", "text-pickle"])
def test_hostile_pickle_is_refused_and_never_runs(fmt, tiny_sd, tmp_path):
    marker = tmp_path / "side_effect"
    path = tmp_path / "evil.pth"
    payload = {"model": tiny_sd, "x": _Hostile(marker)}
    if fmt == "raw-pickle":
        path.write_bytes(pickle.dumps(payload))
    elif fmt == "text-pickle":  # protocol 0: no binary header to recognise it by
        path.write_bytes(pickle.dumps({"x": _Hostile(marker)}, protocol=0))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=fmt == "zip")
    with pytest.raises(HiloError, match="references builtins.exec, which could run code") as err:
        load_model(checkpoint=path)
    assert "nothing in it was run" in str(err.value)
    assert not marker.exists()


def test_hostile_pickle_disguised_as_config_class_does_nothing(tmp_path):
    """REDUCE on an allowed name calls the inert stand-in, which only stores its arguments."""
    marker = tmp_path / "side_effect"
    # GLOBAL yacs.config.CfgNode, then call it with a string: harmless with the stand-in
    data = (
        b"\x80\x02cyacs.config\nCfgNode\nq\x00X"
        + len(str(marker)).to_bytes(4, "little")
        + str(marker).encode()
        + b"\x85R."
    )
    path = tmp_path / "disguised.pth"
    path.write_bytes(data)
    with pytest.raises(HiloError):
        load_model(checkpoint=path)  # a plain pickle: refused before anything is unpickled
    assert not marker.exists()


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


@pytest.fixture(scope="module")
def release_root(tmp_path_factory, manifest):
    """A local stand-in for the release: v1.0/litv2_s.pth holding litv2_s-shaped weights (zeros,
    a recognisable head), built once for the module."""
    root = tmp_path_factory.mktemp("release")
    (root / "v1.0").mkdir()
    weights = {k: torch.zeros(shape) for k, shape in manifest["litv2_s"]["state_dict"].items()}
    weights["head.weight"] = torch.arange(1000 * 768, dtype=torch.float32).reshape(1000, 768)
    weights["head.bias"] = torch.linspace(-1, 1, 1000)
    torch.save({"model": weights}, root / "v1.0" / "litv2_s.pth")
    return root, weights


@pytest.fixture()
def release_dir(release_root, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return release_root


def test_pretrained_downloads_once_into_the_hub_cache(release_dir, tmp_path, monkeypatch):
    root, weights = release_dir
    monkeypatch.setenv("HILO_RELEASE_URL", root.as_uri())
    loaded = load_model("litv2_s", pretrained=True, progress=False)
    cached = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / "litv2_s.pth"
    assert cached.exists() and Path(loaded.provenance.path) == cached
    assert loaded.provenance.source == "pretrained" and loaded.provenance.inferred == ()
    assert loaded.provenance.url == f"{root.as_uri()}/v1.0/litv2_s.pth"
    assert torch.equal(loaded.model.head.weight, weights["head.weight"])
    assert sorted(p.name for p in cached.parent.iterdir()) == [  # no temporary left
        "litv2_s.pth",
        "litv2_s.pth.hilo-download.json",  # the first download's URL and SHA-256
    ]
    # a mirror is never "the authors' release": its URL and the file's hash are what is known
    prov = loaded.provenance
    assert prov.release.origin == "mirror" and prov.trust == "same as at its first download"
    assert prov.describe() == (
        f"litv2_s weights from mirror URL {root.as_uri()}/v1.0/litv2_s.pth, file {cached} "
        f"(sha256 {sha256_file(cached)}; same as at its first download)"
    )
    assert "authors" not in prov.describe()
    # second use: the cached file, with the source unreachable; its origin is the recorded one
    monkeypatch.setenv("HILO_RELEASE_URL", (tmp_path / "gone").as_uri())
    path, origin = fetch_released(VARIANTS["litv2_s"], progress=False)
    assert path == cached and origin.url == f"{root.as_uri()}/v1.0/litv2_s.pth"
    # trust on first use: a cached file that changed since says so, in the record too
    torch.save({"model": {**weights, "head.bias": torch.zeros(1000)}}, cached)
    prov = load_model("litv2_s", pretrained=True, progress=False).provenance
    assert prov.trust.startswith("DIFFERS from the sha256 ") and prov.trust in prov.describe()
    assert prov.to_dict()["release"]["trust"] == prov.trust


def test_released_weights_from_the_official_url_are_the_authors_release(release_dir, monkeypatch):
    """Only a download from the variant's own URL is "the authors' release" (the official URL
    is pointed at the local stand-in here: nothing leaves the machine)."""
    root, _ = release_dir
    official = f"{root.as_uri()}/v1.0/litv2_s.pth"
    monkeypatch.delenv("HILO_RELEASE_URL", raising=False)
    monkeypatch.setitem(VARIANTS, "litv2_s", dataclasses.replace(VARIANTS["litv2_s"], url=official))
    prov = load_model("litv2_s", pretrained=True, progress=False).provenance
    assert prov.release.origin == "the authors' release" and prov.url == official
    assert prov.describe().startswith(f"litv2_s: the authors' release ({official}), file ")
    (Path(prov.path).parent / "litv2_s.pth.hilo-download.json").unlink()  # placed by hand
    prov = load_model("litv2_s", pretrained=True, progress=False).provenance
    assert prov.release.origin == "unknown" and prov.trust == "no record of its first download"


def _serve(directory: Path, handler_cls=http.server.SimpleHTTPRequestHandler):
    handler = partial(handler_cls, directory=str(directory))
    handler_cls.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_pretrained_over_http(release_dir, monkeypatch):
    root, weights = release_dir
    server = _serve(root)
    try:
        monkeypatch.setenv("HILO_RELEASE_URL", f"http://127.0.0.1:{server.server_port}")
        loaded = load_model("litv2_s", pretrained=True, progress=False)
    finally:
        server.shutdown()
    assert torch.equal(loaded.model.head.bias, weights["head.bias"])


class _BrokenOff(http.server.SimpleHTTPRequestHandler):
    """Promises 1 MB, sends 10 bytes, hangs up."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.close_connection = True


def test_download_that_breaks_off_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    server = _serve(tmp_path, _BrokenOff)
    try:
        monkeypatch.setenv("HILO_RELEASE_URL", f"http://127.0.0.1:{server.server_port}")
        with pytest.raises(HiloError, match="broke off"):
            load_model("litv2_b", pretrained=True, progress=False)
    finally:
        server.shutdown()
    assert not [p for p in (tmp_path / "th").rglob("*") if p.is_file()]


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
    base = "https://github.com/ziplab/LITv2/releases/download"
    assert VARIANTS["litv2_s"].url == f"{base}/v1.0/litv2_s.pth"
    assert VARIANTS["litv2_s_alpha0.0"].url.endswith("/v1.1/alpha_0.pth")
    assert VARIANTS["litv2_s_alpha1.0"].url.endswith("/v1.1/alpha_1.pth")
    assert VARIANTS["litv2_s_alpha0.7"].url.endswith("/v1.1/alpha_0.7.pth")


def test_filter_state_dict_rejects_non_dicts():
    with pytest.raises(ValueError):
        filter_state_dict([1, 2])
    with pytest.raises(ValueError):
        filter_state_dict({"epoch": 3})
