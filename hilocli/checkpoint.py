"""One entry point for weights: released variants by name, any LITv2 checkpoint, or random init.

A checkpoint is untrusted input. Safetensors files (told by their bytes, whatever their name) are
read with safetensors; everything else only with torch's `weights_only` unpickler, after its
pickle has been scanned (never run) so that a refusal names what the file wanted to call. The
authors' trainer files also pickle a yacs `CfgNode` (their config) and maybe numpy scalars; those
few data-only classes become inert stand-ins (yacs need not be installed), and the config is read
to settle what the tensors leave open (`hilocli.models.litv2_checkpoint`). Every failure is one
line in hilo's words (`hilocli.checkpoint_files`).
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from hilocli.checkpoint_files import (
    DATA_ONLY_GLOBALS,
    is_torch_legacy,
    pickle_globals,
    refusal,
    refuse_unread,
    sniff,
    unknown_format,
    zip_problem,
)
from hilocli.errors import HiloError, UsageError
from hilocli.loaded import LoadedModel, loaded_model
from hilocli.models.adopters import to_authors
from hilocli.models.config import DEFAULT_MODEL, LITv2Config, Variant, get_variant, variant_config
from hilocli.models.litv2 import LITv2
from hilocli.models.litv2_checkpoint import (
    InferredField,
    filter_state_dict,
    infer_config,
    load_state_dict_strict,
    trainer_config,
)
from hilocli.output import sha256_file
from hilocli.release import ReleaseOrigin, fetch_released


@dataclass(frozen=True)
class Provenance:
    """Where a model's weights came from, and what about its architecture was inferred."""

    source: str  # "file" | "pretrained" | "random init"
    variant: str | None = None
    path: str | None = None
    sha256: str | None = None
    url: str | None = None
    seed: int | None = None
    format: str | None = None  # "torch zip" | "torch legacy" | "safetensors"
    layout: str | None = None  # key names of another library, mapped: "openmixup" | "birder"
    inferred: tuple = field(default=())  # InferredField, for settings the file did not state
    release: ReleaseOrigin | None = None  # source "pretrained": where the cached file came from

    @property
    def trained(self) -> bool:
        return self.source != "random init"

    @property
    def trust(self) -> str | None:
        """Released weights: the SHA-256 against the one recorded at their first download."""
        return None if self.release is None else self.release.check(str(self.sha256))

    def describe(self) -> str:
        if not self.trained:
            return f"random init ({self.variant or 'custom'} architecture, seed {self.seed})"
        if self.source != "pretrained":
            return f"checkpoint {self.path} (sha256 {self.sha256})"
        origin = self.release.origin if self.release else "unknown"
        if origin == "the authors' release":
            what = f"{self.variant}: the authors' release ({self.release.url})"
        elif origin == "mirror":
            what = f"{self.variant} weights from mirror URL {self.release.url}"
        else:
            what = f"{self.variant} weights of unknown origin (no download record)"
        return f"{what}, file {self.path} (sha256 {self.sha256}; {self.trust})"

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("inferred", "release")}
        if self.release is not None:
            d["release"] = {**self.release.to_dict(), "trust": self.trust}
        return {
            **d,
            "inferred": {f.name: f.to_dict() for f in self.inferred},
            "trained": self.trained,
            "description": self.describe(),
        }


# ----------------------------------------------------------------------------------------------
# Reading files safely
# ----------------------------------------------------------------------------------------------


def read_checkpoint(path: Path) -> Any:
    """The file's content (a state dict or a wrapper around one); HiloError in hilo's words."""
    return read_checkpoint_file(Path(path))[0]


def read_checkpoint_file(path: Path) -> tuple[Any, str]:
    """(content, format): safetensors told by content; torch files with weights_only only."""
    if not path.exists():
        raise HiloError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise HiloError(f"checkpoint is a directory, not a file: {path}")
    kind = sniff(path)
    if kind == "empty":
        raise HiloError(f"checkpoint {path} is empty (0 bytes)")
    if kind == "safetensors":
        return _read_safetensors(path), "safetensors"
    if kind == "unknown":
        raise HiloError(unknown_format(path))
    if kind == "zip" and (problem := zip_problem(path)):
        raise HiloError(problem)
    names = pickle_globals(path, kind)
    if kind == "pickle" and not is_torch_legacy(path):
        raise HiloError(
            refusal(path, names)
            or (
                f"{path} is a plain Python pickle, not a PyTorch checkpoint "
                f"(torch.save writes a zip "
                "archive); hilo does not unpickle plain pickles"
            )
        )
    if refuse_unread(names):
        raise HiloError(refusal(path, names))
    return _torch_load(path, names), "torch zip" if kind == "zip" else "torch legacy"


def _torch_load(path: Path, names: list[str]) -> Any:
    allowed = [(DATA_ONLY_GLOBALS[n], n) for n in names if n in DATA_ONLY_GLOBALS]
    try:
        with torch.serialization.safe_globals(allowed), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol notes etc.: errors are ours to report
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        message = refusal(path, names)
    except Exception:  # noqa: BLE001 - torch's own wording (miniz, inline_container) stays inside
        message = None
    raise HiloError(
        message
        or f"{path} is a damaged PyTorch checkpoint (truncated or corrupted); "
        "fetch or save it again"
    )


def _read_safetensors(path: Path) -> dict:
    try:
        return load_file(str(path), device="cpu")
    except Exception:  # noqa: BLE001 - SafetensorError and friends: one message
        raise HiloError(
            f"{path} is a damaged safetensors file (truncated or corrupted); fetch or save it again"
        ) from None


# ----------------------------------------------------------------------------------------------
# The entry point
# ----------------------------------------------------------------------------------------------


def load_model(
    model: str | None = None,
    checkpoint: Path | None = None,
    pretrained: bool = False,
    window_sizes: list[int] | None = None,
    head_dim: int | None = None,
    device: Any = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> LoadedModel:
    """Build a LITv2 and fill it.

    - checkpoint: that file, loaded strictly; architecture from `model` when given, else inferred
      (`window_sizes` / `head_dim` settle what the file leaves open; None: infer).
    - model with pretrained: the released weights (downloaded once to the torch hub cache).
    - otherwise: random init (seeded) of `model` (default litv2_s).
    """
    variant = _variant(model, checkpoint)
    cfg = None if variant is None else variant_config(variant, window_sizes, head_dim)
    inferred: tuple = ()
    if window_sizes is not None and variant is not None:
        inferred = (InferredField("local_ws", tuple(window_sizes), "option"),)
    if checkpoint is None and not pretrained:
        net = random_litv2(cfg, seed)
        prov = Provenance(source="random init", variant=variant.name, seed=seed, inferred=inferred)
        return loaded_model(net.eval().to(device), prov, variant.name, variant.preprocess, cfg)

    release = None if checkpoint is not None else fetch_released(variant, progress)
    path = Path(checkpoint) if checkpoint is not None else release[0]
    raw, fmt = read_checkpoint_file(path)
    try:
        sd, layout = adopted_state_dict(raw, path)
    except ValueError as exc:
        raise HiloError(f"{path}: {exc}; not a LITv2 checkpoint") from None
    if variant is not None:
        name, preprocess = variant.name, variant.preprocess
    else:
        inference = _inferred_config(sd, raw, path, window_sizes, head_dim)
        cfg, preprocess, inferred = inference.cfg, inference.preprocess, inference.fields
        name = f"inferred from {path.name}"
    net = _litv2_holding(cfg, sd, path, model if checkpoint is not None else None)
    prov = Provenance(
        source="file" if checkpoint is not None else "pretrained",
        variant=variant.name if variant else None,
        path=str(path),
        sha256=sha256_file(path),
        url=None if release is None else release[1].url,
        format=fmt,
        layout=layout,
        inferred=inferred,
        release=None if release is None else release[1],
    )
    return loaded_model(net.eval().to(device), prov, name, preprocess, cfg)


def random_litv2(cfg: LITv2Config, seed: int) -> LITv2:
    """A LITv2 of `cfg` with its seeded random init; the global random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LITv2(cfg)


def _variant(model: str | None, checkpoint: Path | None) -> Variant | None:
    """The released variant `--model` names (the default one without a checkpoint); None: the
    checkpoint's architecture is inferred."""
    try:
        variant = get_variant(model) if model else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if checkpoint is None and variant is None:
        variant = get_variant(DEFAULT_MODEL)
    return variant


def _inferred_config(sd: dict, raw: Any, path: Path, window_sizes, head_dim: int | None):
    """The architecture a file's tensors (and its trainer config, if any) state; HiloError
    naming the file when they do not settle it."""
    try:
        return infer_config(sd, window_sizes, head_dim, trainer_config(raw))
    except UsageError:
        raise
    except HiloError as exc:
        raise HiloError(f"{path}: {exc}") from None


def _litv2_holding(cfg: LITv2Config, sd: dict, path: Path, model: str | None) -> LITv2:
    """A LITv2 of `cfg` holding the file's tensors (strict). `model`: the `--model` given beside
    `--checkpoint`, so a mismatch is reported as those two options disagreeing."""
    with torch.device("meta"):  # every weight comes from the file: skip the random init
        net = LITv2(cfg)
    try:
        load_state_dict_strict(net, sd, str(path))
    except HiloError as exc:
        if model is None:
            raise
        raise UsageError(  # the file is not that variant: two options that disagree
            f"--model {model} conflicts with --checkpoint {path}, which does not hold "
            f"{model}'s tensors ({exc}); drop --model to infer the architecture from the file"
        ) from None
    return net


def adopted_state_dict(raw: Any, path: Path) -> tuple[dict, str | None]:
    """(state dict in the authors' names, other library's layout or None); ValueError when the
    file holds no tensors. OpenMixup and birder names are mapped (`hilocli.models.adopters`)."""
    try:
        sd, layout = to_authors(raw)
    except HiloError as exc:
        raise HiloError(f"{path}: {exc}") from None
    return (sd, layout) if layout else (filter_state_dict(raw), None)
