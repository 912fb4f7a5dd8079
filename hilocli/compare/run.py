"""`hilo compare` as one call: `run(CompareRequest) -> CompareResult`.

    request = CompareRequest(inputs=(Path("samples"),), checkpoints=(a, b))
    result = run(request)            # validates, then per weights: spectrum, distance, MACs
    record = result.to_record()      # the RunRecord written as compare.json

The same distinct images (listed and de-duplicated once, hilo's own files excluded) go through
every set of weights, in the order given: `--checkpoint` files first, then `--model` names. Per
set of weights:
- the spectrum measurement and verdict are `hilo spectrum`'s own (`hilocli.spectrum.run.run` on
  a `SpectrumRequest` built by `CompareRequest.spectrum_request`), at one common resolution;
- Hi-Fi and Lo-Fi mean attention distance (`hilocli.compare.distance`) on the first
  `attn_images` analysed images, over the layers that entered the verdict;
- analytic MACs (`hilocli.flops.analytic.model_cost`) for one res x res image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hilocli.compare.distance import attention_distance
from hilocli.compare.request import CompareRequest
from hilocli.compare.result import (
    CompareEntry,
    CompareResult,
    architecture_fields,
    default_label,
)
from hilocli.distributed import agree, from_main, placement, process_group, rank_device
from hilocli.errors import HiloError, UsageError
from hilocli.images import InputSet
from hilocli.output import InputsRecord, sha256_file
from hilocli.runtime import environment, resolve_device, resolve_precision
from hilocli.spectrum.run import SpectrumResult
from hilocli.spectrum.run import run as spectrum_run
from hilocli.spectrum.sweep import listed_inputs
from hilocli.weights import WeightsRequest

Progress = Callable[[int, int], None]  # (steps done, steps in all)


def run(request: CompareRequest, progress: Progress | None = None) -> CompareResult | None:
    """Measure every set of weights on the same images (see the module docstring). Under
    torchrun/srun the images of each set are shared out as in `hilo spectrum`; rank 0 gets the
    result, the other ranks None."""
    request.validate()
    where = placement()
    device = rank_device(resolve_device(request.device), where)
    precision = resolve_precision(request.dtype, device, request.tf32, auto="float32")
    with process_group(where, device):  # one group for every set (torchrun/srun)
        found, paths = listed_inputs(where, request.inputs, request.limit)
        from_main(where, lambda: _check_duplicate_files(request))  # before any set is loaded
        sets = _SetsOfWeights(request, where, device, precision, found, tuple(paths), progress)
        for k, weights in enumerate(request.weights()):
            sets.measure(k, weights)
    if not where.is_main:
        return None
    return CompareResult(
        request=request,
        resolution=int(sets.resolution),
        device=str(device),
        entries=sets.entries,
        inputs=sets.inputs_record(),
        environment=environment(device),
        precision=precision.to_dict(),
    )


class _SetsOfWeights:
    """The sets of weights of one run, measured in turn on the same listed images: what they
    share (device, precision, resolution, the analysed images) and their entries so far."""

    def __init__(
        self,
        request: CompareRequest,
        where: Any,  # hilocli.distributed.Placement
        device: Any,
        precision: Any,  # hilocli.runtime.Precision
        found: Any,  # the listed inputs (hilocli.images.InputSet)
        paths: tuple[Path, ...],
        progress: Progress | None,
    ) -> None:
        self.request, self.where, self.device, self.precision = request, where, device, precision
        self.found, self.paths, self.progress = found, paths, progress
        # every set's spectrum run gets these files, hashed once here
        self.listed = InputSet(
            list(paths), sha256=found.sha256, sizes=found.sizes, transparent=found.transparent
        )
        self.labels = list(request.labels) or [None] * len(request.weights())
        self.resolution = request.resolution  # None: the first weights' training size
        self.analysed: list[str] | None = None  # the first set's; every set must match it
        self.decode_skipped: list[dict[str, str]] = []
        self.seen: list[tuple[str | None, str]] = []  # (sha256, label) of the sets loaded so far
        self.entries: list[CompareEntry] = []

    def measure(self, k: int, weights: WeightsRequest) -> None:
        """Load the k-th set of weights once, measure its spectrum, then (rank 0) its attention
        distance and cost; the model is freed when this returns."""
        loaded = agree(self.where, lambda: weights.load(self.device))
        label = self._name(k, loaded.provenance)
        if self.resolution is None:  # the first weights' training size, for every set
            self.resolution = loaded.default_resolution
        request = self.request
        layer_spec = request.layers if request.layers is not None else default_layers(loaded)
        spectrum = spectrum_run(
            request.spectrum_request(weights, self.paths, layer_spec, self.resolution),
            self._progress(k),
            loaded,
            self.listed,
        )
        if spectrum is None:  # not rank 0 under torchrun/srun: its share is measured
            return
        self._check_images(spectrum, loaded.provenance)
        self.entries.append(self._entry(label, loaded, spectrum))

    def _name(self, k: int, prov: Any) -> str:
        """The k-th set's label; UsageError when it holds the weights of a set before it."""
        label = self.labels[k] or default_label(prov)
        same = next((lab for sha, lab in self.seen if prov.sha256 and sha == prov.sha256), None)
        if same is not None:  # every rank knows: all stop here together
            raise UsageError(
                f"{prov.describe()} holds the same weights as {same}; "
                "compare each set of weights once"
            )
        self.seen.append((prov.sha256, label))
        return label

    def _progress(self, k: int) -> Callable[[int, int], None] | None:
        """The k-th set's progress as steps of the whole run (images x weights)."""
        if self.progress is None:
            return None
        total = len(self.labels) * len(self.paths)

        def sub(done: int, _n: int) -> None:
            self.progress(k * len(self.paths) + done, total)

        return sub

    def _check_images(self, spectrum: SpectrumResult, prov: Any) -> None:
        """Keep the first set's analysed images; any other set must have analysed the same."""
        if self.analysed is None:
            self.analysed = spectrum.inputs.analysed
            listed_skipped = _skipped(self.found)
            self.decode_skipped = [s for s in spectrum.inputs.skipped if s not in listed_skipped]
        elif spectrum.inputs.analysed != self.analysed:  # the same decoder on the same files
            raise HiloError(f"{prov.describe()} analysed other images than the first weights")

    def _entry(self, label: str, loaded: Any, spectrum: SpectrumResult) -> CompareEntry:
        """The set's row: its spectrum, the attention distance over the layers that entered the
        verdict (else the measured ones) on the first images, and the analytic cost."""
        request, resolution = self.request, self.resolution
        infos = [layer.info for layer in loaded.layers]
        compared = spectrum.tested or [s.layer.index for s in spectrum.layers]
        distance = attention_distance(
            loaded,
            compared,
            self.analysed[: request.attn_images],
            resolution,
            request.crop,
            self.device,
            self.precision,
            request.batch_size,
        )
        macs = params = reason = None
        cost = loaded.analytic_cost(resolution, resolution)
        if cost is not None:
            macs, params = cost.macs, cost.params
        else:
            reason = "not a LITv2: no analytic cost"
        return CompareEntry(
            label=label,
            weights=loaded.provenance,
            model_name=loaded.name,
            architecture=architecture_fields(loaded.config),
            spectrum=spectrum,
            layers=[infos[i] for i in compared],
            distance=distance,
            macs=macs,
            params=params,
            cost_reason=reason,
        )

    def inputs_record(self) -> InputsRecord:
        """The images analysed, every file skipped (listing, then decoding) and the duplicates."""
        return InputsRecord(
            analysed=list(self.analysed or []),
            skipped=[*_skipped(self.found), *self.decode_skipped],
            duplicates=[{"path": str(p), "same_as": str(q)} for p, q in self.found.duplicates],
        )


def default_layers(loaded) -> str | None:
    """None (spectrum's default: layers with both branches) when the model has such a layer;
    otherwise (alpha 0 or 1) its layers with windows (s > 1), where a split would be, so that the
    alpha series' end points are still measured, one branch each."""
    infos = [layer.info for layer in loaded.layers]
    if not infos or any(i.has_both for i in infos):
        return None
    windowed = [i.index for i in infos if i.window_size > 1] or [i.index for i in infos]
    return ",".join(map(str, windowed))


def _check_duplicate_files(request: CompareRequest) -> list[str]:
    """SHA-256 of each checkpoint; UsageError when two files hold the same bytes."""
    digests: list[str] = []
    for p in request.checkpoints:
        digest = sha256_file(Path(p))
        if digest in digests:
            first = request.checkpoints[digests.index(digest)]
            raise UsageError(
                f"--checkpoint {p} holds the same weights as {first} (sha256 {digest[:16]}...); "
                "compare each set of weights once"
            )
        digests.append(digest)
    return digests


def _skipped(found) -> list[dict[str, str]]:
    return [{"path": str(p), "reason": r} for p, r in found.skipped]
