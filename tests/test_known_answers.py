"""Known answers for `hilo spectrum` (issue 21, item 7): user models whose branches are fixed
filters (tests/fixtures/known_answers.py) and image sets of known structure (known_images.py).

First what holds by construction, checked on the captured maps with independent references
(scipy, numpy); then what hilo must conclude from them (the tables below, also read by
benchmarks/validate.py).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import capture_layers, hilo, unrasterise_figures
from tests.fixtures import known_answers as ka
from tests.fixtures import known_images as ki

SPEC = "tests/fixtures/known_answers.py"
MODELS = [
    "highpass_lowpass",
    "swapped",
    "identical",
    "silent_lofi",
    "silent_hifi",
    "block_only",
    "grating_input",
    "random",
]
RESOLUTION = 128  # patch 8: a 16 x 16 token grid

# What `hilo spectrum` must conclude (results.verdict.word, or the verdict line's
# "not comparable" when results.verdict is null) for each model on 8 distinct scenes.
# "not supported": any outcome except "supported".
KNOWN_VERDICTS = {
    "highpass_lowpass": "supported",
    "swapped": "contradicted",
    "identical": "equivalent",
    "silent_lofi": "not comparable",
    "silent_hifi": "not comparable",
    "block_only": "not supported",
    "grating_input": "supported",  # the grating is real content of Hi-Fi's input
}
# Source scenes (results.verdict.n: groups) that highpass_lowpass's test runs over, per image set.
KNOWN_GROUPS = {"distinct 8": 8, "7 variants of one photo": 1, "5 photos + 20 variants of one": 5}
# Hi-Fi's median share of high-band power explained by the s x s window blocks (block_share).
KNOWN_BLOCK_SHARE = {"block_only": (">=", 0.8), "grating_input": ("<=", 0.2)}
# Constant images through a model whose zero-padded depthwise conv marks the border: undefined.
CONSTANT_CASE = ("random", {"dwconv": True, "sharpness": 32})  # Lo-Fi not silent


def obtained_word(results: dict) -> str:
    """The verdict's word; "undefined" when no group is left or no verdict; "not comparable"
    when the verdict is null and its line says so; "missing" when the run has no such keys."""
    if "verdict" not in results:
        return "missing"
    verdict = results["verdict"]
    if verdict is None:
        line = results.get("verdict_line") or ""
        return "not comparable" if "not comparable" in line else "undefined"
    if verdict.get("n") == 0:
        return "undefined"
    return verdict.get("word", "missing")


def meets(expected: str, word: str) -> bool:
    if word == "missing":
        return False
    return word != "supported" if expected == "not supported" else word == expected


def groups(results: dict):
    """The number of source scenes tested: results.verdict.n, else results.n_groups or
    results.scenes.n_groups (a null verdict), else "missing"."""
    verdict, scenes = results.get("verdict"), results.get("scenes")
    if isinstance(verdict, dict) and "n" in verdict:
        return verdict["n"]
    if "n_groups" in results:
        return results["n_groups"]
    return scenes.get("n_groups", "missing") if isinstance(scenes, dict) else "missing"


def image_set(name: str, folder: Path) -> list[Path]:
    """The files of a named image set, written into `folder`."""
    if name == "distinct 8":
        return ki.distinct_photos(folder, 8)
    if name == "7 variants of one photo":
        return ki.photo_variants(ki.SAMPLES / "astronaut.jpg", folder, 7)
    if name == "5 photos + 20 variants of one":
        photos = ki.distinct_photos(folder, 5)
        return photos + ki.photo_variants(photos[0], folder, 20)
    if name == "constant":
        return ki.constant_images(folder, 8)
    raise KeyError(name)


def run_spectrum(folder: Path, out: Path, model: str, kwargs: dict | None, *extra) -> dict:
    """`hilo spectrum FOLDER --model-fn known_answers.py:MODEL --random-init --json` in process
    (figures built, not rasterised): the record's `results`."""
    args = ["spectrum", folder, "--model-fn", f"{SPEC}:{model}", "--random-init"]
    args += ["--model-kwargs", json.dumps(kwargs or {}), "-r", RESOLUTION, "--workers", "0"]
    with pytest.MonkeyPatch.context() as mp:
        unrasterise_figures(mp)
        r = hilo(*args, "-o", out, *extra, "--json")
    if r.returncode != 0:
        raise RuntimeError(f"hilo spectrum on {model}: {r.stderr.strip()}")
    return json.loads(r.stdout)["results"]


class SpectrumRuns:
    """runs(model, image set, kwargs, *options) -> `results`; each run once, each image set
    written into `root` on first use."""

    def __init__(self, root: Path):
        self.root, self.done = root, {}

    def __call__(self, model: str, images: str = "distinct 8", kwargs=None, *extra) -> dict:
        key = (model, images, json.dumps(kwargs or {}), extra)
        if key not in self.done:
            folder = self.root / images.replace(" ", "_")
            if not folder.exists():
                image_set(images, folder)
            out = self.root / f"out{len(self.done)}"
            self.done[key] = run_spectrum(folder, out, model, kwargs, *extra)
        return self.done[key]


@pytest.fixture(scope="module")
def spectrum(tmp_path_factory):
    return SpectrumRuns(tmp_path_factory.mktemp("known"))


def _info_layers(name: str, *args: str) -> list[dict]:
    r = hilo("info", "--model-fn", f"{SPEC}:{name}", "-r", RESOLUTION, *args, "--json")
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)["results"]
    assert results["rejected"] == []
    return results["hilo_layers"]


def test_hilo_finds_every_known_answer_layer():
    from hilocli.hilo.discover import find_layers

    for name in MODELS:
        (layer,), rejected = find_layers(getattr(ka, name)(seed=0))
        info = layer.info
        assert rejected == [] and info.path == "layer"
        assert (info.window_size, info.hifi_heads, info.lofi_heads, info.head_dim) == (2, 2, 2, 8)
    # through --model-fn (random imports its sibling user_models), grid and signature found
    (layer,) = _info_layers("random")
    assert (layer["path"], layer["signature"], layer["grid"]) == (
        "layer",
        "tokens (x, H, W)",
        [16, 16],
    )
    (layer,) = _info_layers("block_only", "--model-kwargs", '{"dim": 64, "ws": 4, "patch": 16}')
    assert (layer["window_size"], layer["head_dim"], layer["grid"]) == (4, 16, [8, 8])


def test_models_are_deterministic_given_the_seed():
    torch.manual_seed(3)
    a = ka.block_only().state_dict()
    b = ka.block_only(seed=3).state_dict()  # `seed` seeds a private RNG: the same weights
    torch.manual_seed(4)
    c = ka.block_only().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["layer.h_proj.weight"], c["layer.h_proj.weight"])


def test_filters_match_independent_references():
    from scipy.ndimage import gaussian_filter

    v = torch.randn(2, 9, 11, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for sigma in (1.0, 1.5):  # radius ceil(3 sigma) == scipy's int(3 sigma + 0.5) here
        ref = gaussian_filter(v.numpy(), (0, sigma, sigma, 0), mode="nearest", truncate=3.0)
        np.testing.assert_allclose(ka.gaussian_blur(v, sigma).numpy(), ref, atol=1e-12)
    s, a = 2, v.numpy()
    padded = np.pad(a, ((0, 0), (0, 1), (0, 1), (0, 0)), mode="edge")  # (2, 10, 12, 3)
    means = padded.reshape(2, 5, s, 6, s, 3).mean(axis=(2, 4))  # (2, 5, 6, 3)
    blocks = means.repeat(s, axis=1).repeat(s, axis=2)[:, :9, :11]
    np.testing.assert_allclose(ka.block_mean(v, s).numpy(), blocks, atol=1e-12)
    # bilinear, half-pixel centres, edges held: np.interp along each axis
    rows = (np.arange(10) + 0.5) / s - 0.5
    cols = (np.arange(12) + 0.5) / s - 0.5
    up = np.apply_along_axis(lambda t: np.interp(rows, np.arange(5), t), 1, means)
    up = np.apply_along_axis(lambda t: np.interp(cols, np.arange(6), t), 2, up)
    np.testing.assert_allclose(ka.smooth_block_mean(v, s).numpy(), up[:, :9, :11], atol=1e-12)


@functools.cache
def _photos(n: int = 2) -> torch.Tensor:
    """n sample-photo quadrants at RESOLUTION px, scaled to [-1, 1]: (n, 3, R, R)."""
    crops = [im.resize((RESOLUTION,) * 2) for im in ki.quadrants()[:n]]
    x = torch.tensor(np.stack([np.asarray(im) for im in crops]), dtype=torch.float32)
    return x.permute(0, 3, 1, 2) / 127.5 - 1


def _captured(name: str, photos: torch.Tensor, attn: bool = False, **kwargs):
    net = getattr(ka, name)(seed=0, **kwargs)
    with torch.no_grad(), capture_layers(net, [0], attn=attn) as cap:
        net(photos)
    return cap.records[0]


def hf_share(maps: torch.Tensor, cutoff: float = 0.25) -> np.ndarray:
    """Per image, the share of non-DC power above `cutoff` cycles/token: a Hann-windowed
    periodogram of (B, H, W, C) maps, summed over channels (an independent reference)."""
    x = maps.double().numpy()
    x = x - x.mean(axis=(1, 2), keepdims=True)
    H, W = x.shape[1:3]
    x = x * (np.hanning(H)[:, None, None] * np.hanning(W)[None, :, None])
    power = (np.abs(np.fft.fft2(x, axes=(1, 2))) ** 2).sum(axis=-1)  # (B, H, W)
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(H), np.fft.fftfreq(W), indexing="ij"))
    return power[:, radius > cutoff].sum(-1) / power.sum(axis=(1, 2))


def test_high_and_low_pass_branches_carry_what_they_say():
    photos = _photos()
    hl, sw = _captured("highpass_lowpass", photos), _captured("swapped", photos)
    assert (hf_share(hl.hifi_out) > 0.5).all() and (hf_share(hl.lofi_out) < 0.05).all()
    assert (hf_share(sw.hifi_out) < 0.05).all() and (hf_share(sw.lofi_out) > 0.5).all()
    # the Hi-Fi output is h_proj of the high-pass of its own values, read from the layer input
    layer = ka.highpass_lowpass(seed=0).layer
    with torch.no_grad():
        v = layer.h_qkv(hl.control)[..., 2 * layer.h_dim :]  # (B, H, W, h_dim)
        want = layer.h_proj(v - ka.gaussian_blur(v, 1.0))
    torch.testing.assert_close(hl.hifi_out, want, rtol=1e-5, atol=1e-6)


def test_identical_branches_give_equal_maps():
    rec = _captured("identical", _photos())
    assert torch.equal(rec.hifi_out, rec.lofi_out) and rec.hifi_out.abs().max() > 0.1


@pytest.mark.parametrize("silent,loud", [("silent_lofi", "hifi"), ("silent_hifi", "lofi")])
def test_a_silent_branch_has_1e8_of_its_power(silent, loud):
    photos = _photos()
    ref, rec = _captured("highpass_lowpass", photos), _captured(silent, photos)
    quiet = "lofi" if loud == "hifi" else "hifi"
    assert torch.equal(getattr(rec, f"{loud}_out"), getattr(ref, f"{loud}_out"))
    q, q_ref = getattr(rec, f"{quiet}_out").double(), getattr(ref, f"{quiet}_out").double()
    torch.testing.assert_close(q, 1e-4 * q_ref, rtol=1e-5, atol=1e-6 * q.abs().max().item())
    power = (q.square().mean() / q_ref.square().mean()).item()
    assert math.isclose(power, 1e-8, rel_tol=1e-4)
    ratio = (q.square().mean() / getattr(rec, f"{loud}_out").double().square().mean()).item()
    assert ratio < 1e-7  # under 1e-5 % of the loud branch's power


def test_block_only_hifi_is_block_constant_and_lofi_smooth():
    rec = _captured("block_only", _photos())
    hifi = rec.hifi_out.reshape(2, 8, 2, 8, 2, 16)  # (B, H/s, s, W/s, s, C)
    within = hifi - hifi.mean(dim=(2, 4), keepdim=True)
    assert within.abs().max() <= 1e-6 * hifi.abs().max()
    lofi = rec.lofi_out.reshape(2, 8, 2, 8, 2, 16)
    assert (lofi - lofi.mean(dim=(2, 4), keepdim=True)).std() > 0.05 * lofi.std()  # 0.09
    assert (hf_share(rec.lofi_out) < hf_share(rec.hifi_out)).all()  # only the block edges differ


def test_grating_input_adds_a_grating_at_one_over_s():
    photos = _photos()
    with_grating = _captured("grating_input", photos, amplitude=1.0)
    without = _captured("grating_input", photos, amplitude=0.0)
    added = (with_grating.control - without.control).double()  # (B, H, W, C)
    direction = ka.grating_input(seed=0).grating_direction.double()  # (C,)
    stripes = torch.tensor([(-1.0) ** x for x in range(16)], dtype=torch.float64)  # cos(pi x)
    want = (stripes.view(1, 1, 16, 1) * direction).expand_as(added)
    torch.testing.assert_close(added, want, rtol=0, atol=1e-5)
    power = np.abs(np.fft.fft2(added.numpy(), axes=(1, 2))) ** 2  # all at (0, 1/2) cycles/token
    assert power[:, 0, 8].sum() / power.sum() > 1 - 1e-9


def test_random_is_real_hilo_attention():
    rec = _captured("random", _photos(), attn=True)  # hilo recomputes and checks its attention
    torch.testing.assert_close(rec.lofi_attn.sum(-1), torch.ones_like(rec.lofi_attn[..., 0]))
    assert rec.hifi_attn.shape == (2, 64, 2, 4, 4)


VERDICT_CASES = [pytest.param(name, word) for name, word in KNOWN_VERDICTS.items()]


@pytest.mark.parametrize("name,expected", VERDICT_CASES)
def test_known_verdicts(spectrum, name, expected):
    results = spectrum(name)
    word = obtained_word(results)
    assert meets(expected, word), (expected, word, results.get("verdict_line"))
    if expected == "not comparable":
        assert results["verdict"] is None


GROUP_CASES = [pytest.param(name, n) for name, n in KNOWN_GROUPS.items()]


@pytest.mark.parametrize("images,n", GROUP_CASES)
def test_the_source_scene_is_the_unit(spectrum, images, n):
    assert groups(spectrum("highpass_lowpass", images)) == n


def test_constant_images_are_undefined(spectrum):
    model, kwargs = CONSTANT_CASE
    assert obtained_word(spectrum(model, "constant", kwargs)) == "undefined"


@pytest.mark.parametrize("name", list(KNOWN_BLOCK_SHARE))
def test_block_share(spectrum, name):
    op, bound = KNOWN_BLOCK_SHARE[name]
    share = spectrum(name)["layers"][0]["branches"]["hifi"]["median"]["block_share"]
    assert share >= bound if op == ">=" else share <= bound
