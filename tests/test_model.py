"""The model computes what the authors' implementation computes, for every released layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hilocli.flops.kernels import set_explicit
from hilocli.models import VARIANTS, LITv2Config, create_model, split_heads
from hilocli.models.dcn import deform_conv2d
from hilocli.models.litv2 import HiLo
from tests.conftest import TINY_EXPECTED, hilo_layers


@pytest.mark.parametrize("name", list(VARIANTS))
def test_state_dict_matches_manifest(name, manifest):
    spec = manifest[name]
    cfg = VARIANTS[name].cfg
    assert cfg.embed_dim == spec["config"]["embed_dim"]
    assert list(cfg.depths) == spec["config"]["depths"]
    assert cfg.alpha == spec["config"]["alpha"]
    with torch.device("meta"):
        model = create_model(name)
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert got == spec["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == spec["num_params"]


def test_fixture_outputs_match_authors(tiny_model):
    exp = np.load(TINY_EXPECTED)
    captured = {}

    def keep(name):
        return lambda _m, _a, out: captured.__setitem__(name, out)

    for name, mod in tiny_model.named_modules():
        if name.endswith(("attn.h_proj", "attn.l_proj")):
            mod.register_forward_hook(keep(name))
    for i, stage in enumerate(tiny_model.layers):  # stage output after its token merging
        last = stage.downsample if stage.downsample is not None else stage.blocks[-1]
        last.register_forward_hook(
            lambda _m, _a, out, i=i: captured.__setitem__(
                f"layers.{i}", out[0] if isinstance(out, tuple) else out
            )
        )
    with torch.no_grad():
        logits = tiny_model(torch.from_numpy(exp["input"]))
    np.testing.assert_allclose(logits.numpy(), exp["logits"], atol=5e-6, rtol=0)
    keys = [k for k in exp.files if k.startswith("capture/")]
    assert len(keys) == 9
    for key in keys:
        np.testing.assert_allclose(
            captured[key[len("capture/") :]].numpy(), exp[key], atol=5e-6, rtol=0, err_msg=key
        )


def test_fixture_reproduced_from_the_file_alone(tiny_ckpt_path):
    """No config given: the architecture inferred from the file gives the authors' logits."""
    from hilocli.checkpoint import load_model

    exp = np.load(TINY_EXPECTED)
    loaded = load_model(checkpoint=tiny_ckpt_path)
    with torch.no_grad():
        logits = loaded.model(torch.from_numpy(exp["input"]))
    np.testing.assert_allclose(logits.numpy(), exp["logits"], atol=5e-6, rtol=0)


def test_explicit_and_fused_attention_agree(tiny_model):
    x = torch.randn(2, 3, 72, 56)
    with torch.no_grad():
        fused = tiny_model(x)
        assert set_explicit(tiny_model, True)  # the one switch (hilocli.flops.kernels)
        explicit = tiny_model(x)
    assert (fused - explicit).abs().max() <= 1e-5


@pytest.mark.parametrize("H,W", [(4, 4), (5, 7), (3, 3), (7, 2)])
def test_hilo_paths_agree_and_pad(H, W):
    torch.manual_seed(0)
    layer = HiLo(64, 4, window_size=2, alpha=0.5).eval()
    x = torch.randn(2, H * W, 64)
    with torch.no_grad():
        fused = layer(x, H, W)
        layer.need_weights = True
        explicit = layer(x, H, W)
    assert fused.shape == (2, H * W, 64)
    assert (fused - explicit).abs().max() <= 1e-5


def test_hilo_matches_a_direct_definition():
    """Hi-Fi = attention inside each 2x2 window; Lo-Fi = attention to 2x2 average-pooled keys."""
    torch.manual_seed(1)
    layer = HiLo(64, 2, window_size=2, alpha=0.5).eval()
    H, W, C = 4, 6, 64
    x = torch.randn(1, H * W, C)
    with torch.no_grad():
        out = layer(x, H, W).reshape(H, W, C)
        grid = x.reshape(H, W, C)
        d = layer.head_dim
        # Hi-Fi, window by window, one head
        q, k, v = layer.h_qkv(grid).split(d, dim=-1)
        hifi = torch.empty(H, W, d)
        for r in range(0, H, 2):
            for c in range(0, W, 2):
                win = (slice(r, r + 2), slice(c, c + 2))
                qw, kw, vw = q[win].reshape(4, d), k[win].reshape(4, d), v[win].reshape(4, d)
                att = torch.softmax(qw @ kw.T / d**0.5, -1)
                hifi[win] = (att @ vw).reshape(2, 2, d)
        hifi = layer.h_proj(hifi)
        # Lo-Fi: all queries to the pooled grid
        pooled = F.avg_pool2d(grid.permute(2, 0, 1)[None], 2).flatten(2)[0].T  # (M, C)
        kl, vl = layer.l_kv(pooled).split(d, dim=-1)
        ql = layer.l_q(grid).reshape(H * W, d)
        lofi = layer.l_proj((torch.softmax(ql @ kl.T / d**0.5, -1) @ vl).reshape(H, W, d))
    torch.testing.assert_close(out[..., :d], hifi, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[..., d:], lofi, atol=1e-5, rtol=0)


def test_head_split_follows_the_authors():
    assert split_heads(12, 0.9, 2) == (2, 10)  # int(10.8) -> 10 Lo-Fi heads
    assert split_heads(12, 0.7, 2) == (4, 8)
    assert split_heads(24, 0.9, 1) == (0, 24)  # window 1: plain MSA, all heads Lo-Fi
    assert split_heads(12, 0.0, 2) == (12, 0)
    assert split_heads(12, 1.0, 2) == (0, 12)


def _reference_deform(x, offset, weight, bias):
    """Independent DCNv1 reference with F.grid_sample (zeros padding, align_corners=True)."""
    B, C, H, W = x.shape
    Cout, _, kh, kw = weight.shape
    Ho, Wo = offset.shape[-2:]
    out = torch.zeros(B, Cout, Ho, Wo, dtype=x.dtype)
    off = offset.reshape(B, kh * kw, 2, Ho, Wo)
    for k in range(kh * kw):
        ki, kj = divmod(k, kw)
        ys = torch.arange(Ho, dtype=x.dtype).view(1, Ho, 1) * 2 + ki + off[:, k, 0]
        xs = torch.arange(Wo, dtype=x.dtype).view(1, 1, Wo) * 2 + kj + off[:, k, 1]
        grid = torch.stack([xs * 2 / (W - 1) - 1, ys * 2 / (H - 1) - 1], dim=-1)
        sampled = F.grid_sample(
            x, grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )  # (B, C, Ho, Wo)
        out += torch.einsum("bchw,oc->bohw", sampled, weight[:, :, ki, kj])
    return out + bias.view(1, -1, 1, 1)


def test_deform_conv_matches_bilinear_reference_with_far_offsets():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 9, 7, dtype=torch.float64)
    offset = torch.randn(2, 8, 4, 3, dtype=torch.float64) * 3  # many samples fall off the map
    weight = torch.randn(6, 5, 2, 2, dtype=torch.float64)
    bias = torch.randn(6, dtype=torch.float64)
    got = deform_conv2d(x, offset, weight, bias, stride=2)
    torch.testing.assert_close(got, _reference_deform(x, offset, weight, bias))


def test_deform_conv_zero_offsets_is_a_plain_conv_and_outside_reads_zero():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 6, 6)
    w, b = torch.randn(4, 3, 2, 2), torch.randn(4)
    zero = torch.zeros(1, 8, 3, 3)
    torch.testing.assert_close(
        deform_conv2d(x, zero, w, b, stride=2), F.conv2d(x, w, b, stride=2), atol=1e-5, rtol=0
    )
    far = torch.full((1, 8, 3, 3), 100.0)  # every sample lands outside: only the bias is left
    torch.testing.assert_close(
        deform_conv2d(x, far, w, b, stride=2), b.view(1, 4, 1, 1).expand(1, 4, 3, 3)
    )
    # exactly -1 reads nothing; -0.5 reads half of the edge pixel
    half = torch.zeros(1, 8, 3, 3)
    half[:, 0::2] = -0.5  # dy for every kernel position
    ones = torch.ones(1, 1, 6, 6)
    wk = torch.zeros(1, 1, 2, 2)
    wk[0, 0, 0, 0] = 1.0  # only the top-left kernel tap
    out = deform_conv2d(ones, half[:, :8], wk, None, stride=2)
    assert out[0, 0, 0, 0].item() == pytest.approx(0.5)  # row 0 at y = -0.5
    assert out[0, 0, 1, 0].item() == pytest.approx(1.0)  # row 1 at y = 1.5: inside


@pytest.mark.parametrize("size", [(64, 64), (72, 40), (61, 93), (32, 33)])
def test_any_input_size_and_stage_features(tiny_model, size):
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        feats = tiny_model.forward_stages(x)
        logits = tiny_model(x)
    grids = tiny_model.grid_sizes(*size)
    assert logits.shape == (1, 10)
    assert [tuple(f.shape[-2:]) for f in feats] == grids
    assert [f.shape[1] for f in feats] == [16, 32, 64, 128]


def test_padding_matches_explicit_zero_padding():
    """A 5x7 grid runs on a zero-padded 6x8 grid; the real tokens' outputs are its crop."""
    torch.manual_seed(2)
    layer = HiLo(64, 2, window_size=2, alpha=0.5).eval()
    x = torch.randn(1, 5, 7, 64)
    with torch.no_grad():
        out = layer(x.reshape(1, 35, 64), 5, 7).reshape(1, 5, 7, 64)
        padded = F.pad(x, (0, 0, 0, 1, 0, 1))
        hifi = layer.hifi(padded)[:, :5, :7]
        lofi = layer.lofi(padded)[:, :5, :7]
    torch.testing.assert_close(out, torch.cat([hifi, lofi], -1))


def test_too_small_input_is_a_value_error(tiny_model):
    with pytest.raises(ValueError, match="minimum"):
        tiny_model(torch.randn(1, 3, 16, 64))


def test_custom_config_builds_and_validates():
    cfg = LITv2Config(
        embed_dim=32,
        depths=(1, 1, 1, 1),
        num_heads=(1, 2, 4, 8),
        alpha=0.5,
        local_ws=(0, 0, 4, 1),
        num_classes=7,
    )
    model = create_model(cfg)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 80)).shape == (1, 7)
    found = hilo_layers(model)[0]
    layer = found.info
    assert (layer.window_size, layer.hifi_heads, layer.lofi_heads, layer.head_dim) == (4, 2, 2, 32)
    assert found.module.window_size == 4
    with pytest.raises(ValueError, match="divisible"):
        LITv2Config(embed_dim=32, num_heads=(1, 2, 5, 8))
    with pytest.raises(ValueError, match="alpha"):
        LITv2Config(alpha=1.5)
