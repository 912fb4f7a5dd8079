"""Bring your own model: build what `--model-fn` / `--hub` names (a `hilocli.model_source.
ModelSource`) and fill it.

Only the code the user names runs: the named file (or module) is imported and the named function
called, nothing else (no search, no directory scan). `--checkpoint` is read as everywhere in hilo
(safetensors, or torch's weights_only unpickler: never code) and loaded strictly into the model.
The provenance records the model's source (spec, file and its SHA-256) and the weights.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hilocli.checkpoint import read_checkpoint_file
from hilocli.errors import HiloError
from hilocli.loaded import LoadedModel, loaded_model
from hilocli.model_source import ModelSource
from hilocli.models.adopters import unwrap
from hilocli.models.config import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from hilocli.models.litv2_checkpoint import load_state_dict_strict
from hilocli.output import sha256_file


def _function(source: ModelSource):
    """Import exactly the named file or module and return the named function."""
    if source.target.endswith(".py"):
        path = Path(source.target).resolve()
        name = f"hilo_user_model_{abs(hash(str(path)))}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent))  # the file's own sibling imports, as python would
        try:
            sys.modules[name] = module
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the user's code: report in one line
            sys.modules.pop(name, None)
            raise HiloError(f"--model-fn: importing {path.name} failed: {_why(exc)}") from None
        finally:
            sys.path.remove(str(path.parent))
    else:
        try:
            module = importlib.import_module(source.target)
        except Exception as exc:  # noqa: BLE001
            raise HiloError(f"--model-fn: importing {source.target} failed: {_why(exc)}") from None
    fn = getattr(module, source.function, None)
    if not callable(fn):
        raise HiloError(
            f"--model-fn {source.spec}: {source.target} has no function {source.function}"
        )
    return fn


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def build(source: ModelSource, seed: int = 0):
    """Call the user's function (seeded); HiloError naming it when it raises or returns no
    nn.Module."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            if source.kind == "hub":
                model = torch.hub.load(
                    source.target, source.function, source="local", **dict(source.kwargs)
                )
            else:
                model = _function(source)(**dict(source.kwargs))
        except HiloError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's code: one line naming it
            raise HiloError(f"{_flag(source)} {source.spec} raised {_why(exc)}") from None
    if not isinstance(model, torch.nn.Module):
        raise HiloError(
            f"{_flag(source)} {source.spec} returned a {type(model).__name__}, not an nn.Module"
        )
    return model


def _flag(source: ModelSource) -> str:
    return "--hub" if source.kind == "hub" else "--model-fn"


@dataclass(frozen=True)
class UserProvenance:
    """The weights block of a user model: its code's source, and file weights or random init."""

    model_source: ModelSource
    path: str | None = None
    sha256: str | None = None
    format: str | None = None
    seed: int | None = None
    layout: str | None = None
    inferred: tuple = field(default=())

    @property
    def source(self) -> str:
        return "file" if self.path else "random init"

    @property
    def trained(self) -> bool:
        return self.path is not None

    def describe(self) -> str:
        model = f"{self.model_source.spec}"
        if not self.trained:
            return f"random init of {model} (seed {self.seed})"
        return f"{model} with checkpoint {self.path} (sha256 {self.sha256})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "model_source": self.model_source.to_dict(),
            "path": self.path,
            "sha256": self.sha256,
            "format": self.format,
            "seed": self.seed,
            "inferred": {},
            "trained": self.trained,
            "description": self.describe(),
        }


def load_user_model(
    source: ModelSource,
    checkpoint: Path | None,
    seed: int,
    device: Any = "cpu",
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> LoadedModel:
    """A `LoadedModel` (eval mode, on device) of the user's model, weights from `checkpoint`
    (strict) or its own seeded init."""
    prov = UserProvenance(source, seed=seed)
    if checkpoint is None:
        model = build(source, seed)
    else:
        path = Path(checkpoint)
        raw, fmt = read_checkpoint_file(path)
        sd = unwrap(raw)
        if sd is None:
            raise HiloError(f"{path}: the file holds no tensors")
        model = _filled(source, seed, sd, str(path))
        prov = UserProvenance(source, str(path), sha256_file(path), fmt)
    preprocess = Preprocess(mean=mean or IMAGENET_MEAN, std=std or IMAGENET_STD)
    return loaded_model(model.eval().to(device), prov, source.spec, preprocess)


def _filled(source: ModelSource, seed: int, sd: dict, where: str):
    """The user's model holding the checkpoint's tensors (strict). Built on the meta device
    first, so no random init is computed and thrown away; built for real when that fails or
    when the model has a tensor no file holds (a non-persistent buffer)."""

    def load(model):
        if not any(k.startswith("module.") for k in model.state_dict()):
            state = {k.removeprefix("module."): v for k, v in sd.items()}
        else:
            state = sd
        load_state_dict_strict(model, state, where)
        return model

    try:
        with torch.device("meta"):
            model = build(source, seed)
    except HiloError:  # the user's code needs real tensors: the error, if any, comes below
        model = None
    if model is not None and {n for n, _ in model.named_buffers()} <= set(model.state_dict()):
        return load(model)
    return load(build(source, seed))
