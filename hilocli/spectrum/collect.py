"""Running a model over images and measuring its HiLo layers: decoding in chunks, and the
collector that hooks the model (`hilocli.hilo.capture`) and feeds each branch's accumulator."""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hilocli.errors import HiloError, UsageError
from hilocli.hilo.capture import capture
from hilocli.hilo.layer import HiLoLayer
from hilocli.models.geometry import HiLoLayerInfo
from hilocli.spectrum.analyse import Part, band_power, bands, joint_spectra
from hilocli.spectrum.branch import BranchAccumulator, BranchSpectrum
from hilocli.spectrum.depth import block_outputs, finish_depth
from hilocli.spectrum.measures import BRANCH_LABELS, BRANCHES, SpectrumSettings
from hilocli.spectrum.transfer import (
    ANGLES,
    hifi_gain,
    lofi_gain,
    matched_outputs,
    transfer_frequencies,
)
from hilocli.weights import check_finite

DEPTH_NEEDS_BLOCKS = (
    "--depth follows every residual block, which only a LITv2 config states; "
    "this model states none (its HiLo layers are measured without it)"
)
SILENT_SHARE = 0.01  # a branch with less than this share of the layer's power is not compared


@dataclass
class LayerSpectra:
    """The three measured branches of one HiLo layer."""

    layer: HiLoLayerInfo  # index (what --layer takes), name, window size, head counts
    grid: tuple[int, int]  # grid of the maps shown (most common one)
    hifi: BranchSpectrum | None  # None: the layer has no Hi-Fi heads (window 1 or alpha 1)
    lofi: BranchSpectrum | None  # None: no Lo-Fi heads (alpha 0)
    control: BranchSpectrum
    transfer: dict[str, Any] | None = None  # settings.transfer: SpectrumCollector.transfer_curves
    blank: np.ndarray | None = None  # (n_images,) bool: inputs without spatial content, left out

    @property
    def hifi_power_share(self) -> float:
        """Median over images of Hi-Fi's share of the two branches' non-DC power (each summed
        over its channels); NaN without both branches or any image with power."""
        if self.hifi is None or self.lofi is None:
            return math.nan
        hifi = self.hifi.per_image["nondc_power"] * self.hifi.channels
        lofi = self.lofi.per_image["nondc_power"] * self.lofi.channels
        total = hifi + lofi
        ok = total > 0
        if self.blank is not None:
            ok &= ~self.blank
        return float(np.median(hifi[ok] / total[ok])) if ok.any() else math.nan

    @property
    def not_comparable(self) -> str | None:
        """Why the branches of this layer cannot be compared, or None."""
        name = f"layer {self.layer.index}"
        if self.hifi is None or self.lofi is None:
            return f"{name} has no {'Hi-Fi' if self.hifi is None else 'Lo-Fi'} branch"
        share = self.hifi_power_share
        if not math.isfinite(share):
            return f"{name}: neither branch has spatial power"
        for branch, part in (("Lo-Fi", 1 - share), ("Hi-Fi", share)):
            if part < SILENT_SHARE:
                return f"{name}: {branch} is nearly silent ({part:.2%} of the power)"
        return None

    @property
    def comparable(self) -> bool:
        return self.not_comparable is None

    def branch(self, name: str) -> BranchSpectrum | None:
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.layer.to_dict(),
            "grid": list(self.grid),
            "comparable": self.comparable,
            "not_comparable": self.not_comparable,
            "hifi_power_share": self.hifi_power_share,
            "branches": {
                b: (None if self.branch(b) is None else self.branch(b).to_dict()) for b in BRANCHES
            },
        }


class SpectrumCollector:
    """Measures the chosen HiLo layers of `model` batch by batch.

        with SpectrumCollector(model, layers, settings) as col:
            for x in batches:          # (B, 3, H, W) on the model's device
                col.add_batch(x)
        layers = col.finish()

    Uses the model's fast attention path (no attention weights are needed); branch maps stay on
    the model's device. Batches may differ in size. Non-finite maps are refused (HiloError).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        layers: Sequence[HiLoLayer],
        settings: SpectrumSettings,
        blocks: Sequence = (),  # hilocli.loaded.BlockMeta: the blocks settings.depth hooks
        stop_early: bool = True,  # forward only to the last chosen layer; False for a
        # compiled model (a forward stopped by an exception breaks its graph: it compiles again)
    ):
        if settings.depth and not blocks:
            raise UsageError(DEPTH_NEEDS_BLOCKS)
        self.model = model
        self.blocks = list(blocks)
        self.views = {layer.index: layer for layer in layers}
        self.layers: list[HiLoLayerInfo] = [layer.info for layer in layers]
        self.accs = {
            info.index: {b: BranchAccumulator(b, settings, info.window_size) for b in BRANCHES}
            for info in self.layers
        }
        self.settings = settings
        self.stop_early = stop_early and not settings.depth  # --depth follows every block
        self.images = 0
        self._stack = ExitStack()
        self._cap = None
        self._stream: dict[int, torch.Tensor] = {}  # residual stream x entering each block
        self._depth = None  # list of depth.BlockCurve while settings.depth
        self._gains: dict[int, dict[str, torch.Tensor]] = {}  # transfer gains summed over images

    def __enter__(self) -> SpectrumCollector:
        views = list(self.views.values())
        self._cap = self._stack.enter_context(
            capture(
                self.model,
                views,
                attn=self.settings.transfer,
                keep_on_device=True,
                stop_early=self.stop_early,
            )
        )
        if self.settings.residual:
            for info in self.layers:
                block = self.model.get_submodule(info.path.rpartition(".")[0])
                handle = block.register_forward_pre_hook(self._stream_hook(info.index))
                self._stack.callback(handle.remove)
        if self.settings.depth:
            self._depth = self._stack.enter_context(block_outputs(self.model, self.blocks))
        return self

    def _stream_hook(self, index: int):
        def hook(_mod, args):
            if len(args) >= 3:  # a block: (x (B, N, C), H, W); anything else: no stream
                x, H, W = args[0], int(args[1]), int(args[2])
                self._stream[index] = x.detach().reshape(x.shape[0], H, W, -1)  # (B, H, W, C)

        return hook

    def depth_curve(self):
        """Park & Kim's depth curve (hilocli.spectrum.depth.DepthCurve); settings.depth only."""
        if self._depth is None:
            raise ValueError("the depth curve needs SpectrumSettings(depth=True)")
        return finish_depth(self._depth)

    def _stream_at(self, index: int, grid: tuple[int, ...]) -> torch.Tensor | None:
        """The residual stream (B, H, W, C) entering the block, or None (none, or another grid)."""
        stream = self._stream.get(index)
        if stream is None or tuple(stream.shape[:3]) != tuple(grid):
            return None
        return stream

    def _matched_bands(self, info: HiLoLayerInfo, control: torch.Tensor) -> dict:
        """Per branch the (low, high) band power (B,) of its matched input (transfer.py)."""
        if not self.settings.matched:
            return {}
        outs = matched_outputs(self.views[info.index], control)
        cut, bnd = self.settings.cutoff, self.settings.boundary
        return {b: band_power(m, cut, bnd) for b, m in outs.items()}

    def _add_transfer(self, info: HiLoLayerInfo, rec) -> None:
        if rec.pooling != "pad":
            raise HiloError(
                f"layer {info.index} ({info.path}) pools its Lo-Fi keys with a floor: the "
                "transfer curves (--transfer) assume the authors' pad-then-pool"
            )
        _, freqs = transfer_frequencies()
        gains = {}
        if rec.hifi_attn is not None:
            gains["hifi"] = hifi_gain(rec.hifi_attn, freqs, rec.grid).sum(0)  # (h, A, R)
        if rec.lofi_attn is not None:
            gains["lofi"] = lofi_gain(rec.lofi_attn, freqs, rec.grid, info.window_size).sum(0)
        old = self._gains.setdefault(info.index, {})
        for b, g in gains.items():
            old[b] = g if b not in old else old[b] + g

    def transfer_curves(self) -> dict[int, dict]:
        """Per layer index: radii (R,) in cycles per token, angles (A,) in degrees, the window size
        and per branch the mean gain over images (heads, A, R) (settings.transfer only; see
        hilocli.spectrum.transfer)."""
        if not self.settings.transfer:
            raise ValueError("transfer curves need SpectrumSettings(transfer=True)")
        radii, _ = transfer_frequencies()
        return {
            i: {
                "radii": radii.numpy(),
                "angles": list(ANGLES),
                "window_size": next(x.window_size for x in self.layers if x.index == i),
                **{b: (g / self.images).double().cpu().numpy() for b, g in gains.items()},
            }
            for i, gains in self._gains.items()
        }

    def __exit__(self, *exc) -> None:
        self._cap = None  # the depth curves stay readable after the block
        self._stream.clear()
        self._stack.close()

    def _branch_maps(self):
        """(maps (B, H, W, C_b), what) of every measured branch of this batch, in order."""
        for info in self.layers:
            rec = self._cap.records[info.index]
            for b in BRANCHES:
                maps = rec.control if b == "control" else getattr(rec, f"{b}_out")
                if maps is not None:
                    yield maps, f"the {BRANCH_LABELS[b]} output of layer {info.index} ({info.name})"

    def _check_finite(self) -> None:
        """HiloError naming the first non-finite branch output; one host sync per batch. A sum
        is NaN or inf when any term is (one read, no mask); only a suspicious sum (also a finite
        overflow) is checked element by element."""
        floats = [m for m, _ in self._branch_maps() if m.is_floating_point()]
        if floats and bool(torch.stack([m.sum() for m in floats]).isfinite().all()):
            return
        for maps, what in self._branch_maps():
            check_finite(maps, what)

    def add_batch(self, x: torch.Tensor) -> None:
        """Forward one batch (B, 3, H, W) as far as the last chosen layer (the whole model with
        --depth) and measure it."""
        if self._cap is None:
            raise RuntimeError("use SpectrumCollector inside a `with` block")
        with torch.no_grad():
            self._cap.forward(self.model, x)
            self._check_finite()
            for info in self.layers:
                self._measure_layer(info)
        self.images += x.shape[0]

    def _measure_layer(self, info: HiLoLayerInfo) -> None:
        """One layer of this batch: its branches and the residual stream in one transform
        (`analyse.joint_spectra`), each branch's spectra into its accumulator."""
        rec, accs, cut = self._cap.records[info.index], self.accs[info.index], self.settings.cutoff
        present = [
            (b, rec.control if b == "control" else getattr(rec, f"{b}_out")) for b in BRANCHES
        ]
        present = [(b, m) for b, m in present if m is not None]  # (B, H, W, C_b) each
        parts = [accs[b].part(m) for b, m in present]
        stream = self._stream_at(info.index, rec.control.shape[:3])
        if stream is not None:
            parts.append(Part(stream))
        done = joint_spectra(parts, self.settings.boundary, cut)
        stream_bands = bands(done[-1], cut) if stream is not None else None
        matched = self._matched_bands(info, rec.control)
        if self.settings.transfer:
            self._add_transfer(info, rec)
        for (b, _), spec in zip(present, done):
            own = None if b == "control" else stream_bands
            accs[b].add_spectra(spec, own, matched.get(b))

    def finish(self) -> list[LayerSpectra]:
        if self.images == 0:
            raise ValueError("no images to analyse")
        out = []
        curves = self.transfer_curves() if self.settings.transfer else {}
        for info in self.layers:
            done = {b: (a.finish() if a.sums else None) for b, a in self.accs[info.index].items()}
            out.append(
                LayerSpectra(
                    layer=info,
                    grid=done["control"].grid,
                    hifi=done["hifi"],
                    lofi=done["lofi"],
                    control=done["control"],
                    transfer=curves.get(info.index),
                )
            )
        return out
