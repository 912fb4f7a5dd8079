"""One branch (Hi-Fi, Lo-Fi or the control) of one layer over all images: `BranchAccumulator`
takes batches of maps (B, H, W, C) and gives a `BranchSpectrum` with the per-image numbers, the
averaged maps and the profiles (definitions in `hilocli.spectrum.measures`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hilocli.spectrum.analyse import CUTOFFS, Part, Spectra, joint_spectra, summarise
from hilocli.spectrum.measures import (
    PER_IMAGE_FIELDS,
    FrequencyAxes,
    SpectrumSettings,
    frequency_axes,
    paper_channel_range,
    radial_profile,
)


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
    log_amplitude: np.ndarray  # (H, W) centred log|content F|; channel, image mean
    radial_freq: np.ndarray  # (nbins,) cycles per token
    radial_power: np.ndarray  # (nbins,) mean content power per bin, channel mean, image mean
    radial_power_rel: np.ndarray  # (nbins,) same, each image's power over its non-DC total first
    parkkim_freq: np.ndarray  # (K,) per-axis cycles/token on Park & Kim's diagonal, 0..ceil(L/2)-1
    parkkim_rel_log_amplitude: np.ndarray  # (K,) minus zero frequency: their quantity, on the
    # branch output (they measured block outputs: hilocli.spectrum.depth)
    paper_channels: list[int]
    paper_maps: np.ndarray  # (k, H, W) centred log|F| of those channels (no mean removal)

    @property
    def parkkim_omega(self) -> np.ndarray:
        """The diagonal's frequency as an angle 0 .. pi (pi = Nyquist), Park & Kim's axis."""
        return 2 * np.pi * self.parkkim_freq

    def to_dict(self, maps: bool = True, per_image: bool = False) -> dict[str, Any]:
        """Summaries (median, mean of each per-image field over images); the per-image values
        themselves only with per_image=True (runs write them to per_image.csv)."""
        out: dict[str, Any] = {
            "branch": self.branch,
            "channels": self.channels,
            "n_images": self.n_images,
            "median": {k: float(np.median(v)) for k, v in self.per_image.items()},
            "mean": {k: float(np.mean(v)) for k, v in self.per_image.items()},
            "grid": list(self.grid),
            "map_images": self.map_images,
            "radial_freq": self.radial_freq.tolist(),
            "radial_power": self.radial_power.tolist(),
            "radial_power_rel": self.radial_power_rel.tolist(),
            "parkkim_freq": self.parkkim_freq.tolist(),
            "parkkim_omega": self.parkkim_omega.tolist(),
            "parkkim_rel_log_amplitude": self.parkkim_rel_log_amplitude.tolist(),
            "paper_channels": self.paper_channels,
        }
        if per_image:
            out["per_image"] = {k: v.tolist() for k, v in self.per_image.items()}
        if maps:
            out.update(
                freq_y=self.freq_y.tolist(),
                freq_x=self.freq_x.tolist(),
                log_amplitude=self.log_amplitude.tolist(),
                paper_maps=self.paper_maps.tolist(),
            )
        return out


@dataclass
class GridSums:
    axes: FrequencyAxes
    count: int = 0
    log_amp: torch.Tensor | None = None  # (H, W)
    raw_log_diag: torch.Tensor | None = None  # (K,) on Park & Kim's diagonal
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
        self.sums: dict[tuple[int, int], GridSums] = {}

    def add(
        self,
        maps: torch.Tensor,
        stream_bands: tuple[torch.Tensor, torch.Tensor] | None = None,
        matched_bands: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        """Measure a batch of maps (B, H, W, C). `stream_bands`: the residual stream's (low, high)
        band power (B,) at the block input (`analyse.band_power`): gives residual_ratio_*;
        `matched_bands` likewise for the branch's matched input (matched_ratio_*); fields never
        measured stay NaN."""
        s = self.settings
        spec = joint_spectra([self.part(maps)], s.boundary, s.cutoff)[0]
        self.add_spectra(spec, stream_bands, matched_bands)

    def part(self, maps: torch.Tensor) -> Part:
        """This branch's maps (B, H, W, C) as a `joint_spectra` part (a layer's branches are
        transformed together: `SpectrumCollector`)."""
        self._check(maps.shape[-1])
        channels = paper_channel_range(maps.shape[-1], self.settings.paper_channels)
        return Part(maps, self.window_size, True, tuple(channels))

    def _check(self, C: int) -> None:
        if self.channels is None:
            self.channels = C
        elif C != self.channels:
            raise ValueError(f"{self.branch}: channel count changed from {self.channels} to {C}")

    def add_spectra(
        self,
        spec: Spectra,
        stream_bands: tuple[torch.Tensor, torch.Tensor] | None,
        matched_bands: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> None:
        """Accumulate one batch's spectra (`analyse.joint_spectra` of `part(maps)`); the band
        powers as in `add`."""
        B, H, W = spec.power.shape
        device = spec.power.device
        sums = self.sums.get((H, W))
        if sums is None:
            axes = frequency_axes(H, W, self.settings.cutoff, self.window_size, device)
            sums = self.sums[(H, W)] = GridSums(axes)
        axes = sums.axes
        cut = self.settings.cutoff
        fields = summarise(spec, cut, CUTOFFS, self.settings.boundary)
        own_bands = (fields["low_power"], fields["high_power"])
        for prefix, ref in (("residual_ratio", stream_bands), ("matched_ratio", matched_bands)):
            if ref is None:
                continue
            for name, own, total in zip(("low", "high"), own_bands, ref, strict=True):
                ok = total > 0
                ratio = torch.where(ok, own / torch.where(ok, total, 1.0), torch.nan)
                fields[f"{prefix}_{name}"] = ratio
        diag = spec.raw_log_diagonal.float()  # (B, K) log|F| without mean removal, per image
        silent = spec.nondc_power + spec.dc_power <= 0  # a zero map: no amplitude to compare
        parkkim = (diag[:, -1] - diag[:, 0]).to(fields["hf_fraction"].dtype)
        fields["parkkim_hf"] = torch.where(silent, torch.nan, parkkim)
        for k in PER_IMAGE_FIELDS:
            v = fields.get(k)
            self.per_image[k].append(
                torch.full((B,), torch.nan, device=device) if v is None else v.float()
            )
        # maps and profiles average the images with a defined spectrum only (never a 0 for one)
        keep = torch.isfinite(fields["hf_fraction"]).nonzero().flatten()  # (b,) image indices

        def kept(t: torch.Tensor) -> torch.Tensor:
            return t.float().index_select(0, keep)  # a mask index is several times slower

        mean_power = kept(spec.power)  # (b, H, W)
        total = mean_power.flatten(1).sum(1)  # (b,)
        rel = mean_power / total[:, None, None]
        profiles = radial_profile(torch.stack([mean_power, rel]).flatten(0, 1), axes)  # (2b, n)
        b = len(keep)
        sums.add("radial", profiles[:b].sum(0))
        sums.add("radial_rel", profiles[b:].sum(0))
        sums.add("log_amp", kept(spec.log_amplitude).sum(0))  # (H, W)
        sums.add("raw_log_diag", kept(diag).sum(0))  # (K,)
        sums.add("paper", kept(spec.paper_log_amplitude).sum(0))  # (k, H, W)
        sums.count += b

    def finish(self) -> BranchSpectrum:
        if not self.sums:
            raise ValueError(f"{self.branch}: no maps were added")
        per_image = {k: torch.cat(v).double().cpu().numpy() for k, v in self.per_image.items()}
        (H, W), s = max(self.sums.items(), key=lambda kv: kv[1].count)
        n = s.count
        ax = s.axes

        def centred(t: torch.Tensor) -> np.ndarray:
            return torch.fft.fftshift(t / n, dim=(-2, -1)).double().cpu().numpy()

        diag = (s.raw_log_diag / n).double().cpu()  # (K,) Park & Kim's diagonal
        return BranchSpectrum(
            branch=self.branch,
            channels=int(self.channels),
            n_images=len(per_image["centroid"]),
            per_image=per_image,
            grid=(H, W),
            map_images=n,
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
