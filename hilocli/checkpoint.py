"""One entry point for weights: released variants by name, any LITv2 .pth file, or random init.

A checkpoint is untrusted input. It is only ever read with torch's `weights_only` unpickler. The
authors' trainer files also pickle a yacs `CfgNode` (config) and maybe numpy scalars; those few
known, data-only classes are mapped to inert stand-ins (they never run code, and yacs need not be
installed). A file that references anything else (os.system, eval, ...) is refused, not run.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hilocli.errors import HiloError, UsageError

RELEASE_URL_ENV = "HILO_RELEASE_URL"  # replaces the release base URL (mirrors, tests)
DEFAULT_MODEL = "litv2_s"
ASSUMED_HEAD_DIM = 32  # every released LITv2 uses 32-dimensional heads


@dataclass(frozen=True)
class Provenance:
    """Where a model's weights came from. Stored beside every result."""

    source: str  # "file" | "pretrained" | "random init"
    variant: str | None = None
    path: str | None = None
    sha256: str | None = None
    url: str | None = None
    seed: int | None = None

    @property
    def trained(self) -> bool:
        return self.source != "random init"

    def describe(self) -> str:
        if not self.trained:
            return f"random init ({self.variant or 'custom'} architecture, seed {self.seed})"
        what = f"{self.variant} released weights" if self.source == "pretrained" else "checkpoint"
        return f"{what} {self.path} (sha256 {self.sha256})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "trained": self.trained, "description": self.describe()}


@dataclass
class LoadedModel:
    model: Any  # LITv2, in eval mode, on the requested device
    provenance: Provenance
    name: str  # variant name, or "inferred from <file>"


# ----------------------------------------------------------------------------------------------
# Reading files safely
# ----------------------------------------------------------------------------------------------


class _InertMapping:
    """Stand-in for a dict-like config class (yacs CfgNode, argparse Namespace): becomes a plain
    OrderedDict holding the same items. Constructing it never runs code from the checkpoint."""

    def __new__(cls, *args, **kwargs):
        return OrderedDict()


class _InertValue:
    """Stand-in for a data-only value class (numpy scalars and dtypes): swallows its state."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __setstate__(self, state):
        self.state = state


# Classes that hold configuration or metadata only; never imported, mapped to inert stand-ins.
_DATA_ONLY_GLOBALS = {
    "yacs.config.CfgNode": _InertMapping,
    "argparse.Namespace": _InertMapping,
    "numpy.core.multiarray.scalar": _InertValue,
    "numpy._core.multiarray.scalar": _InertValue,
    "numpy.dtype": _InertValue,
    **{f"numpy.dtypes.{t}DType": _InertValue for t in ("Float64", "Float32", "Int64", "Int32")},
}
_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def sha256sum(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_checkpoint(path: Path) -> Any:
    """torch.load with weights_only; known data-only classes become inert stand-ins."""
    import pickle

    import torch

    path = Path(path)
    if not path.exists():
        raise HiloError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise HiloError(f"checkpoint is a directory, not a file: {path}")
    if path.stat().st_size == 0:
        raise HiloError(f"checkpoint is empty (0 bytes): {path}")
    allowed: list[tuple[type, str]] = []
    for _ in range(len(_DATA_ONLY_GLOBALS) + 1):
        try:
            with torch.serialization.safe_globals(allowed), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # protocol notes etc.: errors are ours to report
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            names = _GLOBAL_RE.findall(str(exc))
            name = names[0] if names else None
            if name in _DATA_ONLY_GLOBALS and name not in [n for _, n in allowed]:
                allowed.append((_DATA_ONLY_GLOBALS[name], name))
                continue
            if name:
                raise HiloError(f"refusing to load {path}: it references {name}, which a "
                                "weights file has no need for (it could run code)") from None
            raise HiloError(f"{path} is not a readable PyTorch checkpoint: "
                            f"{_first_line(exc)}") from None
        except Exception as exc:  # truncated zip, not a pickle, wrong magic number, ...
            raise HiloError(f"{path} is not a readable PyTorch checkpoint "
                            f"(empty, truncated or another format): {_first_line(exc)}") from None
    raise HiloError(f"{path}: too many unknown classes in the pickle")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


# ----------------------------------------------------------------------------------------------
# Inferring the architecture from the tensors
# ----------------------------------------------------------------------------------------------


def infer_config(sd: dict, window_sizes: list[int] | None = None,
                 head_dim: int = ASSUMED_HEAD_DIM):
    """A LITv2Config that fits the state dict `sd` (already filtered).

    Tensors tell embed dim, depths, stage count, alpha (from the head split), classes, qkv bias and
    which optional norms exist. Heads assume `head_dim`. Window sizes cannot be told apart from
    tensors (a Lo-Fi-only layer with s=2 has the same weights as plain MSA), so stages with a Hi-Fi
    branch are taken as s=2, the last attention stage as s=1 (as in every released model), unless
    `window_sizes` says otherwise.
    """
    from hilocli.models import LITv2Config, split_heads

    if "patch_embed.proj.weight" not in sd:
        sample = ", ".join(list(sd)[:3])
        raise HiloError(f"not a LITv2 checkpoint: no patch_embed.proj.weight (keys look like {sample})")
    if head_dim <= 0:
        raise UsageError(f"--head-dim must be positive, got {head_dim}")
    embed_dim, in_chans, patch, _ = sd["patch_embed.proj.weight"].shape
    stage_ids = sorted({int(m.group(1)) for k in sd if (m := re.match(r"layers\.(\d+)\.", k))})
    if not stage_ids or stage_ids != list(range(len(stage_ids))):
        raise HiloError("not a LITv2 checkpoint: no layers.<i> stages found")
    depths, heads, has_hifi, has_attn, lofi_heads = [], [], [], [], []
    for i in stage_ids:
        blocks = {int(m.group(1)) for k in sd if (m := re.match(rf"layers\.{i}\.blocks\.(\d+)\.", k))}
        depths.append(len(blocks))
        dim = embed_dim * 2**i
        pre = f"layers.{i}.blocks.0.attn."
        has_attn.append(any(k.startswith(pre) for k in sd))
        if has_attn[-1] and dim % head_dim:
            raise HiloError(f"stage {i + 1} has {dim} channels, not divisible by head dim {head_dim}; "
                            "pass --head-dim")
        heads.append(max(1, dim // head_dim))
        has_hifi.append(f"{pre}h_qkv.weight" in sd)
        lofi_heads.append(sd[f"{pre}l_q.weight"].shape[0] // head_dim if f"{pre}l_q.weight" in sd
                          else 0)
    if window_sizes is None:
        attn_stages = [i for i in stage_ids if has_attn[i]]
        window_sizes = [0 if not has_attn[i] else 1 if (i == attn_stages[-1] and not has_hifi[i])
                        else 2 for i in stage_ids]
    elif len(window_sizes) != len(stage_ids):
        raise UsageError(f"--window-sizes needs {len(stage_ids)} entries (one per stage), got "
                         f"{len(window_sizes)}")
    for i in stage_ids:
        if bool(window_sizes[i]) != has_attn[i]:
            raise UsageError(f"--window-sizes: stage {i + 1} {'has' if has_attn[i] else 'has no'} "
                             f"attention weights, window size {window_sizes[i]} does not fit")
    # alpha: the first released value that reproduces every observed Hi-Fi/Lo-Fi split
    split_stages = [i for i in stage_ids if window_sizes[i] > 1]
    alpha = 0.9
    if split_stages:
        i0 = split_stages[0]
        candidates = [0.9, 0.0, 0.2, 0.4, 0.5, 0.7, 1.0, lofi_heads[i0] / heads[i0]]
        fits = [a for a in candidates
                if all(split_heads(heads[i], a, window_sizes[i])[1] == lofi_heads[i]
                       for i in split_stages)]
        if not fits:
            raise HiloError("the Hi-Fi/Lo-Fi head split differs between stages; no single alpha fits")
        alpha = fits[0]
    fc1 = sd.get("layers.0.blocks.0.mlp.fc1.weight")
    mlp_ratio = fc1.shape[0] / embed_dim if fc1 is not None else 4.0
    qkv_bias = any(k.endswith(("attn.l_q.bias", "attn.h_qkv.bias")) for k in sd) or not any(has_attn)
    return LITv2Config(
        embed_dim=int(embed_dim), depths=tuple(depths), num_heads=tuple(heads), alpha=alpha,
        local_ws=tuple(window_sizes), mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
        num_classes=int(sd["head.weight"].shape[0]) if "head.weight" in sd else 0,
        final_norm="norm.weight" in sd, stage_norms="norm1.weight" in sd,
        in_chans=int(in_chans), patch_size=int(patch),
    )


def load_into(model, sd: dict, source: str) -> None:
    """Strict load; a mismatch is one error naming missing, unexpected and wrongly shaped keys."""
    expected = model.state_dict()
    # BatchNorm's counter is bookkeeping, not a weight; older files may omit it.
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in expected]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected),
                             ("wrong shape", shapes)):
            if items:
                more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
                parts.append(f"{label} {len(items)}: {', '.join(items[:3])}{more}")
        raise HiloError(f"{source} does not fit the model; " + "; ".join(parts))
    model.load_state_dict(sd, strict=False)


# ----------------------------------------------------------------------------------------------
# Released weights
# ----------------------------------------------------------------------------------------------


def release_url(variant) -> str:
    base = os.environ.get(RELEASE_URL_ENV)
    if not base:
        return variant.url
    tail = variant.url.split("/releases/download/", 1)[1]  # e.g. v1.0/litv2_s.pth
    return f"{base.rstrip('/')}/{tail}"


def cache_dir() -> Path:
    """The standard torch hub checkpoint cache ($TORCH_HOME/hub/checkpoints)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def download(url: str, dest: Path, progress: bool = True) -> Path:
    """Fetch url (http, https or file) to dest with a progress bar; dest appears only when whole."""
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                               TransferSpeedColumn)

    from hilocli.io import atomic_path

    try:
        response = urllib.request.urlopen(url, timeout=30)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HiloError(f"cannot download {url} ({reason}); offline? fetch it elsewhere and pass "
                        "--checkpoint PATH") from None
    total = int(response.headers.get("Content-Length") or 0) or None
    with response, atomic_path(dest) as tmp, open(tmp, "wb") as out, Progress(
        TextColumn("[bold]download[/] {task.description}"), BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), disable=not progress, transient=True,
    ) as bar:
        task = bar.add_task(dest.name, total=total)
        try:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.advance(task, len(chunk))
        except OSError as exc:
            raise HiloError(f"download of {url} broke off: {exc}") from None
    return dest


def fetch_released(variant, progress: bool = True) -> Path:
    """Path of the variant's released weights, downloading them into the hub cache once."""
    url = release_url(variant)
    dest = cache_dir() / url.rsplit("/", 1)[-1]
    if variant.name.startswith("litv2_s_alpha"):  # alpha_0.9.pth would be ambiguous in the cache
        dest = dest.with_name(f"litv2_s_{dest.name}")
    if not dest.exists():
        download(url, dest, progress=progress)
    return dest


# ----------------------------------------------------------------------------------------------
# The entry point
# ----------------------------------------------------------------------------------------------


def load_model(model: str | None = None, checkpoint: Path | None = None, pretrained: bool = False,
               window_sizes: list[int] | None = None, head_dim: int = ASSUMED_HEAD_DIM,
               device: Any = "cpu", seed: int = 0, progress: bool = True) -> LoadedModel:
    """Build a LITv2 and fill it.

    - checkpoint: that file, loaded strictly; architecture from `model` when given, else inferred.
    - model with pretrained: the released weights (downloaded once to the torch hub cache).
    - otherwise: random init (seeded) of `model` (default litv2_s).
    """
    import torch

    from hilocli.models import LITv2, filter_state_dict, get_variant

    try:
        variant = get_variant(model) if model else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if checkpoint is None and variant is None:
        variant = get_variant(DEFAULT_MODEL)

    if checkpoint is not None or pretrained:
        path = Path(checkpoint) if checkpoint is not None else fetch_released(variant, progress)
        try:
            sd = filter_state_dict(read_checkpoint(path))
        except ValueError as exc:
            raise HiloError(f"{path}: {exc}") from None
        if variant is not None:
            cfg = variant.cfg
            if window_sizes is not None:
                cfg = cfg.replace(local_ws=tuple(window_sizes))
            name = variant.name
        else:
            cfg = infer_config(sd, window_sizes, head_dim)
            name = f"inferred from {path.name}"
        net = LITv2(cfg)
        load_into(net, sd, str(path))
        prov = Provenance(source="file" if checkpoint is not None else "pretrained",
                          variant=variant.name if variant else None, path=str(path),
                          sha256=sha256sum(path),
                          url=None if checkpoint is not None else release_url(variant))
    else:
        cfg = variant.cfg
        if window_sizes is not None:
            cfg = cfg.replace(local_ws=tuple(window_sizes))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = LITv2(cfg)
        name = variant.name
        prov = Provenance(source="random init", variant=variant.name, seed=seed)
    return LoadedModel(model=net.eval().to(device), provenance=prov, name=name)
