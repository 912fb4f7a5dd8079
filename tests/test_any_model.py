"""HiLo inside any model: user networks (one per forward signature, and a backbone holding them
all) found by structure, captured, recomputed and analysed by info / spectrum / attn-map / flops."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from tests.conftest import SAMPLES, assert_one_line_error, capture_layers, hilo, hilo_layers
from tests.fixtures import user_models as um

SPEC = "tests/fixtures/user_models.py"
NETS = {
    "tokens (x, H, W)": um.tokens_hw_net,
    "tokens (x), square": um.square_tokens_net,
    "tokens (x, H)": um.tokens_h_net,
    "map (B, C, H, W)": um.map_net,
}


def test_discovery_reads_heads_and_window_and_rejects_look_alikes():
    from hilocli.hilo.discover import find_layers

    layers, rejected = find_layers(um.backbone())
    infos = [layer.info for layer in layers]
    assert [i.path for i in infos] == ["layers.0", "layers.1", "layers.3", "layers.4"]
    assert [i.index for i in infos] == [0, 1, 2, 3]
    # dim 32: 4 heads of 8 (alpha 0.5 -> 2 + 2); layers.3 has 2 heads of 16 (1 + 1)
    assert [(i.hifi_heads, i.lofi_heads, i.head_dim) for i in infos] == [
        (2, 2, 8),
        (2, 2, 8),
        (1, 1, 16),
        (2, 2, 8),
    ]
    assert all(i.window_size == 2 and i.stage is None for i in infos)
    assert [r.path for r in rejected] == ["layers.2"] and "Conv2d" in rejected[0].reason


def test_litv2_listing_is_unchanged(tiny_model):
    from hilocli.hilo.discover import find_layers
    from hilocli.models.geometry import HiLoLayerInfo

    own = [  # the listing LITv2 stated itself: every block with attention, in forward order
        HiLoLayerInfo(
            index=k,
            name=name,
            path=f"{name}.attn",
            stage=i,
            window_size=a.window_size,
            num_heads=a.num_heads,
            hifi_heads=a.h_heads,
            lofi_heads=a.l_heads,
            head_dim=a.head_dim,
        )
        for k, (i, name, a) in enumerate(
            (i, f"layers.{i}.blocks.{j}", blk.attn)
            for i, stage in enumerate(tiny_model.layers)
            for j, blk in enumerate(stage.blocks)
            if blk.attn is not None
        )
    ]
    layers = hilo_layers(tiny_model)  # with the config's metadata, as the loader finds them
    assert [layer.info for layer in layers] == own
    assert all(layer.module is tiny_model.get_submodule(o.path) for layer, o in zip(layers, own))
    found, _ = find_layers(tiny_model)  # structure alone finds the same modules and head splits
    assert [(f.info.path, f.info.hifi_heads, f.info.lofi_heads, f.window_size) for f in found] == [
        (o.path, o.hifi_heads, o.lofi_heads, o.window_size) for o in own
    ]


@pytest.mark.parametrize("size", [64, 76])  # 16x16 grid; 19x19 (padded to 20x20)
@pytest.mark.parametrize("signature", list(NETS))
def test_capture_equals_module_outputs_and_attention_reproduces_them(signature, size):
    net = NETS[signature]()
    module = net.layers[0]
    seen = {}
    handle = module.register_forward_hook(lambda m, a, o: seen.update(out=o))
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), capture_layers(net, [0], attn=True) as cap:
        net(x)
    handle.remove()
    rec = cap.records[0]
    g = size // 4
    assert rec.signature == signature and rec.grid == (g, g) and rec.input_size == (size, size)
    out = seen["out"]
    grid_out = out.permute(0, 2, 3, 1) if out.ndim == 4 else out.reshape(2, g, g, 32)
    torch.testing.assert_close(rec.hifi_out, grid_out[..., :16], rtol=0, atol=0)
    torch.testing.assert_close(rec.lofi_out, grid_out[..., 16:], rtol=0, atol=0)
    # the module's own forward on the captured input gives the same output (input read right)
    with torch.no_grad():
        again = module.grid(rec.control)  # (B, H, W, C)
    torch.testing.assert_close(again, grid_out, rtol=0, atol=0)
    # probabilities @ v through h_proj / l_proj == the branch outputs
    with torch.no_grad():
        got = hilo_layers(net)[0].recompute(rec.control, "pad")  # the authors' rule
    torch.testing.assert_close(got.hifi_out, rec.hifi_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.lofi_out, rec.lofi_out, rtol=1e-5, atol=1e-6)
    assert rec.pooling == "pad"
    pg = -(-g // 2)  # pooled side
    assert rec.hifi_attn.shape == (2, pg * pg, 2, 4, 4)
    assert rec.lofi_attn.shape == (2, 2, (2 * pg) ** 2, pg * pg)
    torch.testing.assert_close(rec.lofi_attn.sum(-1), torch.ones(2, 2, (2 * pg) ** 2))


def test_recompute_refuses_other_maths():
    """A module with HiLo's projections but another computation is not passed off as HiLo."""
    from hilocli.errors import HiloError

    net = um.tokens_hw_net()
    net.layers[0].scale = 0.123456  # another softmax scale, stated as `scale`: still HiLo
    with torch.no_grad(), capture_layers(net, [0], attn=True):
        net(torch.zeros(1, 3, 32, 32))
    net.layers[0].sr = torch.nn.MaxPool2d(2, 2)  # keys from max-pooling: not HiLo's maths
    with pytest.raises(HiloError, match="does not reproduce"):
        with torch.no_grad(), capture_layers(net, [0], attn=True):
            net(torch.randn(1, 3, 32, 32))


def test_analytic_hilo_macs_match_the_published_reference():
    from hilocli.flops.model import hilo_layer_macs

    # HiLo(dim=384, heads=12, s=2, alpha=0.5) on 14x14: 50,878,464 + 32,589,312 (LITV2_FACTS 4)
    assert hilo_layer_macs(384, 192, 192, 2, (14, 14)) == (50_878_464, 32_589_312)


def _json(*args):
    r = hilo(*args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_info_flops_lists_and_counts_the_backbone(tmp_path):
    rec = _json("info", "--model-fn", f"{SPEC}:backbone", "--resolution", "76")
    layers = rec["results"]["hilo_layers"]
    assert [d["index"] for d in layers] == [0, 1, 2, 3]
    assert [d["signature"] for d in layers] == [
        "map (B, C, H, W)",
        "tokens (x, H, W)",
        "tokens (x), square",
        "tokens (x, H)",
    ]
    assert all(d["grid"] == [19, 19] and d["stage"] is None for d in layers)
    assert rec["results"]["rejected"][0]["path"] == "layers.2"
    src = rec["weights"]["model_source"]
    assert src["file_sha256"] == hashlib.sha256(open(SPEC, "rb").read()).hexdigest()
    assert rec["weights"]["source"] == "random init" and rec["weights"]["seed"] == 0

    rec = _json("flops", "--model-fn", f"{SPEC}:backbone", "-r", "76", "-o", tmp_path)
    rows = rec["results"]["hilo_layers"]
    assert len(rows) == 4 and all(r["match"] for r in rows)  # counted == 2 x analytic, padded
    assert rows[2]["hifi_macs"] == 3 * 400 * 32 * 16 + 100 * 16 * 16 * 2 + 400 * 16 * 16


def test_spectrum_and_attn_map_run_on_a_user_model(tmp_path, unrasterised_figures):
    rec = _json(
        "spectrum",
        SAMPLES / "astronaut.jpg",
        "--model-fn",
        f"{SPEC}:backbone",
        "--layer",
        "3",
        "-r",
        "64",
        "-o",
        tmp_path / "s",
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.5,0.5,0.5",
    )
    assert [d["index"] for d in rec["results"]["layers"]] == [3]
    rec = _json(
        "attn-map",
        SAMPLES / "astronaut.jpg",
        "--model-fn",
        f"{SPEC}:square_tokens_net",
        "--model-kwargs",
        '{"dim": 16}',
        "-r",
        "64",
        "-o",
        tmp_path / "a",
    )
    assert rec["weights"]["model_source"]["kwargs"] == {"dim": 16}
    assert (tmp_path / "a" / "attn_map.json").exists()


def test_checkpoint_loads_strictly_into_a_user_model(tmp_path):
    net = um.map_net()
    with torch.no_grad():
        net.layers[0].l_proj.bias.fill_(0.5)
    path = tmp_path / "mine.pth"
    torch.save({"model": net.state_dict()}, path)
    rec = _json("info", "--model-fn", f"{SPEC}:map_net", "--checkpoint", path, "-r", "32")
    assert rec["weights"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    from hilocli.weights import WeightsRequest

    loaded = WeightsRequest(model_fn=f"{SPEC}:map_net", checkpoint=path).load()
    assert torch.equal(loaded.model.layers[0].l_proj.bias, torch.full((16,), 0.5))
    other = tmp_path / "other.pth"
    torch.save(um.tokens_hw_net(dim=16).state_dict(), other)
    r = hilo("info", "--model-fn", f"{SPEC}:map_net", "--checkpoint", other)
    assert_one_line_error(r, 1, "does not fit the model", "wrong shape")


@pytest.mark.parametrize(
    "args,code,fragment",
    [
        (["--model-fn", "nocolon"], 2, "expected path/to/file.py:function"),
        (["--model-fn", "missing.py:f"], 2, "no such file"),
        (["--model-fn", f"{SPEC}:backbone", "--model", "litv2_s"], 2, "conflict"),
        (["--model-fn", f"{SPEC}:backbone", "--hub", "x:y"], 2, "conflict"),
        (["--model-fn", f"{SPEC}:backbone", "--model-kwargs", "{bad"], 2, "not valid JSON"),
        (["--model-kwargs", "{}"], 2, "needs --model-fn"),
        (["--model-fn", f"{SPEC}:broken"], 1, "broken raised RuntimeError"),
        (["--model-fn", f"{SPEC}:not_a_module"], 1, "not an nn.Module"),
        (["--model-fn", f"{SPEC}:nothing_here"], 1, "has no function nothing_here"),
    ],
)
def test_user_model_errors_are_one_line(args, code, fragment):
    assert_one_line_error(hilo("info", *args), code, fragment)


def test_only_the_named_code_runs(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "named.py").write_text(
        f"open({str(marker)!r} + '_named', 'w').close()\n"
        "from tests.fixtures.user_models import map_net\n"
    )
    (tmp_path / "other.py").write_text(f"open({str(marker)!r} + '_other', 'w').close()\n")
    spec = f"{tmp_path / 'named.py'}:map_net"
    # a usage error is found before anything is imported
    assert hilo("info", "--model-fn", spec, "--model", "litv2_s").returncode == 2
    assert not list(tmp_path.glob("ran*"))
    assert hilo("info", "--model-fn", spec, "-r", "32").returncode == 0
    assert (tmp_path / "ran_named").exists() and not (tmp_path / "ran_other").exists()


def test_checkpoint_is_never_unpickled_beyond_weights(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"model": um.map_net().state_dict(), "x": Evil()}, path)
    r = hilo("info", "--model-fn", f"{SPEC}:map_net", "--checkpoint", path)
    assert_one_line_error(r, 1)
    assert "pwned" not in r.stdout


def test_hub_loads_a_local_hubconf(tmp_path):
    (tmp_path / "hubconf.py").write_text(
        "dependencies = ['torch']\n"
        "from tests.fixtures.user_models import tokens_h_net as tiny_hilo\n"
    )
    rec = _json(
        "info", "--hub", f"{tmp_path}:tiny_hilo", "--model-kwargs", '{"dim": 16}', "-r", "32"
    )
    assert rec["results"]["hilo_layers"][0]["signature"] == "tokens (x, H)"
    assert rec["weights"]["model_source"]["file"].endswith("hubconf.py")
    assert_one_line_error(hilo("info", "--hub", f"{tmp_path}/nope:x"), 2, "no hubconf.py")


def test_mean_std_reach_the_user_models_preprocessing(tmp_path):
    from hilocli.commands._options import weights_request

    options = {"model_fn": f"{SPEC}:map_net", "mean": "0.5,0.5,0.5", "std": "0.25,0.25,0.25"}
    w = weights_request(options, default_pretrained=False)
    prep = w.load().preprocess
    assert prep.mean == (0.5, 0.5, 0.5) and prep.std == (0.25, 0.25, 0.25)
    img = SAMPLES / "astronaut.jpg"
    r = hilo("spectrum", img, "--random-init", "--mean", "0.5,0.5,0.5", "-o", tmp_path)
    assert_one_line_error(r, 2, "--model-fn or --hub")
    r = hilo("attn-map", img, "--model-fn", f"{SPEC}:map_net", "--std", "1,0,1", "-o", tmp_path)
    assert_one_line_error(r, 2, "--std must be positive")


@pytest.mark.parametrize("command", ["attn-map", "spectrum"])
def test_a_model_without_hilo_layers_is_one_line_naming_why(command, tmp_path):
    """Before any layer is chosen: attn-map ended in an internal IndexError, spectrum said no
    layer had both branches; both now say no HiLo layer was found and which look-alike why."""
    r = hilo(command, SAMPLES / "chelsea.jpg", "--model-fn", f"{SPEC}:look_alike_net",
             "--random-init", "--out", tmp_path)  # fmt: skip
    assert_one_line_error(r, 1, "no HiLo layer found in the model", "layers.0")
