"""Which spatial frequencies do the Hi-Fi and Lo-Fi branches of a HiLo layer carry?

Pure analysis on tensors, on the device the tensors live on (numpy appears only in the final
summary dataclasses). Definitions (docs/spectrum.md explains each with its pitfalls):

- Frequencies are in cycles per token, per axis from `torch.fft.fftfreq(n)`: an H x W map has
  fy in {k/H}, fx in {k/W}, Nyquist 0.5 (reached only on an even axis). The radius of a frequency
  is r = sqrt(fy^2 + fx^2); corners reach 0.5 * sqrt(2).
- Spectra: per channel 2D FFT over (H, W) of the map with its per-channel mean removed (optionally
  times a Hann window), amplitude |F| and power |F|^2. Per image the power is averaged over
  channels.
- hf fraction: power at r > cutoff over all non-DC power (corners beyond 0.5 count as high).
  `hf_fraction_excl_grid` leaves the Hi-Fi window-grid frequencies (|fy| or |fx| = m/s, m >= 1: the
  period-s pattern that s x s windows imprint) out of both sums; `grid_fraction` is their share of
  the non-DC power. The verdict uses the grid-excluded fraction.
- Spectral centroid: power-weighted mean radius over non-DC frequencies, cycles per token.
- Radial profile: mean power of the frequencies whose radius rounds to k / max(H, W), k = 0, 1, ..
  up to the corner radius; bins beyond Nyquist (r > 0.5) hold only the corners of the square
  spectrum (incomplete rings) and are kept, since a checkerboard lives there.
- Log amplitude: log(|F| + EPS), EPS = 1e-6 (absolute; features are O(1), so it only guards
  zeros).
- Park & Kim: mean over channels and images of log(|F| + EPS) of the map *without* mean removal
  (as they did), read along the diagonal fy = fx from 0 to Nyquist, minus its value at zero
  frequency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch

EPS = 1e-6  # log(|F| + EPS): absolute guard against log(0)
ZERO_ENERGY = 1e-10  # non-DC power below this share of the map's total energy counts as none
BRANCHES = ("hifi", "lofi", "control")
BRANCH_LABELS = {"hifi": "Hi-Fi", "lofi": "Lo-Fi", "control": "control (norm1 input)"}
PER_IMAGE_FIELDS = ("hf_fraction", "hf_fraction_excl_grid", "grid_fraction", "centroid",
                    "total_power")


# ----------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpectrumSettings:
    cutoff: float = 0.25  # cycles per token; default half of Nyquist
    hann: bool = False
    significance: float = 0.05  # level of the paired test (after Holm over layers)
    margin: float = 0.05  # one image: |hf(Hi-Fi) - hf(Lo-Fi)| needed for a verdict
    paper_channels: int = 8

    def __post_init__(self) -> None:
        if not 0.0 < self.cutoff < 0.5:
            raise ValueError(f"--cutoff must lie strictly between 0 and 0.5 cycles per token "
                             f"(Nyquist), got {self.cutoff}")
        if not 0.0 < self.significance < 1.0:
            raise ValueError(f"significance must lie in (0, 1), got {self.significance}")
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        if self.paper_channels < 1:
            raise ValueError("paper_channels must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return {"cutoff": self.cutoff, "hann": self.hann, "significance": self.significance,
                "margin": self.margin, "paper_channels": self.paper_channels,
                "eps": EPS, "frequency_unit": "cycles per token"}


# ----------------------------------------------------------------------------------------------
# Frequency geometry of an H x W map
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrequencyAxes:
    """Frequencies of an H x W FFT in torch.fft order (not shifted), on one device."""

    height: int
    width: int
    fy: torch.Tensor  # (H,) cycles per token
    fx: torch.Tensor  # (W,)
    radius: torch.Tensor  # (H, W)
    dc: torch.Tensor  # (H, W) bool, only (0, 0)
    high: torch.Tensor  # (H, W) bool, radius > cutoff
    grid: torch.Tensor  # (H, W) bool, window-grid frequencies (never DC)
    bin_index: torch.Tensor  # (H, W) long, radial bin: nearest k / max(H, W)
    bin_weights: torch.Tensor  # (nbins, H*W): row k averages the frequencies in bin k
    bin_centers: torch.Tensor  # (nbins,) k / max(H, W)
    diag: tuple[torch.Tensor, torch.Tensor]  # (K,) row and column indices along fy = fx
    diag_freq: torch.Tensor  # (K,) cycles per token of the diagonal points (per axis)


def axis_grid_marks(n: int, window_size: int) -> torch.Tensor:
    """(n,) bool: the FFT samples of an axis of length n nearest to m / s, m = 1 .. floor(s / 2).

    A period-s pattern (s x s windows) puts its energy there; when n is not a multiple of s the
    nearest sample (within half a bin) stands in. Zero frequency is never marked.
    """
    f = torch.fft.fftfreq(n, dtype=torch.float64).abs()
    marks = torch.zeros(n, dtype=torch.bool)
    if window_size is None or window_size < 2:
        return marks
    for m in range(1, window_size // 2 + 1):
        dist = (f - m / window_size).abs()
        dist[f == 0] = math.inf
        best = dist.min()
        if best <= 0.5 / n + 1e-12:
            marks |= dist <= best + 1e-12
    return marks


def frequency_axes(height: int, width: int, cutoff: float = 0.25, window_size: int | None = None,
                   device: torch.device | str = "cpu") -> FrequencyAxes:
    """Frequency geometry of an H x W map; correct for even and odd sizes and non-square maps."""
    if height < 1 or width < 1:
        raise ValueError(f"map must be at least 1 x 1, got {height} x {width}")
    fy = torch.fft.fftfreq(height, dtype=torch.float64)  # (H,)
    fx = torch.fft.fftfreq(width, dtype=torch.float64)  # (W,)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)  # (H, W)
    dc = radius == 0
    length = max(height, width)
    index = torch.floor(radius * length + 0.5).long()  # (H, W) nearest k / L
    nbins = int(index.max()) + 1
    onehot = torch.zeros(nbins, height * width, dtype=torch.float64)
    onehot[index.flatten(), torch.arange(height * width)] = 1.0
    counts = onehot.sum(1, keepdim=True)
    weights = onehot / counts.clamp(min=1.0)  # (nbins, H*W); empty bins stay 0
    grid = axis_grid_marks(height, window_size or 1)[:, None] | \
        axis_grid_marks(width, window_size or 1)[None, :]  # (H, W)
    # Park & Kim's diagonal: k = 0 .. floor(L/2) on the shorter axis L; on the longer axis the
    # nearest sample of the same frequency (exact when the map is square)
    short = min(height, width)
    ks = torch.arange(short // 2 + 1)
    diag_freq = ks.double() / short  # (K,)
    rows = torch.round(diag_freq * height).long()
    cols = torch.round(diag_freq * width).long()
    f32 = torch.float32
    return FrequencyAxes(
        height=height, width=width, fy=fy.to(device, f32), fx=fx.to(device, f32),
        radius=radius.to(device, f32), dc=dc.to(device), high=(radius > cutoff).to(device),
        grid=grid.to(device), bin_index=index.to(device), bin_weights=weights.to(device, f32),
        bin_centers=(torch.arange(nbins, dtype=torch.float64) / length).to(device, f32),
        diag=(rows.to(device), cols.to(device)), diag_freq=diag_freq.to(device, f32),
    )


# ----------------------------------------------------------------------------------------------
# Spectra of (B, H, W, C) maps
# ----------------------------------------------------------------------------------------------


def hann_window(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(H, W) separable Hann window sampled at pixel centres: w[k] = sin^2(pi (k + 1/2) / n).

    Unlike torch.hann_window it zeroes no row or column, which matters on 7 x 7 or 14 x 14 grids.
    """
    def one(n: int) -> torch.Tensor:
        k = torch.arange(n, device=device, dtype=torch.float64)
        return torch.sin(math.pi * (k + 0.5) / n) ** 2

    return (one(height)[:, None] * one(width)[None, :]).to(dtype)


def fft_maps(maps: torch.Tensor, remove_mean: bool = True, hann: bool = False) -> torch.Tensor:
    """Per channel 2D FFT of (B, H, W, C) maps -> complex (B, C, H, W), torch.fft order."""
    if maps.ndim != 4:
        raise ValueError(f"maps must be (B, H, W, C), got shape {tuple(maps.shape)}")
    x = maps.permute(0, 3, 1, 2).float()  # (B, C, H, W)
    if remove_mean:
        x = x - x.mean(dim=(-2, -1), keepdim=True)
    if hann:
        x = x * hann_window(x.shape[-2], x.shape[-1], device=x.device)
    return torch.fft.fft2(x)  # (B, C, H, W)


def amplitude(maps: torch.Tensor, remove_mean: bool = True, hann: bool = False) -> torch.Tensor:
    """|FFT| per channel: (B, H, W, C) -> (B, C, H, W)."""
    return fft_maps(maps, remove_mean, hann).abs()


def power(maps: torch.Tensor, remove_mean: bool = True, hann: bool = False) -> torch.Tensor:
    """|FFT|^2 per channel: (B, H, W, C) -> (B, C, H, W)."""
    return amplitude(maps, remove_mean, hann) ** 2


def _safe_ratio(num: torch.Tensor, den: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """num / den, 0 where den is at or below floor (no energy to share)."""
    ok = den > floor
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def image_summaries(mean_power: torch.Tensor, energy: torch.Tensor,
                    axes: FrequencyAxes) -> dict[str, torch.Tensor]:
    """Per-image scalars from channel-averaged power (B, H, W); each value (B,).

    `energy` (B,) is the total power of the map before mean removal (sum |F|^2 over all
    frequencies, channel mean); non-DC power below ZERO_ENERGY of it counts as no energy.
    """
    p = mean_power.flatten(1)  # (B, H*W)
    nondc = ~axes.dc.flatten()
    high = axes.high.flatten() & nondc
    grid = axes.grid.flatten()
    total = p[:, nondc].sum(1)  # (B,)
    floor = ZERO_ENERGY * energy + 1e-30
    grid_power = p[:, grid].sum(1)
    hf = p[:, high].sum(1)
    hf_excl = p[:, high & ~grid].sum(1)
    centroid = (p * axes.radius.flatten())[:, nondc].sum(1)
    return {
        "hf_fraction": _safe_ratio(hf, total, floor),
        "hf_fraction_excl_grid": _safe_ratio(hf_excl, total - grid_power, floor),
        "grid_fraction": _safe_ratio(grid_power, total, floor),
        "centroid": _safe_ratio(centroid, total, floor),
        "total_power": total,
    }


def radial_profile(mean_power: torch.Tensor, axes: FrequencyAxes) -> torch.Tensor:
    """Radially averaged power: (B, H, W) -> (B, nbins), bins at axes.bin_centers."""
    return mean_power.flatten(1) @ axes.bin_weights.T  # (B, nbins)


def paper_channel_range(channels: int, count: int = 8) -> list[int]:
    """Channels C/2 .. C/2 + count - 1 (what the authors' all-axes fftshift effectively showed),
    moved down to fit when a branch has fewer than C/2 + count channels."""
    count = min(count, channels)
    start = max(0, min(channels // 2, channels - count))
    return list(range(start, start + count))


@dataclass
class BranchSpectrum:
    """Everything measured for one branch (or the control) of one layer, over all images."""

    branch: str  # "hifi" | "lofi" | "control"
    channels: int
    n_images: int
    per_image: dict[str, np.ndarray]  # PER_IMAGE_FIELDS -> (n_images,)
    grid: tuple[int, int]  # (H, W) of the maps below
    map_images: int  # how many images the maps and profiles average (those with this grid)
    freq_y: np.ndarray  # (H,) centred (fftshift) cycles per token
    freq_x: np.ndarray  # (W,)
    log_amplitude: np.ndarray  # (H, W) centred, mean over channels and images, mean removed
    radial_freq: np.ndarray  # (nbins,) cycles per token
    radial_power: np.ndarray  # (nbins,) mean power per bin, channel mean, image mean
    radial_power_rel: np.ndarray  # (nbins,) same, each image's power over its non-DC total first
    parkkim_freq: np.ndarray  # (K,) per-axis cycles per token along the diagonal
    parkkim_rel_log_amplitude: np.ndarray  # (K,) minus the value at zero frequency
    paper_channels: list[int]
    paper_maps: np.ndarray  # (k, H, W) centred log|F| of those channels (no mean removal)

    @property
    def parkkim_omega(self) -> np.ndarray:
        """The diagonal's frequency as an angle 0 .. pi (pi = Nyquist), Park & Kim's axis."""
        return 2 * np.pi * self.parkkim_freq

    def to_dict(self, maps: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "branch": self.branch, "channels": self.channels, "n_images": self.n_images,
            "per_image": {k: v.tolist() for k, v in self.per_image.items()},
            "median": {k: float(np.median(v)) for k, v in self.per_image.items()},
            "mean": {k: float(np.mean(v)) for k, v in self.per_image.items()},
            "grid": list(self.grid), "map_images": self.map_images,
            "radial_freq": self.radial_freq.tolist(),
            "radial_power": self.radial_power.tolist(),
            "radial_power_rel": self.radial_power_rel.tolist(),
            "parkkim_freq": self.parkkim_freq.tolist(),
            "parkkim_omega": self.parkkim_omega.tolist(),
            "parkkim_rel_log_amplitude": self.parkkim_rel_log_amplitude.tolist(),
            "paper_channels": self.paper_channels,
        }
        if maps:
            out.update(freq_y=self.freq_y.tolist(), freq_x=self.freq_x.tolist(),
                       log_amplitude=self.log_amplitude.tolist(),
                       paper_maps=self.paper_maps.tolist())
        return out


@dataclass
class _GridSums:
    axes: FrequencyAxes
    count: int = 0
    log_amp: torch.Tensor | None = None  # (H, W)
    raw_log_amp: torch.Tensor | None = None  # (H, W)
    radial: torch.Tensor | None = None  # (nbins,)
    radial_rel: torch.Tensor | None = None  # (nbins,)
    paper: torch.Tensor | None = None  # (k, H, W)

    def add(self, name: str, value: torch.Tensor) -> None:
        old = getattr(self, name)
        setattr(self, name, value if old is None else old + value)


class BranchAccumulator:
    """Feeds batches of one branch's maps (B, H, W, C); `finish()` gives a BranchSpectrum.

    Everything stays on the maps' device until finish(). Images may come in different grid sizes
    (no-crop mode): scalars use every image, maps and profiles the most common grid.
    """

    def __init__(self, branch: str, settings: SpectrumSettings, window_size: int | None):
        self.branch = branch
        self.settings = settings
        self.window_size = window_size
        self.channels: int | None = None
        self.per_image: dict[str, list[torch.Tensor]] = {k: [] for k in PER_IMAGE_FIELDS}
        self.sums: dict[tuple[int, int], _GridSums] = {}

    def add(self, maps: torch.Tensor) -> None:
        B, H, W, C = maps.shape
        if self.channels is None:
            self.channels = C
        elif C != self.channels:
            raise ValueError(f"{self.branch}: channel count changed from {self.channels} to {C}")
        sums = self.sums.get((H, W))
        if sums is None:
            axes = frequency_axes(H, W, self.settings.cutoff, self.window_size, maps.device)
            sums = self.sums[(H, W)] = _GridSums(axes)
        axes = sums.axes
        raw = fft_maps(maps, remove_mean=False)  # (B, C, H, W) complex
        raw_amp = raw.abs()  # (B, C, H, W)
        if self.settings.hann:
            amp = fft_maps(maps, remove_mean=True, hann=True).abs()  # (B, C, H, W)
        else:  # removing the mean only zeroes the DC term: reuse the raw transform
            amp = raw_amp * (~axes.dc).to(raw_amp.dtype)  # (B, C, H, W)
        pw = amp.square()  # (B, C, H, W)
        mean_power = pw.mean(1)  # (B, H, W)
        energy = raw_amp.square().mean(1).flatten(1).sum(1)  # (B,)
        for k, v in image_summaries(mean_power, energy, axes).items():
            self.per_image[k].append(v)
        total = self.per_image["total_power"][-1]
        floor = ZERO_ENERGY * energy + 1e-30
        has = (total > floor)[:, None, None]  # (B, 1, 1) images with any non-DC energy
        rel = torch.where(has, mean_power / torch.where(has, total[:, None, None], 1.0), 0.0)
        sums.add("radial", radial_profile(mean_power, axes).sum(0))
        sums.add("radial_rel", radial_profile(rel, axes).sum(0))
        sums.add("log_amp", torch.log(amp + EPS).mean(1).sum(0))  # (H, W)
        raw_log = torch.log(raw_amp + EPS)  # (B, C, H, W)
        sums.add("raw_log_amp", raw_log.mean(1).sum(0))
        chans = paper_channel_range(C, self.settings.paper_channels)
        sums.add("paper", raw_log[:, chans[0]:chans[-1] + 1].sum(0))  # (k, H, W)
        sums.count += B

    def finish(self) -> BranchSpectrum:
        if not self.sums:
            raise ValueError(f"{self.branch}: no maps were added")
        per_image = {k: torch.cat(v).double().cpu().numpy() for k, v in self.per_image.items()}
        (H, W), s = max(self.sums.items(), key=lambda kv: kv[1].count)
        n = s.count
        ax = s.axes

        def centred(t: torch.Tensor) -> np.ndarray:
            return torch.fft.fftshift(t / n, dim=(-2, -1)).double().cpu().numpy()

        raw_log = (s.raw_log_amp / n).double().cpu()  # (H, W) torch order
        rows, cols = ax.diag
        diag = raw_log[rows.cpu(), cols.cpu()]  # (K,)
        return BranchSpectrum(
            branch=self.branch, channels=int(self.channels), n_images=len(per_image["centroid"]),
            per_image=per_image, grid=(H, W), map_images=n,
            freq_y=torch.fft.fftshift(ax.fy).double().cpu().numpy(),
            freq_x=torch.fft.fftshift(ax.fx).double().cpu().numpy(),
            log_amplitude=centred(s.log_amp),
            radial_freq=ax.bin_centers.double().cpu().numpy(),
            radial_power=(s.radial / n).double().cpu().numpy(),
            radial_power_rel=(s.radial_rel / n).double().cpu().numpy(),
            parkkim_freq=ax.diag_freq.double().cpu().numpy(),
            parkkim_rel_log_amplitude=(diag - diag[0]).numpy(),
            paper_channels=paper_channel_range(int(self.channels), self.settings.paper_channels),
            paper_maps=centred(s.paper),
        )


# ----------------------------------------------------------------------------------------------
# Running a model over images
# ----------------------------------------------------------------------------------------------


@dataclass
class LayerSpectra:
    index: int  # position in model.hilo_layers(): what --layer takes
    name: str
    window_size: int
    grid: tuple[int, int]  # grid of the maps shown (most common one)
    hifi: BranchSpectrum | None  # None: the layer has no Hi-Fi heads (window 1 or alpha 1)
    lofi: BranchSpectrum | None  # None: no Lo-Fi heads (alpha 0)
    control: BranchSpectrum

    @property
    def comparable(self) -> bool:
        return self.hifi is not None and self.lofi is not None

    def branch(self, name: str) -> BranchSpectrum | None:
        return getattr(self, name)


class SpectrumCollector:
    """Measures the chosen HiLo layers of `model` batch by batch.

        with SpectrumCollector(model, layers, settings) as col:
            for x in batches:          # (B, 3, H, W) on the model's device
                col.add_batch(x)
        layers = col.finish()

    Uses the model's fast attention path (no attention weights are needed); branch maps stay on
    the model's device. Batches may differ in size.
    """

    def __init__(self, model: torch.nn.Module, layers: Sequence[int], settings: SpectrumSettings):
        all_layers = model.hilo_layers()
        for i in layers:
            if not 0 <= i < len(all_layers):
                raise ValueError(f"layer index {i} out of range 0..{len(all_layers) - 1}")
        self.model = model
        self.layers = list(layers)
        self.names = {i: all_layers[i][0] for i in self.layers}
        self.windows = {i: all_layers[i][1].window_size for i in self.layers}
        self.accs = {i: {b: BranchAccumulator(b, settings, self.windows[i]) for b in BRANCHES}
                     for i in self.layers}
        self.images = 0
        self._ctx = None
        self._cap = None

    def __enter__(self) -> "SpectrumCollector":
        from hilocli.capture import capture

        self._ctx = capture(self.model, self.layers, attn=False, keep_on_device=True)
        self._cap = self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        ctx, self._ctx, self._cap = self._ctx, None, None
        ctx.__exit__(*exc)

    def add_batch(self, x: torch.Tensor) -> torch.Tensor:
        """Forward one batch (B, 3, H, W) and measure it; returns the model's output."""
        if self._cap is None:
            raise RuntimeError("use SpectrumCollector inside a `with` block")
        with torch.no_grad():
            out = self.model(x)
            for i in self.layers:
                rec = self._cap.records[i]
                for b in BRANCHES:
                    maps = rec.control if b == "control" else getattr(rec, f"{b}_out")
                    if maps is not None:
                        self.accs[i][b].add(maps)  # (B, H, W, C_branch)
        self.images += x.shape[0]
        return out

    def finish(self) -> list[LayerSpectra]:
        if self.images == 0:
            raise ValueError("no images to analyse")
        out = []
        for i in self.layers:
            done = {b: (a.finish() if a.sums else None) for b, a in self.accs[i].items()}
            out.append(LayerSpectra(index=i, name=self.names[i], window_size=self.windows[i],
                                    grid=done["control"].grid, hifi=done["hifi"],
                                    lofi=done["lofi"], control=done["control"]))
        return out


def collect_spectra(model: torch.nn.Module, batches: Iterable[torch.Tensor], layers: Sequence[int],
                    settings: SpectrumSettings) -> list[LayerSpectra]:
    """Run `model` over image batches (B, 3, H, W) and measure the chosen HiLo layers."""
    with SpectrumCollector(model, layers, settings) as col:
        for x in batches:
            col.add_batch(x)
    return col.finish()


# ----------------------------------------------------------------------------------------------
# Statistics and the verdict
# ----------------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """Paired comparison of per-image values a vs b (e.g. hf fraction of Hi-Fi vs Lo-Fi)."""

    a: str
    b: str
    n: int
    median_a: float
    median_b: float
    median_difference: float  # median of (a - b) over images
    mean_difference: float
    share_a_greater: float  # share of images with a > b
    test: str  # "wilcoxon signed-rank (two-sided)" or "none (1 image)"
    statistic: float | None
    p_value: float | None
    rank_biserial: float | None  # matched-pairs rank-biserial correlation, -1 .. 1
    p_adjusted: float | None = None  # Holm over the layers of this run
    direction: int = 0  # +1: a > b, -1: a < b, 0: no clear difference

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def rank_biserial(differences: np.ndarray) -> float | None:
    """Matched-pairs rank-biserial correlation (W+ - W-) / (W+ + W-); zero differences dropped."""
    from scipy.stats import rankdata

    d = np.asarray(differences, dtype=np.float64)
    d = d[d != 0]
    if d.size == 0:
        return None
    ranks = rankdata(np.abs(d))
    plus, minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((plus - minus) / (plus + minus))


def compare_paired(a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("a", "b"),
                   level: float = 0.05, margin: float = 0.05) -> Comparison:
    """Paired comparison of a and b over images, with a direction.

    n >= 2: two-sided Wilcoxon signed-rank test (scipy; zero differences dropped), direction is the
    sign of the rank-biserial correlation when p < level, else 0. n = 1: no test; direction is the
    sign of a - b when |a - b| >= margin, else 0.
    """
    from scipy.stats import wilcoxon

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two equal-length non-empty vectors, got {a.shape} and {b.shape}")
    d = a - b
    n = int(d.size)
    common = dict(a=names[0], b=names[1], n=n, median_a=float(np.median(a)),
                  median_b=float(np.median(b)), median_difference=float(np.median(d)),
                  mean_difference=float(d.mean()), share_a_greater=float(np.mean(d > 0)))
    if n == 1:
        direction = int(np.sign(d[0])) if abs(d[0]) >= margin else 0
        return Comparison(**common, test="none (1 image)", statistic=None, p_value=None,
                          rank_biserial=rank_biserial(d), direction=direction)
    effect = rank_biserial(d)
    if effect is None:  # every difference is zero
        stat, p = 0.0, 1.0
    else:
        res = wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        stat, p = float(res.statistic), float(res.pvalue)
    out = Comparison(**common, test="wilcoxon signed-rank (two-sided)", statistic=stat,
                     p_value=p, rank_biserial=effect, p_adjusted=p)
    out.direction = _direction(out, level)
    return out


def _direction(c: Comparison, level: float) -> int:
    p = c.p_adjusted if c.p_adjusted is not None else c.p_value
    if p is None or c.rank_biserial is None or not p < level:
        return 0
    return int(np.sign(c.rank_biserial))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


VERDICT_WORDS = {1: "supported", -1: "contradicted", 0: "inconclusive"}


@dataclass
class LayerVerdict:
    index: int
    name: str
    comparable: bool
    reason: str  # why not comparable, or how the verdict was reached
    verdict: str  # supported | contradicted | inconclusive | not comparable
    hifi_vs_lofi: Comparison | None  # on hf_fraction_excl_grid (the verdict's number)
    hifi_vs_lofi_incl_grid: Comparison | None  # on hf_fraction (window-grid power included)
    verdict_incl_grid: str | None
    hifi_vs_control: Comparison | None  # how far each branch moved the spectrum from its input
    lofi_vs_control: Comparison | None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items()}
        for k, v in out.items():
            if isinstance(v, Comparison):
                out[k] = v.to_dict()
        return out


def judge(layers: Sequence[LayerSpectra], settings: SpectrumSettings,
          metric: str = "hf_fraction_excl_grid") -> list[LayerVerdict]:
    """Per layer: does Hi-Fi hold more high-frequency energy than Lo-Fi?

    With several layers the paired tests' p-values are Holm-adjusted over the comparable layers
    of the run before the verdict is read from them.
    """
    a, m = settings.significance, settings.margin
    out: list[LayerVerdict] = []
    for layer in layers:
        ctrl = layer.control.per_image
        hi_ctrl = lo_ctrl = None
        if layer.hifi is not None:
            hi_ctrl = compare_paired(layer.hifi.per_image[metric], ctrl[metric],
                                     ("hifi", "control"), a, m)
        if layer.lofi is not None:
            lo_ctrl = compare_paired(layer.lofi.per_image[metric], ctrl[metric],
                                     ("lofi", "control"), a, m)
        if not layer.comparable:
            missing = "Hi-Fi" if layer.hifi is None else "Lo-Fi"
            why = (f"no {missing} branch (window size {layer.window_size}"
                   f"{': plain MSA, all heads Lo-Fi' if layer.window_size == 1 else ''}); "
                   "cannot compare")
            out.append(LayerVerdict(layer.index, layer.name, False, why, "not comparable", None,
                                    None, None, hi_ctrl, lo_ctrl))
            continue
        main = compare_paired(layer.hifi.per_image[metric], layer.lofi.per_image[metric],
                              ("hifi", "lofi"), a, m)
        incl = compare_paired(layer.hifi.per_image["hf_fraction"],
                              layer.lofi.per_image["hf_fraction"], ("hifi", "lofi"), a, m)
        out.append(LayerVerdict(layer.index, layer.name, True, "", "", main, incl, None,
                                hi_ctrl, lo_ctrl))
    for attr in ("hifi_vs_lofi", "hifi_vs_lofi_incl_grid", "hifi_vs_control", "lofi_vs_control"):
        comps = [getattr(v, attr) for v in out if getattr(v, attr) is not None
                 and getattr(v, attr).p_value is not None]
        for c, p in zip(comps, holm([c.p_value for c in comps])):
            c.p_adjusted = p
            c.direction = _direction(c, a)
    for v in out:
        if not v.comparable:
            continue
        c = v.hifi_vs_lofi
        v.verdict = VERDICT_WORDS[c.direction]
        v.verdict_incl_grid = VERDICT_WORDS[v.hifi_vs_lofi_incl_grid.direction]
        if c.n == 1:
            v.reason = (f"1 image, no test: hf difference {c.median_difference:+.3f} "
                        f"({'at least' if c.direction else 'below'} the margin {m:g})")
        else:
            v.reason = (f"{c.n} images, Wilcoxon p={c.p_value:.3g}"
                        f"{f' (Holm {c.p_adjusted:.3g})' if c.p_adjusted != c.p_value else ''}, "
                        f"rank-biserial {c.rank_biserial or 0.0:+.2f}, "
                        f"Hi-Fi > Lo-Fi in {c.share_a_greater:.0%}")
    return out


def summary_line(verdicts: Sequence[LayerVerdict], trained: bool, weights: str) -> str:
    """The verdict line the terminal table ends with."""
    comp = [v for v in verdicts if v.comparable]
    if not comp:
        return ("verdict: not comparable: none of the chosen layers has both a Hi-Fi and a Lo-Fi "
                f"branch ({weights})")
    counts = {w: sum(v.verdict == w for v in comp) for w in VERDICT_WORDS.values()}
    if counts["supported"] == len(comp):
        word = "supported"
    elif counts["contradicted"] == len(comp):
        word = "contradicted"
    elif counts["supported"] and not counts["contradicted"]:
        word = "partly supported"
    elif counts["contradicted"] and not counts["supported"]:
        word = "partly contradicted"
    elif counts["supported"] or counts["contradicted"]:
        word = "mixed"
    else:
        word = "inconclusive"
    parts = ", ".join(f"{counts[w]} {w}" for w in VERDICT_WORDS.values() if counts[w])
    scope = ("" if trained else
             " [random weights: this concerns the architecture, not a trained model]")
    return (f"verdict: Hi-Fi carries more high-frequency energy than Lo-Fi: {word} "
            f"({parts} of {len(comp)} layers; {weights}){scope}")
