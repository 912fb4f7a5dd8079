"""Figures that tell the truth at a glance, and runs that pay only for what they use: colour
scales from 0 with the uniform weight marked, branch colours, legends that promise only what is
drawn, small PNGs, no scipy.stats for one image, checkpoints loaded into meta-built models, the
default decoding workers and the default attn-map layers."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import SAMPLES, TINY_CKPT, hilo
from tests.test_attention import _synthetic_layer, _text_problems

TINY = ("--checkpoint", str(TINY_CKPT), "--resolution", "64", "--device", "cpu")


def test_a_near_uniform_head_stays_one_colour_and_the_uniform_weight_is_ticked():
    from hilocli.attn_map.mosaic import Mosaic, weight_norm

    rng = np.random.default_rng(0)
    flat = rng.uniform(0.018, 0.022, (7, 7))  # 49 keys: uniform 1/49 = 0.0204
    norm = weight_norm([flat])
    assert norm.vmin == 0.0 and norm.vmax == pytest.approx(flat.max())
    # every weight in the top fifth of the scale: one colour, not a structure
    assert norm(flat).min() == pytest.approx(flat.min() / flat.max()) and norm(flat).min() > 0.8
    m = Mosaic(1, 1, 40, 100)
    m.colour_bar(0, norm, 1 / 49)
    y = 40 + 4 + 2  # inside the bar strip
    x0, x1 = m._bar_span(0)
    white = np.nonzero((m.image[y, x0:x1] == 1.0).all(axis=-1))[0]
    assert white.size and abs(white.mean() - (1 / 49) / flat.max() * (x1 - x0)) <= 1.5


def test_branch_colours_are_the_same_in_every_figure():
    from hilocli.attn_map import figures as attn
    from hilocli.compare import figures as compare
    from hilocli.spectrum import figures as spectrum

    for colours in (attn.COLORS, compare.COLORS, spectrum.COLORS):
        assert (colours["hifi"], colours["lofi"]) == ("tab:red", "tab:blue")
    assert not {"tab:red", "tab:blue"} & set(compare.WORD_COLOURS.values())
    assert attn.COLORS["msa"] not in ("tab:red", "tab:blue")


def test_overview_shows_each_branch_mean_msa_unlabelled_as_hifi_lofi_and_stays_small():
    from matplotlib.text import Text
    from PIL import Image

    from hilocli.attn_map.figures import COLORS
    from hilocli.attn_map.overview import layer_heading, overview_figure

    hilo_layer, queries, _ = _synthetic_layer(12, 2, 2, (1024, 1024))
    msa, _, _ = _synthetic_layer(12, 0, 1, (1024, 1024), seed=1)
    y, x = np.mgrid[0:1024, 0:1024]
    smooth = (127 + 100 * np.sin(x / 40.0)[..., None] * np.cos(y / 57.0)[..., None]).repeat(3, -1)
    display = Image.fromarray(smooth.astype(np.uint8))
    fig, plotted = overview_figure(display, [hilo_layer, msa], queries, "litv2_s; a.jpg")
    assert plotted["columns"] == [
        "Hi-Fi mean (2 heads)",
        "Lo-Fi mean (10 heads)",
        "MSA mean (12 heads)",
    ]
    np.testing.assert_allclose(
        plotted["query_maps"][2][0], msa.maps[0].lofi.mean(axis=0), rtol=1e-12
    )
    texts = {t.get_text(): t.get_color() for t in fig.findobj(Text)}
    assert texts["Hi-Fi mean (2 heads)"] == COLORS["hifi"]
    assert texts["Lo-Fi mean (10 heads)"] == COLORS["lofi"]
    assert texts["MSA mean (12 heads)"] == COLORS["msa"]
    heading = layer_heading(msa)
    assert heading in texts and "MSA" in heading and "Fi" not in heading
    assert _text_problems(fig) == []
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100, pil_kwargs={"compress_level": 1})
    assert png.tell() < 2**20  # under 1 MiB at 1024 px input


KNOWN = ("--model-fn", "tests/fixtures/known_answers.py:highpass_lowpass", "--random-init",
         "--resolution", "128", "--device", "cpu")  # fmt: skip  # both branches carry power


def _spy_figures(monkeypatch) -> dict:
    """The spectrum hf and summary figures a run draws, by function name."""
    from hilocli.spectrum import figures, summary

    seen = {}
    for module, name in ((figures, "hf_figure"), (summary, "summary_figure")):
        real = getattr(module, name)

        def spy(result, real=real, name=name):
            seen[name] = real(result)[0]
            return seen[name], {}

        monkeypatch.setattr(module, name, spy)
    return seen


def test_one_image_legends_promise_no_interval(tmp_path, monkeypatch, unrasterised_figures):
    seen = _spy_figures(monkeypatch)
    res = hilo("spectrum", SAMPLES / "chelsea.jpg", *KNOWN, "--out", tmp_path)
    assert res.returncode == 0, res.stderr
    for name, fig in seen.items():
        labels = [t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts()]
        assert labels and not any("CI" in t or "IQR" in t for t in labels), (name, labels)
    labels = [t.get_text() for t in seen["summary_figure"].axes[0].get_legend().get_texts()]
    assert "Hodges-Lehmann estimate (no interval at this n)" in labels
    # a silent branch (the tiny fixture's Lo-Fi at 64 px) is not tested: no axes, no legend
    res = hilo("spectrum", SAMPLES / "chelsea.jpg", *TINY, "--layer", "0", "--out", tmp_path / "s")
    assert res.returncode == 0, res.stderr
    assert "not tested" in res.stderr and seen["summary_figure"].axes == []


def test_spectrum_never_imports_scipy_stats(tmp_path):
    """Neither a one-image run nor the verdict's tests (signed ranks, Westfall-Young, the exact
    and the normal null) import scipy.stats: its import alone would be most of the statistics'
    time."""
    code = (
        "import sys; import numpy as np; from hilocli.cli import app; "
        f"app(['spectrum', {str(SAMPLES / 'chelsea.jpg')!r}, *{list(TINY)!r}, '--layer', '0', "
        f"'--out', {str(tmp_path)!r}], standalone_mode=False); "
        "from hilocli.spectrum import exact, verdict; "
        "v = verdict(0.1 + np.random.default_rng(0).uniform(0, 0.05, (8, 3))); "
        "assert v.word == 'supported' and max(v.p_layers) <= 0.05, v; "
        "exact.WILCOXON_EXACT_MAX = 5; assert exact.signed_rank_p(8, 35.0) < 0.05; "
        "assert exact._critical_rank(8, 0.05)[2] == 'normal'; "
        "print('scipy.stats' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"


USER_MODELS = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, buffer: bool):
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.built_on = torch.empty(0).device.type
        if buffer:  # not in any state dict: the file cannot fill it
            self.register_buffer("scale", torch.full((4,), 2.0), persistent=False)


def plain():
    return Net(False)


def with_buffer():
    return Net(True)
"""


@pytest.mark.parametrize("fn,built_on", [("plain", "meta"), ("with_buffer", "cpu")])
def test_a_checkpoint_fills_a_model_built_on_the_meta_device(tmp_path, fn, built_on):
    import torch

    from hilocli.weights import WeightsRequest

    spec = tmp_path / "user_models.py"
    spec.write_text(USER_MODELS)
    weights = {"proj.weight": torch.arange(16.0).reshape(4, 4), "proj.bias": torch.ones(4)}
    path = tmp_path / "w.pth"
    torch.save(weights, path)
    model = WeightsRequest(model_fn=f"{spec}:{fn}", checkpoint=path).load().model
    assert model.built_on == built_on  # no random init where the file fills every tensor
    assert torch.equal(model.proj.weight, weights["proj.weight"])
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    if fn == "with_buffer":
        assert torch.equal(model.scale, torch.full((4,), 2.0))


def test_default_workers_leave_the_forwards_cores_alone(monkeypatch):
    import torch

    from hilocli import batches

    monkeypatch.setattr(batches, "available_cores", lambda: 4)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert batches.default_workers(device=torch.device("cpu")) == 0
    assert batches.default_workers(device=torch.device("cuda")) == 3
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert batches.default_workers(device=torch.device("cpu")) == 3


def test_attn_map_default_layers_are_the_last_of_each_stage():
    import torch

    from hilocli.attn_map.run import default_layers
    from hilocli.models import create_model
    from tests.conftest import hilo_layers

    with torch.device("meta"):
        infos = [layer.info for layer in hilo_layers(create_model("litv2_s"))]
    assert [i.stage for i in infos] == [2] * 6 + [3] * 2
    assert default_layers(infos) == [5, 7]
