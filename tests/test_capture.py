"""Capture records each branch without changing what the model computes."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import capture_layers, hilo_layers


def test_capture_does_not_change_outputs_and_records_branches(tiny_model):
    x = torch.randn(2, 3, 72, 88)
    with torch.no_grad():
        plain = tiny_model(x)
        with capture_layers(tiny_model, [0, 1, 2], attn=True) as cap:
            captured = tiny_model(x)
    assert torch.equal(plain, captured)  # bit-identical
    rec = cap.records[0]
    H, W = tiny_model.grid_sizes(72, 88)[2]  # stage 3 grid: 4x5 (odd width: padded inside)
    assert rec.grid == (H, W) and rec.layer.name == "layers.2.blocks.0"
    assert (rec.layer.index, rec.layer.hifi_heads, rec.layer.lofi_heads) == (0, 1, 1)
    assert rec.control.shape == (2, H, W, 64)
    assert rec.hifi_out.shape == (2, H, W, 32) and rec.lofi_out.shape == (2, H, W, 32)
    G = ((H + 1) // 2) * ((W + 1) // 2)
    assert rec.hifi_attn.shape == (2, G, 1, 4, 4)
    assert rec.lofi_attn.shape == (2, 1, (H + H % 2) * (W + W % 2), G)
    msa = cap.records[2]
    assert msa.hifi_out is None and msa.hifi_attn is None and msa.lofi_out.shape[-1] == 128
    for t in (rec.hifi_attn, rec.lofi_attn, msa.lofi_attn):
        torch.testing.assert_close(t.sum(-1), torch.ones_like(t.sum(-1)))


def test_stop_early_records_the_same_and_runs_nothing_after_the_last_layer(tiny_model):
    """`Capture.forward` with stop_early ends the forward once every captured layer has
    finished: the records equal a whole forward's, the stages after the last layer never run,
    and the next forward starts afresh."""
    x = torch.randn(2, 3, 72, 88)
    calls = []
    last = tiny_model.layers[-1]  # the stage after layer 1's stage (layers.2)
    handle = last.blocks[0].register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            with capture_layers(tiny_model, [0, 1], verify=True) as whole:
                logits = whole.forward(tiny_model, x)
            ran_whole = len(calls)
            with capture_layers(tiny_model, [1, 0], verify=True, stop_early=True) as cap:
                assert cap.forward(tiny_model, x) is None
                assert len(calls) == ran_whole  # the last stage did not run
                assert cap.forward(tiny_model, x) is None  # the next batch: the same stop
    finally:
        handle.remove()
    assert logits is not None and ran_whole == 1
    for i in (0, 1):
        a, b = whole.records[i], cap.records[i]
        assert a.grid == b.grid and a.pooling == b.pooling == "pad"
        for attr in ("control", "hifi_out", "lofi_out"):
            assert torch.equal(getattr(a, attr), getattr(b, attr))
    # the MSA layer (index 2) runs after 0 and 1: with it in the set the forward reaches it
    with torch.no_grad(), capture_layers(tiny_model, [2], stop_early=True) as cap:
        assert cap.forward(tiny_model, x) is None and cap.records[2].lofi_out is not None


def test_branch_outputs_are_the_layer_output_channels(tiny_model):
    """Hi-Fi then Lo-Fi, concatenated, is exactly what the attention layer returns."""
    attn = tiny_model.layers[2].blocks[1].attn
    seen = {}
    attn.register_forward_hook(lambda _m, args, out: seen.update(out=out, H=args[1], W=args[2]))
    with torch.no_grad(), capture_layers(tiny_model, [1]) as cap:
        tiny_model(torch.randn(1, 3, 64, 64))
    rec = cap.records[1]
    joined = torch.cat([rec.hifi_out, rec.lofi_out], -1).reshape(1, -1, 64)
    assert torch.equal(joined, seen["out"])


def test_hooks_are_removed_even_after_an_error(tiny_model):
    count = lambda: sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks)  # noqa: E731
        for m in tiny_model.modules()
    )
    before = count()
    with pytest.raises(RuntimeError):
        with capture_layers(tiny_model, [0, 1]):
            assert count() > before
            raise RuntimeError("boom")
    assert count() == before


def test_records_can_move_to_cpu_and_bad_index_is_rejected(tiny_model):
    from hilocli.option_lists import parse_layers

    with torch.no_grad(), capture_layers(tiny_model, [2], keep_on_device=False) as cap:
        tiny_model(torch.randn(1, 3, 64, 64))
    assert cap.records[2].lofi_out.device.type == "cpu"
    # the index --layer takes is checked where layers are chosen, before any capture
    with pytest.raises(ValueError, match="out of range"):
        parse_layers("3", len(hilo_layers(tiny_model)))


def test_litv2_branches_and_attention_are_the_modules_own(tiny_model):
    """What the removed `hifi_out`/`lofi_out` taps recorded: each branch as the module's own
    `hifi()`/`lofi()` on the padded grid, cropped; attention as an explicit recomputation from
    the module's projections on the captured input (odd grid, so padding is exercised)."""
    x = torch.randn(2, 3, 72, 88)
    with torch.no_grad(), capture_layers(tiny_model, [0, 2], attn=True) as cap:
        tiny_model(x)
    for i in (0, 2):
        rec, attn = cap.records[i], hilo_layers(tiny_model)[i].module
        H, W = rec.grid
        with torch.no_grad():
            grid = attn.pad(rec.control)  # (B, Hp, Wp, C)
            if attn.h_heads:
                torch.testing.assert_close(rec.hifi_out, attn.hifi(grid)[:, :H, :W])
                q, k, _ = attn.hifi_qkv(grid)  # (B, G, h, s*s, d)
                want = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(-1)
                torch.testing.assert_close(rec.hifi_attn, want)
            torch.testing.assert_close(rec.lofi_out, attn.lofi(grid)[:, :H, :W])
            q, k, _ = attn.lofi_qkv(grid)  # q (B, h, Hp*Wp, d), k (B, h, M, d)
            want = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(-1)
            torch.testing.assert_close(rec.lofi_attn, want)
        assert rec.pooling == "pad"  # the authors' rule
