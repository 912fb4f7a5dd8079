"""What the loader gives every feature: a `LoadedModel`. `WeightsRequest.load` turns a request (a
released variant, a checkpoint, `--model-fn`, `--hub`, or a random init) into one; the loader
(`hilocli.weights`, `hilocli.checkpoint`, `hilocli.usermodel`) is the only code that knows where a
model came from.

A LoadedModel carries the network (eval mode, on its device), its provenance, how its images are
prepared, its default resolution and minimum input size, and its HiLo layers found by structure
(`hilocli.hilo.discover`; a LITv2 config adds each layer's stage, block name and token stride as
metadata). Features take a LoadedModel and never ask which kind of model they hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from hilocli.errors import UsageError
from hilocli.flops.analytic import model_cost
from hilocli.hilo.discover import LayerMeta, Rejected, find_layers, no_layers_error
from hilocli.hilo.layer import HiLoLayer
from hilocli.models.config import LITv2Config, Preprocess
from hilocli.models.geometry import (
    StageInfo,
    forward_bytes,
    min_input_size,
    stage_infos,
    token_stride,
)
from hilocli.option_lists import parse_layers
from hilocli.runtime import freeze_loaded

DEFAULT_RESOLUTION = 224  # a model whose config does not say its training size


@dataclass
class LoadedModel:
    model: nn.Module  # eval mode, on the requested device
    provenance: Any  # hilocli.checkpoint.Provenance | hilocli.usermodel.UserProvenance
    name: str  # variant name, "inferred from <file>", or the --model-fn / --hub spec
    preprocess: Preprocess  # how its images are prepared
    layers: list[HiLoLayer]  # every HiLo layer, in the order --layer indexes them
    rejected: list[Rejected]  # look-alike modules skipped, with the reason
    config: LITv2Config | None = None  # what the architecture states (LITv2), else None

    @property
    def default_resolution(self) -> int:
        """The training size a config states, else DEFAULT_RESOLUTION."""
        return DEFAULT_RESOLUTION if self.config is None else self.config.img_size

    @property
    def min_input_size(self) -> int:
        """Smallest input side (px) every stage can take; 1 when no config states it."""
        return 1 if self.config is None else min_input_size(self.config)

    @property
    def blocks(self) -> list[BlockMeta]:
        """The residual blocks a config states (what --depth follows), else []."""
        return [] if self.config is None else block_meta(self.config)

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def in_channels(self) -> int:
        """Input channels of the model: the first Conv2d's, else 3."""
        conv = next((m for m in self.model.modules() if isinstance(m, nn.Conv2d)), None)
        return conv.in_channels if conv is not None else 3

    def analytic_cost(self, height: int, width: int):
        """Parameters and MACs in the authors' convention (`hilocli.flops.analytic.ModelCost`)
        where the architecture is stated by a config; None for any other model."""
        if self.config is None:
            return None
        return model_cost(self.config, height, width)

    def forward_bytes(self, height: int, width: int) -> int | None:
        """A rough peak memory of one image's forward (`hilocli.models.geometry.forward_bytes`)
        where a config states the architecture; None (no estimate) for any other model."""
        return None if self.config is None else forward_bytes(self.config, height, width)

    def stages(self, height: int, width: int) -> list[StageInfo]:
        """Per-stage facts at a height x width input where a config states them, else []."""
        return [] if self.config is None else stage_infos(self.config, height, width)

    def require_layers(self) -> list[HiLoLayer]:
        """The layers, or one HiloError saying why none was found."""
        if not self.layers:
            raise no_layers_error(self.rejected)
        return self.layers

    def choose(self, spec: str | None, default: list[int] | None = None) -> list[HiLoLayer]:
        """The layers `--layer` names ('all', an index or a comma list; None: `default`); a
        model without any is one HiloError saying why (`require_layers`)."""
        layers = self.require_layers()
        if spec is None and default is not None:
            return [layers[i] for i in default]
        if spec is None:
            raise UsageError("--layer is needed")
        return [layers[i] for i in parse_layers(spec, len(layers))]


def loaded_model(
    model: nn.Module, provenance: Any, name: str, preprocess: Preprocess, config=None
) -> LoadedModel:
    """A LoadedModel of a built, filled network; its HiLo layers found by structure. Every
    loader ends here: what is alive now is frozen for the garbage collector (`freeze_loaded`)."""
    layers, rejected = find_layers(model, None if config is None else layer_meta(config))
    freeze_loaded()
    return LoadedModel(model, provenance, name, preprocess, layers, rejected, config)


def layer_meta(cfg: LITv2Config) -> list[LayerMeta]:
    """What a LITv2 config says of its attention layers, in forward order: its blocks with
    attention (`block_meta`), with their token stride."""
    return [
        LayerMeta(stage=b.stage, name=b.name, stride=token_stride(b.stage, cfg.patch_size))
        for b in block_meta(cfg)
        if b.hilo_index is not None
    ]


@dataclass(frozen=True)
class BlockMeta:
    """A residual block a config states (LITv2): its module name, stage and, where it has
    attention, that layer's index (what --layer takes)."""

    name: str
    stage: int
    hilo_index: int | None


def block_meta(cfg: LITv2Config) -> list[BlockMeta]:
    """Every block of a LITv2 config in forward order (attention or MLP only)."""
    out, index = [], 0
    for i in range(cfg.num_stages):
        for j in range(cfg.depths[i]):
            has_attn = cfg.local_ws[i] > 0
            out.append(BlockMeta(f"layers.{i}.blocks.{j}", i, index if has_attn else None))
            index += has_attn
    return out
