"""hilocli.models.onednn: the CPU inference kernels (oneDNN GEMM for float32 linear layers,
depthwise conv + GELU in one kernel) equal float64 references within float rounding, run where
they claim to and nowhere else, and leave the model's results, hooks and autograd as they were;
the Hi-Fi windows reach the fused SDPA kernel; a layer's packed weight follows its weight."""

from __future__ import annotations

import copy
import gc
import weakref

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from hilocli.flops.kernels import kernels_used, ops_that_ran
from hilocli.models import create_model
from hilocli.models.litv2 import HiLo
from hilocli.models.onednn import (
    Linear,
    applies,
    applies_autocast_bf16,
    conv2d_gelu,
    disabled,
    keep_weights_packed,
    linear,
    packed_weight,
    unpacked,
)

ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
needs_onednn = pytest.mark.skipif(not ONEDNN, reason="torch built without oneDNN")
BF16 = ONEDNN and getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)()
# torch.backends.mkldnn.flags() also sets a oneDNN TF32 flag that warns on builds without XPU
pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")


@needs_onednn
@pytest.mark.parametrize(
    "x_shape, layout",
    [((37, 24), "contiguous"), ((2, 19, 24), "contiguous"), ((2, 24, 19), "transposed")],
)
def test_linear_equals_float64_and_runs_onednn(x_shape, layout):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(x_shape, generator=g)
    x = x.transpose(-2, -1) if layout == "transposed" else x  # (2, 19, 24) strided view
    w, b = torch.randn(40, 24, generator=g), torch.randn(40, generator=g)
    with torch.no_grad():
        assert applies(x)
        ops = ops_that_ran(lambda: linear(x, w, b))
        got = linear(x, w, b)
    assert "mkldnn::_linear_pointwise" in ops and "aten::addmm" not in ops
    ref = F.linear(x.double(), w.double(), b.double())
    torch.testing.assert_close(got.double(), ref, rtol=0, atol=1e-5 * ref.abs().max().item())
    assert got.shape == ref.shape and got.dtype == torch.float32


@needs_onednn
def test_conv_gelu_is_one_kernel_equal_to_float64():
    g = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(16, 16, 3, 1, 1, groups=16)
    x = torch.randn(2, 16, 9, 7, generator=g).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ops = ops_that_ran(lambda: conv2d_gelu(x, conv))
        got = conv2d_gelu(x, conv)
        ref = F.gelu(conv.double()(x.double()))  # exact erf GELU
    assert "mkldnn::_convolution_pointwise" in ops and "aten::gelu" not in ops
    torch.testing.assert_close(got.double(), ref, rtol=0, atol=1e-6 * ref.abs().max().item())


def _packed(i: int, o: int) -> Linear:
    return keep_weights_packed(Linear(i, o))


@pytest.fixture()
def asked_packs(monkeypatch) -> list:
    """The weights `linear` asks `packed_weight` for, in order (the real one still answers)."""
    import hilocli.models.onednn as onednn

    asked = []
    real = onednn.packed_weight
    monkeypatch.setattr(onednn, "packed_weight", lambda w, d=None: asked.append(w) or real(w, d))
    return asked


@needs_onednn
def test_packing_is_for_the_models_hilo_loads(asked_packs, tiny_ckpt_path):
    """A layer keeps its weight packed only when asked (`keep_weights_packed`): the models the
    commands load are; a model built or loaded through the Python API re-reads its weights (a
    change in place through `weight.data` moves no version counter: no pack could follow it)."""
    from hilocli.checkpoint import load_model
    from hilocli.weights import WeightsRequest

    asked = asked_packs
    layer, x = Linear(8, 4), torch.randn(2, 8)
    with torch.no_grad():
        plain = layer(x)
        assert asked == []
        layer.weight.data.mul_(2)  # behind the version counter: an unpacked layer sees it
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
        assert keep_weights_packed(layer) is layer and layer.keep_packed
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
        assert len(asked) == 1 and asked[0] is layer.weight
        assert not torch.equal(plain, layer(x))

    def flags(model):
        return {m.keep_packed for m in model.modules() if isinstance(m, Linear)}

    assert flags(WeightsRequest(checkpoint=tiny_ckpt_path).load("cpu").model) == {True}
    assert flags(load_model(checkpoint=tiny_ckpt_path).model) == {False}
    assert flags(create_model("litv2_s")) == {False}


def _f64_linear(x, layer):
    return F.linear(x.double(), layer.weight.double(), layer.bias.double())


@needs_onednn
def test_a_layer_packs_its_weight_once_and_repacks_when_it_changes():
    """The packed copy is made once, and a weight changed in place (`copy_`, `load_state_dict`)
    or replaced (`.data =`) is packed again: the output always equals F.linear of the weight
    the layer holds now (float64 reference)."""
    g = torch.Generator().manual_seed(4)
    layer = _packed(24, 40)
    x = torch.randn(3, 24, generator=g)
    with torch.no_grad():
        first = packed_weight(layer.weight)
        assert packed_weight(layer.weight) is first  # kept, not packed again
        assert "mkldnn::_linear_pointwise" in ops_that_ran(lambda: layer(x))
        torch.testing.assert_close(layer(x).double(), _f64_linear(x, layer), rtol=0, atol=1e-5)
        changes = [
            lambda: layer.weight.copy_(torch.randn(40, 24, generator=g)),
            lambda: layer.load_state_dict(Linear(24, 40).state_dict()),
            lambda: setattr(layer.weight, "data", torch.randn(40, 24, generator=g)),
        ]
        for change in changes:
            before = layer(x)
            kept = packed_weight(layer.weight)
            change()
            after = layer(x)
            assert packed_weight(layer.weight) is not kept
            assert (after - before).abs().max() > 0.1  # the new weight, not the old packed one
            torch.testing.assert_close(after.double(), _f64_linear(x, layer), rtol=0, atol=1e-5)


@pytest.mark.skipif(not BF16, reason="no oneDNN bfloat16 on this CPU")
def test_autocast_bf16_linear_is_autocasts_gemm_with_a_packed_weight():
    """Under CPU autocast to bfloat16 a layer casts input, weight and bias to bfloat16 and runs a
    bfloat16 GEMM, as autocast's F.linear does: the same output (float64 reference from the
    bfloat16 operands, within the output's rounding), its bfloat16 weight packed once."""
    g = torch.Generator().manual_seed(6)
    layer = _packed(48, 40)
    x = torch.randn(2, 9, 48, generator=g)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert applies_autocast_bf16(x) and not applies(x)
        ops = ops_that_ran(lambda: layer(x))
        got = layer(x)
        kept = packed_weight(layer.weight, torch.bfloat16)
        assert packed_weight(layer.weight, torch.bfloat16) is kept
        assert kept is not packed_weight(layer.weight)  # the float32 one is another entry
        with disabled():
            autocast_ref = layer(x)  # torch's F.linear under autocast
    assert "mkldnn::_linear_pointwise" in ops
    assert got.dtype == autocast_ref.dtype == torch.bfloat16
    bf = [t.bfloat16().double() for t in (x, layer.weight, layer.bias)]
    ref = F.linear(*bf)
    scale = ref.abs().max().item()
    torch.testing.assert_close(got.double(), ref, rtol=0, atol=2**-8 * scale)
    torch.testing.assert_close(got.double(), autocast_ref.double(), rtol=0, atol=2**-8 * scale)
    with torch.no_grad():
        for ctx in (
            torch.autocast("cpu", dtype=torch.float16),  # only bfloat16 is taken
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=False),
        ):
            with ctx:
                assert not applies_autocast_bf16(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not applies_autocast_bf16(x.double())  # autocast leaves float64 alone
            with torch.enable_grad():
                assert not applies_autocast_bf16(x)
            with disabled():
                assert not applies_autocast_bf16(x)


@pytest.mark.skipif(not BF16, reason="no oneDNN bfloat16 on this CPU")
def test_model_under_bf16_autocast_equals_torchs_autocast(tiny_cfg):
    model = _perturbed_tiny(tiny_cfg)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast = model(x).float()
        with disabled():
            plain = model(x).float()
    torch.testing.assert_close(fast, plain, rtol=0, atol=2**-7 * plain.abs().max().item())


@needs_onednn
def test_unpacked_gives_the_gemm_the_plain_weight(asked_packs):
    layer, x = _packed(24, 40), torch.randn(3, 24)
    asked = asked_packs
    with torch.no_grad():
        packed = layer(x)
        with unpacked():
            plain = layer(x)  # the weight as it is, reordered inside the call
            assert "mkldnn::_linear_pointwise" in ops_that_ran(lambda: layer(x))
        after = layer(x)
    assert [w is layer.weight for w in asked] == [True, True]  # outside `unpacked` only
    torch.testing.assert_close(plain, packed, rtol=0, atol=1e-6)
    torch.testing.assert_close(after, packed, rtol=0, atol=0)


@needs_onednn
def test_a_weight_replaced_twice_is_never_served_a_stale_pack():
    """`weight.data = new` keeps the version counter, and the allocator readily gives a later
    tensor the freed address of the packed one (about every other try here, before the pack
    held its storage): the data pointer alone would then match and serve the old weight."""
    layer, x = _packed(24, 40), torch.randn(3, 24)
    with torch.no_grad():
        for _ in range(20):
            layer(x)  # packs the weight as it is now
            layer.weight.data = torch.randn(40, 24)
            layer.weight.data = torch.randn(40, 24)  # may land where the packed one was
            torch.testing.assert_close(layer(x).double(), _f64_linear(x, layer), rtol=0, atol=1e-5)


@needs_onednn
def test_packing_leaves_inference_tensors_alone_and_ends_with_its_weight():
    with torch.inference_mode():
        w = torch.randn(40, 24)  # no version counter: a change in place could not be seen
    assert packed_weight(w) is w
    transposed = torch.randn(24, 40).t()  # non-contiguous: as it is
    assert packed_weight(transposed) is transposed
    w = torch.randn(40, 24)
    packed = weakref.ref(packed_weight(w))
    assert packed() is not None
    del w
    gc.collect()
    assert packed() is None  # the packed copy goes with its weight


@needs_onednn
def test_a_model_copied_after_a_forward_computes_the_same(tiny_cfg):
    model = _perturbed_tiny(tiny_cfg)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = model(x)  # packs every linear weight
        twin = copy.deepcopy(model)
        for p in twin.parameters():
            p.mul_(1.5)  # the copy's weights change; the original's packed copies must not
        assert not torch.equal(twin(x), out)
        torch.testing.assert_close(model(x), out, rtol=0, atol=0)
        with disabled():
            plain = twin(x)
        torch.testing.assert_close(twin(x), plain, rtol=0, atol=1e-5 * plain.abs().max().item())


def test_the_fast_path_applies_only_where_it_is_safe():
    x = torch.randn(4, 8)
    with torch.enable_grad():
        assert not applies(x)  # no backward for the fused ops
    with torch.no_grad():
        assert applies(x) == ONEDNN
        assert not applies(x.double()) and not applies(x.bfloat16())
        assert not applies(torch.empty(4, 8, device="meta"))  # the FLOP counter's device
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not applies(x)  # would bypass autocast's casts
        for off in (disabled(), torch.backends.mkldnn.flags(enabled=False)):
            with off:
                assert not applies(x)
                assert "mkldnn::_linear_pointwise" not in ops_that_ran(lambda: linear(x, x, None))
        assert applies(x) == ONEDNN  # restored on exit


def test_the_kernels_in_use_are_recorded():
    from hilocli.runtime import environment

    assert environment()["cpu_kernels"].startswith("oneDNN") == ONEDNN
    with unpacked():
        assert ("reordered per call" in environment()["cpu_kernels"]) == ONEDNN
    with disabled():
        assert environment()["cpu_kernels"] == "torch defaults"


def _perturbed_tiny(tiny_cfg):
    """The tiny LITv2, random weights (seed 0) with BatchNorm statistics and DCN offsets moved off
    their initial values, so every branch of the token merging is exercised; linear weights
    kept packed, as in the models the commands load."""
    torch.manual_seed(0)
    model = create_model(tiny_cfg)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2.0)
        if hasattr(m, "conv_offset"):
            nn.init.normal_(m.conv_offset.weight, std=0.5)
    return keep_weights_packed(model)


@needs_onednn
def test_model_equals_plain_torch_path_and_keeps_autograd(tiny_cfg):
    model = _perturbed_tiny(tiny_cfg)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ops = ops_that_ran(lambda: model(x))
        fast = model(x)
        with disabled():
            plain = model(x)
    assert {"mkldnn::_linear_pointwise", "mkldnn::_convolution_pointwise"} <= ops
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-5 * plain.abs().max().item())
    # with autograd the plain ops run: same values, and gradients flow
    x.requires_grad_(True)
    out = model(x)
    torch.testing.assert_close(out.detach(), plain, rtol=0, atol=1e-5 * plain.abs().max().item())
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_a_hook_on_the_ffn_activation_still_fires(tiny_cfg):
    model = _perturbed_tiny(tiny_cfg)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = model(x)
        seen = []
        act = model.layers[0].blocks[0].mlp.act
        handle = act.register_forward_hook(lambda _m, _a, out: seen.append(out.shape))
        after = model(x)
        handle.remove()
    assert len(seen) == 1 and seen[0][-1] == model.layers[0].blocks[0].mlp.fc1.out_features
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5 * before.abs().max().item())


@pytest.mark.parametrize("batch", [1, 3])
def test_the_grid_view_is_channels_last_for_any_batch(tiny_cfg, batch):
    """A batch of 1 too: its convolutions (FFN, token merging) run channels-last and hand back
    tokens that need no copy (with `transpose(1, 2).reshape` the batch stride hid the layout)."""
    from hilocli.models.layout import grid_view

    x = torch.randn(batch, 6 * 5, 8)
    grid = grid_view(x, 6, 5)
    assert grid.shape == (batch, 8, 6, 5) and grid.data_ptr() == x.data_ptr()
    assert grid.stride() == (6 * 5 * 8, 1, 5 * 8, 8)  # channels-last in every dim
    torch.testing.assert_close(grid, x.transpose(1, 2).reshape(batch, 8, 6, 5), rtol=0, atol=0)
    model = _perturbed_tiny(tiny_cfg)
    ffn = model.layers[0].blocks[0].mlp
    merge = model.layers[0].downsample
    H = W = 16  # the tiny model's stage-1 grid at 64 px
    tokens = torch.randn(batch, H * W, ffn.fc1.in_features)
    with torch.no_grad():
        hidden = ffn.dwconv(ffn.fc1(tokens), H, W, gelu=True)  # (B, N, hidden)
        merged, Ho, Wo = merge(tokens, H, W)  # (B, Ho*Wo, 2C)
        ref = F.gelu(
            F.conv2d(
                ffn.fc1(tokens).transpose(1, 2).reshape(batch, -1, H, W).contiguous(),
                ffn.dwconv.dwconv.weight,
                ffn.dwconv.dwconv.bias,
                padding=1,
                groups=ffn.dwconv.dwconv.groups,
            )
        )
    assert hidden.is_contiguous() and merged.is_contiguous()  # no copy needed after the conv
    got = hidden.transpose(1, 2).reshape(ref.shape)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5 * ref.abs().max().item())
    assert (Ho, Wo) == (8, 8) and merged.shape == (batch, 64, merge.dconv.weight.shape[0])


def test_hifi_windows_run_the_fused_kernel_not_math():
    """SDPA falls back to its math path on 5-D (B, G, h, s*s, d) inputs: the windows are given
    to it as (B*G, h, s*s, d). The output equals the explicit softmax path."""
    torch.manual_seed(0)
    layer = HiLo(64, 4, 2, 0.5).eval()
    x = torch.randn(2, 7 * 7, 64)  # 7 x 7 grid: padded to 8 x 8
    with torch.no_grad():
        assert kernels_used(lambda: layer(x, 7, 7)) == ["flash (CPU)"]
        fused = layer(x, 7, 7)
        layer.need_weights = True
        explicit = layer(x, 7, 7)
    torch.testing.assert_close(fused, explicit, rtol=0, atol=1e-6)
