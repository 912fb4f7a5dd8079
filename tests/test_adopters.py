"""OpenMixup and birder LITv2 checkpoints (built from the tiny fixture by renaming keys as in
HILO_ADOPTERS.md) load into hilo's LITv2 and reproduce the authors' logits; `hilo convert`
round-trips."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from tests.conftest import TINY_CKPT, TINY_EXPECTED, assert_one_line_error, hilo

ATTN_STAGES = {2, 3}  # 0-based stages with attention in the tiny fixture


def authors_sd() -> dict:
    return torch.load(TINY_CKPT, weights_only=True)["model"]


def to_openmixup(sd: dict, gammas: bool = False) -> dict:
    """The authors' names -> OpenMixup classifier names (HILO_ADOPTERS.md 1.1, 1.2)."""
    out = {}
    for k, v in sd.items():
        if m := re.match(r"patch_embed\.proj\.(.+)", k):
            out[f"backbone.patch_embed1.projection.{m[1]}"] = v
        elif m := re.match(r"patch_embed\.norm\.(.+)", k):
            out[f"backbone.patch_embed1.norm.{m[1]}"] = v
        elif m := re.match(r"layers\.(\d)\.downsample\.dconv\.bias", k):
            pass  # no slot: absorbed into the BatchNorm's running mean below
        elif m := re.match(r"layers\.(\d)\.downsample\.dconv\.(.+)", k):
            out[f"backbone.patch_embed{int(m[1]) + 2}.dconv.{m[2]}"] = v
        elif m := re.match(r"layers\.(\d)\.downsample\.norm_layer\.(.+)", k):
            if m[2] == "running_mean":
                v = v - sd[f"layers.{m[1]}.downsample.dconv.bias"]
            out[f"backbone.patch_embed{int(m[1]) + 2}.norm.{m[2]}"] = v
        elif m := re.match(r"layers\.(\d)\.blocks\.(\d+)\.(.+)", k):
            i, j, rest = int(m[1]), m[2], m[3]
            if rest.startswith("norm"):
                ln = "ln2" if (rest.startswith("norm2") and i in ATTN_STAGES) else "ln1"
                rest = ln + rest[5:]
            rest = rest.replace("mlp.", "ffn.", 1)
            out[f"backbone.blocks{i + 1}.{j}.{rest}"] = v
        elif m := re.match(r"norm\.(.+)", k):
            out[f"backbone.norm3.{m[1]}"] = v
        elif m := re.match(r"head\.(.+)", k):
            out[f"head.fc.{m[1]}"] = v
    if gammas:  # layer scale 1 everywhere but one block, which gets a real scale undone in fc2
        g = torch.linspace(0.5, 2.0, 64)
        pre = "backbone.blocks3.0."
        out[pre + "gamma_2"] = g
        out[pre + "ffn.fc2.weight"] = out[pre + "ffn.fc2.weight"] / g[:, None]
        out[pre + "ffn.fc2.bias"] = out[pre + "ffn.fc2.bias"] / g
        out[pre + "gamma_1"] = torch.ones(64)
    return out


def to_birder(sd: dict) -> dict:
    """The authors' names -> birder names (HILO_ADOPTERS.md 2.1): pure renaming."""
    out = {}
    for k, v in sd.items():
        k2 = k.replace("patch_embed.proj.", "stem.0.").replace("patch_embed.norm.", "stem.2.")
        if m := re.match(r"layers\.(\d)\.downsample\.(.+)", k):
            rest = m[2].replace("dconv.conv_offset.", "offset_conv.")
            rest = rest.replace("dconv.", "deform_conv.").replace("norm_layer.", "norm.")
            k2 = f"body.stage{int(m[1]) + 2}.downsample.{rest}"
        elif m := re.match(r"layers\.(\d)\.blocks\.(\d+)\.(.+)", k):
            i, rest = int(m[1]), m[3]
            rest = rest.replace("mlp.dwconv.dwconv.", "mlp.dwconv.")
            if i not in ATTN_STAGES:
                rest = rest.replace("norm2.", "norm.")
            k2 = f"body.stage{i + 1}.blocks.{m[2]}.{rest}"
        elif k.startswith("norm."):
            k2 = "features.0." + k[5:]
        elif k.startswith("head."):
            k2 = "classifier." + k[5:]
        out[k2] = v
    return out


def logits_of(path) -> np.ndarray:
    from hilocli.checkpoint import load_model

    loaded = load_model(checkpoint=path, progress=False)
    x = torch.from_numpy(np.load(TINY_EXPECTED)["input"])
    with torch.no_grad():
        return loaded.model(x).numpy(), loaded


@pytest.mark.parametrize(
    "layout,build",
    [
        ("openmixup", lambda sd: {"meta": {"epoch": 3}, "state_dict": to_openmixup(sd)}),
        ("openmixup", lambda sd: {"state_dict": to_openmixup(sd, gammas=True)}),
        ("birder", lambda sd: {"state": to_birder(sd), "task": "image_classification"}),
    ],
)
def test_adopter_checkpoints_reproduce_authors_logits(tmp_path, layout, build):
    sd = authors_sd()
    path = tmp_path / f"{layout}.pt"
    torch.save(build(sd), path)
    logits, loaded = logits_of(path)
    assert loaded.provenance.layout == layout
    expected = np.load(TINY_EXPECTED)["logits"]
    np.testing.assert_allclose(logits, expected, rtol=0, atol=2e-5)


def test_openmixup_key_count_is_authors_minus_dconv_biases():
    assert len(to_openmixup(authors_sd())) == len(authors_sd()) - 3


def test_birder_mlp_head_is_refused_naming_the_difference(tmp_path):
    sd = to_birder(authors_sd())
    sd["classifier.0.weight"] = sd.pop("classifier.weight")
    path = tmp_path / "b.pt"
    torch.save({"state": sd}, path)
    r = hilo("info", "--checkpoint", path)
    assert_one_line_error(r, 1, "MLP classifier head")


def test_openmixup_mhsa_stage_is_refused(tmp_path):
    sd = to_openmixup(authors_sd())
    sd["backbone.blocks4.0.attn.qkv.weight"] = torch.zeros(3, 3)
    path = tmp_path / "o.pth"
    torch.save({"state_dict": sd}, path)
    assert_one_line_error(hilo("info", "--checkpoint", path), 1, "MHSA")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_convert_round_trips(tmp_path, suffix):
    src = tmp_path / "birder.pt"
    torch.save({"state": to_birder(authors_sd())}, src)
    out = tmp_path / f"litv2{suffix}"
    r = hilo("convert", src, out, "--json")
    assert r.returncode == 0, r.stderr
    import hashlib
    import json

    record = json.loads(r.stdout)
    assert record["results"]["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert record["results"]["source_layout"] == "birder"
    if suffix == ".pth":
        written = torch.load(out, weights_only=True)
        sd = written["model"]
        assert written["hilo_convert"]["source_sha256"] == record["results"]["source_sha256"]
    else:
        from safetensors import safe_open
        from safetensors.torch import load_file

        sd = load_file(str(out))
        with safe_open(str(out), "pt") as f:
            assert f.metadata()["source_layout"] == "birder"
    ref = authors_sd()
    assert set(sd) == set(ref)
    for k in ref:
        assert torch.equal(sd[k], ref[k]), k
    # and back: converting the converted file gives identical tensors again
    again = tmp_path / f"again{suffix}"
    assert hilo("convert", out, again).returncode == 0
    logits, _ = logits_of(again)
    np.testing.assert_allclose(logits, np.load(TINY_EXPECTED)["logits"], rtol=0, atol=2e-5)


def test_convert_refuses_existing_output_and_bad_suffix(tmp_path):
    out = tmp_path / "x.pth"
    out.write_bytes(b"")
    assert_one_line_error(hilo("convert", TINY_CKPT, out), 2, "exists")
    assert_one_line_error(hilo("convert", TINY_CKPT, tmp_path / "x.bin"), 2, ".safetensors")
