"""Spectral analysis on signals whose spectrum is known, and the verdict on synthetic branches."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from hilocli.spectrum import (
    BranchAccumulator,
    SpectrumCollector,
    SpectrumSettings,
    axis_grid_marks,
    frequency_axes,
    hann_window,
    layer_deltas,
    paper_channel_range,
    summary_line,
    verdict,
)
from tests.conftest import capture_layers, hilo_layers

SETTINGS = SpectrumSettings()
# the closed-form checks below use the plain FFT (boundary "none"): the default Hann-windowed
# periodogram is tested against its known answers in tests/test_spectrum_measures.py
PLAIN = SpectrumSettings(boundary="none")
SIZES = [(14, 14), (7, 7), (16, 10), (9, 15)]  # even, odd, non-square both ways


def measure(maps: torch.Tensor, window_size: int | None = None, settings: SpectrumSettings = PLAIN):
    acc = BranchAccumulator("x", settings, window_size)
    acc.add(maps)
    return acc.finish()


def checkerboard(h: int, w: int, channels: int = 3) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    board = ((yy + xx) % 2 * 2 - 1).float()  # (H, W) +-1
    return board[None, :, :, None].repeat(2, 1, 1, channels)  # (B, H, W, C)


def cosine(h: int, w: int, ky: int, kx: int, phase: float = 0.3) -> torch.Tensor:
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    wave = torch.cos(2 * math.pi * (ky * yy / h + kx * xx / w) + phase) + 0.7  # non-zero mean
    return wave.float()[None, :, :, None].repeat(1, 1, 1, 2)  # (1, H, W, 2)


# -- frequency geometry -------------------------------------------------------------------------


@pytest.mark.parametrize("h,w", SIZES)
def test_frequency_axes_are_true_cycles_per_token(h, w):
    ax = frequency_axes(h, w)
    assert ax.fy[1].item() == pytest.approx(1 / h) and ax.fx[1].item() == pytest.approx(1 / w)
    # an odd axis has no Nyquist sample; an even one reaches exactly -0.5
    assert ax.fy.abs().max().item() == pytest.approx((h // 2) / h)
    assert ax.fx.abs().max().item() == pytest.approx((w // 2) / w)
    assert ax.radius[0, 0] == 0 and ax.dc.sum() == 1
    length = max(h, w)
    assert ax.bin_centers[1].item() == pytest.approx(1 / length)
    corner = math.hypot((h // 2) / h, (w // 2) / w)
    assert ax.bin_centers[-1].item() == pytest.approx(round(corner * length) / length)
    # every frequency falls in exactly one radial bin, the one nearest its radius
    members = (ax.bin_weights > 0).sum(0)
    assert torch.equal(members, torch.ones(h * w, dtype=members.dtype))
    nearest = (ax.radius.flatten()[None, :] - ax.bin_centers[:, None]).abs().argmin(0)
    assert torch.equal(nearest.reshape(h, w), ax.bin_index)


def test_window_grid_marks():
    assert axis_grid_marks(14, 2).nonzero().flatten().tolist() == [7]  # 0.5
    assert axis_grid_marks(7, 2).nonzero().flatten().tolist() == [3, 4]  # +-3/7, nearest to 0.5
    assert axis_grid_marks(16, 4).nonzero().flatten().tolist() == [4, 8, 12]  # 0.25, 0.5, -0.25
    assert not axis_grid_marks(14, 1).any() and not axis_grid_marks(1, 2).any()
    grid = frequency_axes(6, 4, window_size=2).grid
    assert grid[3].all() and grid[:, 2].all() and grid.sum() == 6 + 4 - 1 and not grid[0, 0]


def test_hann_window_zeroes_no_row():
    w = hann_window(2, 7)
    assert w.min() > 0 and w.shape == (2, 7)
    assert torch.allclose(w, w.flip(0)) and torch.allclose(w, w.flip(1))  # symmetric
    assert w[0, 3].item() == pytest.approx(math.sin(math.pi * 0.25) ** 2)  # centre column is 1


# -- known signals ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [8, 14])
def test_checkerboard_puts_all_energy_at_the_highest_frequency(n):
    spec = measure(checkerboard(n, n))
    assert spec.per_image["hf_fraction"] == pytest.approx([1.0, 1.0], abs=1e-6)
    assert spec.per_image["centroid"] == pytest.approx([math.sqrt(0.5)] * 2, abs=1e-6)
    assert np.argmax(spec.radial_power) == len(spec.radial_freq) - 1  # the (0.5, 0.5) corner
    # with 2 x 2 windows the checkerboard averages to zero in every window: no block structure,
    # all of it content (the old grid regression called it all artifact)
    spec2 = measure(checkerboard(n, n), window_size=2)
    assert spec2.per_image["block_share"] == pytest.approx([0.0, 0.0], abs=1e-6)
    assert spec2.per_image["hf_fraction_deblocked"] == pytest.approx([1.0, 1.0], abs=1e-6)


@pytest.mark.parametrize("n", [7, 15])
def test_checkerboard_odd_size_is_still_mostly_high(n):
    spec = measure(checkerboard(n, n))
    # an odd grid has no Nyquist sample: a +-1 board leaks, but stays above the cutoff
    assert spec.per_image["hf_fraction"].min() > 0.99
    assert spec.per_image["centroid"].min() > 0.5
    top = spec.radial_freq[np.argmax(spec.radial_power)]
    assert top > 0.5  # the corner bins, beyond Nyquist on both axes


@pytest.mark.parametrize("h,w", SIZES)
def test_constant_map_has_no_energy_anywhere(h, w):
    spec = measure(torch.full((2, h, w, 3), 3.7), window_size=2)
    # 0/0 is undefined (NaN), never 0 ("no high frequency"); the profiles average no image
    for key in ("hf_fraction", "block_share", "hf_fraction_deblocked", "centroid"):
        assert np.isnan(spec.per_image[key]).all(), key
    assert spec.map_images == 0 and np.isnan(spec.radial_power_rel).all()


@pytest.mark.parametrize("h,w", SIZES)
@pytest.mark.parametrize("axis", ["x", "y"])
def test_sinusoid_peaks_at_its_frequency(h, w, axis):
    n = w if axis == "x" else h
    for k in range(1, n // 2 + 1):
        maps = cosine(h, w, 0, k) if axis == "x" else cosine(h, w, k, 0)
        spec = measure(maps)
        f = k / n
        peak = spec.radial_freq[np.argmax(spec.radial_power)]
        assert abs(peak - f) <= 0.5 / max(h, w) + 1e-9, (k, peak, f)
        if h == w:
            assert peak == pytest.approx(f, abs=1e-6)
        # one radius carries all the power: the centroid is that radius exactly
        assert spec.per_image["centroid"][0] == pytest.approx(f, abs=1e-5)
        on_cutoff = abs(f - 0.25) < 1e-9  # a frequency on the cutoff counts half to each band
        expect = 0.5 if on_cutoff else float(f > 0.25)
        assert spec.per_image["hf_fraction"][0] == pytest.approx(expect, abs=1e-5)


def test_diagonal_sinusoid_and_hann_keep_the_peak():
    spec = measure(cosine(14, 14, 3, 3))
    assert spec.per_image["centroid"][0] == pytest.approx(math.hypot(3, 3) / 14, abs=1e-5)
    windowed = measure(cosine(14, 14, 0, 4), settings=SpectrumSettings(boundary="hann"))
    assert windowed.radial_freq[np.argmax(windowed.radial_power)] == pytest.approx(4 / 14)
    # the window spreads the line into its neighbours, but most power stays in the +-1 bin band
    rel = windowed.radial_power_rel * np.bincount(
        frequency_axes(14, 14).bin_index.flatten().numpy(), minlength=len(windowed.radial_freq)
    )
    assert rel[3:6].sum() > 0.9


def test_log_amplitude_map_is_centred():
    spec = measure(cosine(14, 10, 0, 3))
    assert spec.freq_y[7] == 0 and spec.freq_x[5] == 0
    amp = spec.log_amplitude
    peaks = np.argwhere(amp > amp.max() - 1e-3)
    assert sorted(map(tuple, peaks)) == [(7, 2), (7, 8)]  # fx = -0.3 and +0.3
    assert spec.freq_x[2] == pytest.approx(-0.3) and spec.freq_x[8] == pytest.approx(0.3)


def test_park_kim_diagonal_is_relative_to_zero_frequency():
    torch.manual_seed(0)
    smooth = F.avg_pool2d(torch.randn(4, 8, 18, 18), 5, 1).permute(0, 2, 3, 1) + 2.0  # (4,14,14,8)
    spec = measure(smooth)
    # issue 9: Park & Kim's diagonal ends at (h/2 - 1)/h on even grids (no Nyquist point)
    assert spec.parkkim_freq.tolist() == pytest.approx([k / 14 for k in range(7)])
    assert spec.parkkim_omega[-1] == pytest.approx(2 * math.pi * 6 / 14)
    assert spec.parkkim_rel_log_amplitude[0] == 0
    # computed WITHOUT mean removal: the DC term (mean 2.0) dominates, the rest falls below it
    assert np.all(spec.parkkim_rel_log_amplitude[1:] < 0)
    # and it is log|F| averaged over images and channels, read on the diagonal
    f = torch.fft.fft2(smooth.permute(0, 3, 1, 2).double()).abs()
    logs = torch.log(f + 1e-6).mean((0, 1))
    expect = torch.stack([logs[k, k] - logs[0, 0] for k in range(7)]).numpy()
    np.testing.assert_allclose(spec.parkkim_rel_log_amplitude, expect, atol=1e-4)


def test_paper_channels_follow_the_authors_shift():
    assert paper_channel_range(64) == list(range(32, 40))
    assert paper_channel_range(320) == list(range(160, 168))
    assert paper_channel_range(10) == list(range(2, 10))
    assert paper_channel_range(4) == [0, 1, 2, 3]
    maps = torch.randn(3, 6, 6, 64)
    spec = measure(maps)
    expect = torch.log(torch.fft.fft2(maps.permute(0, 3, 1, 2)).abs() + 1e-6)[:, 32:40].mean(0)
    np.testing.assert_allclose(
        spec.paper_maps, torch.fft.fftshift(expect, dim=(-2, -1)).numpy(), atol=1e-4
    )


def test_mixed_grid_sizes_keep_every_image():
    acc = BranchAccumulator("x", SETTINGS, 2)
    acc.add(torch.randn(3, 14, 14, 4))
    acc.add(torch.randn(1, 12, 18, 4))
    spec = acc.finish()
    assert spec.n_images == 4 and len(spec.per_image["hf_fraction"]) == 4
    assert spec.grid == (14, 14) and spec.map_images == 3


def test_settings_are_validated():
    for bad in (0.0, 0.5, -0.1, 0.8):
        with pytest.raises(ValueError, match="cutoff"):
            SpectrumSettings(cutoff=bad)


# -- statistics ---------------------------------------------------------------------------------


def test_layer_deltas_are_hifi_minus_lofi_of_the_content_fraction():
    layers, v = synthetic_verdicts(swap=False, images=6)
    deltas, tested = layer_deltas(layers)
    key = "hf_fraction_deblocked"
    expected = layers[0].hifi.per_image[key] - layers[0].lofi.per_image[key]
    np.testing.assert_allclose(deltas[:, 0], expected)
    assert tested == layers and deltas.shape == (6, 1)


# -- a synthetic model: Hi-Fi a high-pass, Lo-Fi a low-pass of the input ------------------------


def _identity(dim: int) -> nn.Linear:
    lin = nn.Linear(dim, dim)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(dim))
        lin.bias.zero_()
    return lin


class SyntheticHiLo(nn.Module):
    """A HiLo layer to discovery and capture (HiLo's projections, window size and head size),
    whose Hi-Fi branch is a high-pass and Lo-Fi a low-pass of its input: no attention, the
    output projections (what capture hooks) are identities on the filtered maps."""

    def __init__(self, swap: bool = False, hifi: bool = True, dim: int = 6):
        super().__init__()
        self.window_size, self.head_dim, self.swap = 2, dim, swap
        self.l_q, self.l_kv = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim)  # read by no one
        self.l_proj = _identity(dim)
        if hifi:
            self.h_qkv, self.h_proj = nn.Linear(dim, 3 * dim), _identity(dim)  # h_qkv unused

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, N, C = x.shape
        grid = x.reshape(B, H, W, C).permute(0, 3, 1, 2)  # (B, C, H, W)
        low = F.avg_pool2d(F.pad(grid, (1, 1, 1, 1), mode="circular"), 3, 1)  # 3x3 box blur
        high = grid - low
        hi, lo = (low, high) if self.swap else (high, low)
        outs = [self.l_proj(lo.permute(0, 2, 3, 1))]  # (B, H, W, C)
        if hasattr(self, "h_proj"):
            outs.insert(0, self.h_proj(hi.permute(0, 2, 3, 1)))
        return torch.cat(outs, -1).reshape(B, N, -1)


class SyntheticModel(nn.Module):
    def __init__(self, swap: bool = False, hifi: bool = True):
        super().__init__()
        self.synthetic = SyntheticHiLo(swap, hifi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        return self.synthetic(x.permute(0, 2, 3, 1).reshape(B, H * W, C), H, W)


def synthetic_verdicts(swap: bool, images: int, hifi: bool = True):
    """Random-noise images (6 channels, 14 x 14) through the synthetic HiLo: (layers, Verdict)."""
    torch.manual_seed(1)
    batches = (
        [torch.randn(4, 6, 14, 14), torch.randn(images - 4, 6, 14, 14)]
        if images > 4
        else [torch.randn(images, 6, 14, 14)]
    )
    model = SyntheticModel(swap, hifi)
    with SpectrumCollector(model, hilo_layers(model), SETTINGS) as col:
        for x in batches:
            col.add_batch(x)
    layers = col.finish()
    deltas, tested = layer_deltas(layers)
    return layers, (verdict(deltas) if tested else None)


def test_highpass_hifi_is_supported_and_the_swap_contradicted():
    layers, v = synthetic_verdicts(swap=False, images=6)  # the floor for alpha 0.05
    assert v.word == "supported" and v.n == 6 and v.p == pytest.approx(2 / 2**6)
    assert v.ci[0] > 0 and v.p_layers == pytest.approx([2 / 2**6])
    assert layers[0].hifi.n_images == 6 and layers[0].control.channels == 6
    _, swapped = synthetic_verdicts(swap=True, images=6)
    assert swapped.word == "contradicted" and swapped.ci[1] < 0
    assert swapped.estimate == pytest.approx(-v.estimate, rel=0.05)  # high/low-pass mirror
    _, single = synthetic_verdicts(swap=False, images=1)
    assert single.word == "insufficient" and single.estimate > 0  # numbers, never a verdict
    _, five = synthetic_verdicts(swap=False, images=5)
    assert five.word == "insufficient" and five.min_images == 6


def test_layer_without_hifi_is_not_comparable():
    from hilocli.spectrum.stats import not_comparable_line

    layers, v = synthetic_verdicts(swap=False, images=2, hifi=False)
    assert layers[0].hifi is None and v is None and not layers[0].comparable
    line = not_comparable_line(layers, "w")
    assert line == "verdict: not comparable: layer 0 has no Hi-Fi branch (w)"


def test_a_nearly_silent_branch_is_not_compared():
    layers, _ = synthetic_verdicts(swap=False, images=6)
    assert layers[0].comparable and 0.8 < layers[0].hifi_power_share < 0.95  # high-pass of noise
    quiet = layers[0].lofi.per_image["nondc_power"]
    layers[0].lofi.per_image["nondc_power"] = quiet * 1e-4  # Lo-Fi at 1e-4 of its power
    assert not layers[0].comparable and layers[0].hifi_power_share > 0.99
    assert "Lo-Fi is nearly silent (0.0" in layers[0].not_comparable
    assert layer_deltas(layers)[1] == []


def test_summary_line_names_random_weights():
    _, v = synthetic_verdicts(swap=False, images=6)
    line = summary_line(v, "random init (seed 0)", False, 6)
    assert "supported" in line and "architecture, not a trained model" in line
    assert "n = 6 scenes from 6 images" in line and "random init (seed 0)" in line
    assert "architecture" not in summary_line(v, "ckpt", True, 6)


# -- the real (tiny) model ----------------------------------------------------------------------


def test_collector_on_tiny_model_matches_direct_fft(tiny_model):
    torch.manual_seed(0)
    x = torch.randn(3, 3, 64, 80)
    layers = hilo_layers(tiny_model)
    with torch.no_grad():
        before = tiny_model(x)
    with SpectrumCollector(tiny_model, [layers[0], layers[2]], PLAIN) as col:
        col.add_batch(x)
    with torch.no_grad():
        assert torch.equal(tiny_model(x), before)  # measuring does not change the model
        with capture_layers(tiny_model, [0]) as cap:
            tiny_model(x)
    layers = col.finish()
    hifi = cap.records[0].hifi_out  # (3, 4, 5, 32)
    assert layers[0].grid == (4, 5) and layers[0].hifi.channels == 32
    assert layers[1].hifi is None and layers[1].lofi.channels == 128  # plain MSA layer
    # hf fraction recomputed by hand: mean-removed plain FFT, channel mean, radius > 0.25, and
    # a radius exactly on the cutoff (fy = 1/4, fx = 0 on the 4-row axis) counted half
    centred = hifi - hifi.mean((1, 2), keepdim=True)  # (3, 4, 5, 32)
    f = torch.fft.fft2(centred.permute(0, 3, 1, 2).double())  # (3, 32, 4, 5)
    p = f.abs().square().mean(1)  # (3, 4, 5)
    r = torch.sqrt(torch.fft.fftfreq(4)[:, None] ** 2 + torch.fft.fftfreq(5)[None, :] ** 2)
    weight = (r > 0.25 + 1e-9).double() + 0.5 * ((r - 0.25).abs() < 1e-9)
    expect = (p * weight).sum((1, 2)) / p.sum((1, 2))
    np.testing.assert_allclose(layers[0].hifi.per_image["hf_fraction"], expect.numpy(), atol=1e-5)


def test_non_finite_activations_are_refused_naming_the_branch():
    from hilocli.errors import HiloError

    x = torch.randn(2, 6, 14, 14)
    x[1, 0, 3, 3] = float("nan")
    model = SyntheticModel()
    with SpectrumCollector(model, hilo_layers(model), SETTINGS) as col:
        with pytest.raises(HiloError, match=r"non-finite .* Hi-Fi output of layer 0 \(synth"):
            col.add_batch(x)


# -- inputs ---------------------------------------------------------------------------------------


def test_collect_inputs_counts_each_file_once_and_never_reads_hilo_outputs(tmp_path):
    from PIL import Image

    from hilocli.errors import HiloError
    from hilocli.images import collect_inputs
    from hilocli.output import OutputSet

    def png(path: Path, shade: int) -> None:
        Image.new("L", (8, 6), shade).save(path)

    (tmp_path / "b").mkdir()
    png(tmp_path / "a.png", 1)
    png(tmp_path / "b" / "c.png", 1)  # same bytes as a.png
    png(tmp_path / "b" / "d.png", 2)
    png(tmp_path / ".hidden.png", 3)
    out = tmp_path / "out"
    with OutputSet(out, "demo") as files:  # hilo's own files: listed in demo.manifest.json
        files.text("spectrum.png", "four")
    png(out / "mine.png", 4)  # the user's image in the --out folder: read
    found = collect_inputs([tmp_path, tmp_path / "b" / "d.png", out / "spectrum.png"])
    assert found.files == [tmp_path / "a.png", tmp_path / "b" / "d.png", out / "mine.png"]
    assert found.duplicates == [
        (tmp_path / "b" / "c.png", tmp_path / "a.png"),
        (tmp_path / "b" / "d.png", tmp_path / "b" / "d.png"),
    ]
    assert found.skipped == [(out.resolve(), "3 file(s) hilo wrote here are not read as inputs")]
    assert found.sizes[tmp_path / "a.png"] == (8, 6)
    with pytest.raises(HiloError, match="no such file"):
        collect_inputs([tmp_path / "missing.png"])


# -- figures --------------------------------------------------------------------------------------


def fake_result(n_layers: int, control: bool = True):
    """A SpectrumResult with n_layers copies of a synthetic layer (for layout checks)."""
    from dataclasses import replace

    from hilocli.checkpoint import Provenance
    from hilocli.output import InputsRecord
    from hilocli.scenes import scenes_from_hashes
    from hilocli.spectrum import SpectrumRequest, SpectrumResult
    from hilocli.spectrum.control import ControlResult
    from hilocli.spectrum.stats import Judged

    layers, _ = synthetic_verdicts(swap=False, images=6)
    layers = [
        replace(layers[0], layer=replace(layers[0].layer, index=i, name=f"layers.2.blocks.{i}"))
        for i in range(n_layers)
    ]
    deltas, tested = layer_deltas(layers)
    v = verdict(deltas)
    weights = Provenance(source="random init", variant="litv2_s", seed=0)
    ctrl = None
    if control:
        seeds = [Provenance(source="random init", variant="litv2_s", seed=s) for s in (1, 2)]
        ctrl = ControlResult(seeds, v.estimate, [0.5 * v.estimate, 0.7 * v.estimate], 1 / 3,
                             "insufficient", 0.05, "random control: -")  # fmt: skip
    return SpectrumResult(
        request=SpectrumRequest(inputs=(Path("x"),)),
        settings=SETTINGS,
        model_name="synthetic",
        weights=weights,
        resolution=224,
        device="cpu",
        layers=layers,
        judged=Judged(
            [s.layer.index for s in tested],
            deltas,
            deltas,
            v,
            None,
            summary_line(v, weights.describe(), False, 6),
        ),  # fmt: skip
        scenes=scenes_from_hashes(np.arange(12, dtype=np.uint64).reshape(6, 2) << np.uint64(20)),
        blank=np.zeros(6, bool),
        inputs=InputsRecord(analysed=[f"x{i}" for i in range(6)]),
        environment={},
        control=ctrl,
    )


def _title_clearance(fig, top_row) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig.set_dpi(30)  # layout is in inches; a coarse raster keeps the test fast
    renderer = FigureCanvasAgg(fig).get_renderer()
    title = fig._suptitle.get_window_extent(renderer)
    top = max(ax.get_tightbbox(renderer).y1 for ax in top_row)
    assert title.y0 > top, (title.y0, top)
    assert title.y1 <= fig.bbox.y1  # and inside the figure
    assert title.x0 >= fig.bbox.x0 and title.x1 <= fig.bbox.x1  # not cut at the sides


def _with_transfer(result):
    """The result with two-head transfer curves (gains over 4 angles, 3 radii) on every layer."""
    from dataclasses import replace

    gains = np.array([[1.0, 0.5, 0.0], [1.0, 0.75, 0.5]])[:, None, :].repeat(4, 1)  # (2, 4, 3)
    curves = {"radii": np.array([0.0, 0.25, 0.5]), "angles": [0.0, 45.0, 90.0, 135.0],
              "window_size": 2, "hifi": gains, "lofi": gains * 0.5}  # fmt: skip
    return replace(result, layers=[replace(s, transfer=curves) for s in result.layers])


@pytest.mark.parametrize("n_layers", [1, 18])  # the extremes of the released models
def test_title_clears_the_top_panels(n_layers):
    from hilocli.spectrum.figures import hf_figure, radial_figure, transfer_figure
    from hilocli.spectrum.maps import maps_figure
    from hilocli.spectrum.summary import summary_figure

    result = fake_result(n_layers)
    fig, data = transfer_figure(_with_transfer(result))
    _title_clearance(fig, fig.axes[:2])
    assert len(data["layers"]) == n_layers
    np.testing.assert_allclose(data["layers"][0]["hifi"], [[1.0, 0.5, 0.0], [1.0, 0.75, 0.5]])
    fig, _ = hf_figure(result)
    # the hf panel with its p annotations
    assert fig.axes[0].get_ylabel().startswith("share above cutoff")
    _title_clearance(fig, fig.axes)
    for draw in (radial_figure, maps_figure):
        fig, data = draw(result)
        _title_clearance(fig, fig.axes[:3])
        assert sorted(data["layers"]) == sorted(s.layer.index for s in result.layers)
    fig, data = summary_figure(result)
    _title_clearance(fig, fig.axes)
    assert len(data["columns"]) == n_layers + 1 and data["n"] == 6
    assert data["word"] == "supported" and "SUPPORTED" in fig._suptitle.get_text()
    assert data["columns"][-1]["estimate"] == pytest.approx(result.verdict.estimate)


def test_summary_figure_without_a_tested_layer_is_its_title_and_one_line():
    """A silent branch is not compared: with no layer tested the summary figure draws no empty
    axes and no legend promising dots, estimates or margins that are not there."""
    from dataclasses import replace

    from hilocli.spectrum.summary import summary_figure

    result = fake_result(1, control=False)
    none = np.empty((result.n, 0))
    line = "verdict: not comparable: layer 0: Lo-Fi is nearly silent (0.11% of the power)"
    judged = replace(result.judged, tested=[], deltas=none, scene_deltas=none, verdict=None,
                     sensitivity=None, line=line)  # fmt: skip
    fig, data = summary_figure(replace(result, judged=judged))
    assert fig.axes == [] and data["columns"] == [] and data["word"] is None
    title = fig._suptitle.get_text()
    assert "6 images; not comparable: layer 0: Lo-Fi is nearly silent" in title
    assert [t.get_text() for t in fig.texts if t is not fig._suptitle] == [
        "no layer tested: nothing to plot (the reason is in the title and in spectrum.json)"
    ]


@pytest.mark.parametrize("blocks", [5, 24])
def test_depth_figure_title_clears_the_panel_and_plots_the_curve(blocks):
    from dataclasses import replace

    from hilocli.spectrum.depth import DepthCurve
    from hilocli.spectrum.summary import depth_figure

    rng = np.random.default_rng(0)
    per_image = rng.normal(-2.0, 0.5, (6, blocks))
    curves = [np.array([0.0, -1.0, per_image[:, k].mean()]) for k in range(blocks)]
    depth = DepthCurve(
        blocks=[f"layers.{k % 4}.blocks.{k}" for k in range(blocks)],
        stages=sorted(k % 4 for k in range(blocks)),
        grids=[(14, 14)] * blocks,
        hilo_index=[0] + [None] * (blocks - 1),
        square=[True] * blocks,
        freq=[np.array([0.0, 1 / 7, 2 / 7])] * blocks,
        rel_log_amplitude=curves,
        per_image_highest=per_image,
    )
    result = replace(fake_result(1, control=False), depth=depth)
    fig, data = depth_figure(result)
    _title_clearance(fig, fig.axes)
    np.testing.assert_allclose(data["highest"], per_image.mean(axis=0))
    assert data["tested_blocks"] == [0]  # block 0's attention is tested layer 0
