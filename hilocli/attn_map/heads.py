"""Which heads a layer figure shows (`--heads`): single heads and branch means. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hilocli.errors import UsageError
from hilocli.models.geometry import HiLoLayerInfo
from hilocli.option_lists import parse_int_list


def parse_heads(text: str) -> str | tuple[int, ...]:
    """`--heads`: 'all', 'mean' or head indices (sorted, unique); UsageError otherwise."""
    spec = text.strip().lower()
    if spec in ("all", "mean"):
        return spec
    heads = parse_int_list(spec, "--heads")
    if not heads:
        raise UsageError("--heads needs 'all', 'mean' or head indices")
    return tuple(sorted(set(heads)))


@dataclass(frozen=True)
class HeadColumn:
    """One column of a layer figure: a head, or the mean over several heads of one branch."""

    label: str
    branch: str  # "hifi" | "lofi"
    heads: tuple[int, ...]  # global head indices (Hi-Fi first)

    def select(
        self, layer: HiLoLayerInfo, hifi: np.ndarray | None, lofi: np.ndarray | None
    ) -> np.ndarray:
        """Mean over this column's heads of per-branch stacks (heads, ...) of maps."""
        if self.branch == "hifi":
            return hifi[list(self.heads)].mean(axis=0)
        return lofi[[h - layer.hifi_heads for h in self.heads]].mean(axis=0)

    def to_dict(self) -> dict:
        return {"label": self.label, "branch": self.branch, "heads": list(self.heads)}


def _branch(layer: HiLoLayerInfo, head: int) -> str:
    return "hifi" if head < layer.hifi_heads else "lofi"


def head_columns(layer: HiLoLayerInfo, spec: str | tuple[int, ...] | list[int]) -> list[HeadColumn]:
    """Columns for `--heads`: "all" (every head, then the mean of each branch with more than one
    head), "mean" (the mean of each branch), or global head indices (UsageError naming the
    layer's heads if one does not exist)."""
    lo_name = "Lo-Fi" if layer.window_size > 1 else "MSA"
    hifi_heads = tuple(range(layer.hifi_heads))
    lofi_heads = tuple(range(layer.hifi_heads, layer.num_heads))

    def mean_columns(min_heads: int) -> list[HeadColumn]:
        cols = []
        for name, branch, heads in (("Hi-Fi", "hifi", hifi_heads), (lo_name, "lofi", lofi_heads)):
            if heads and len(heads) >= min_heads:
                n = len(heads)
                cols.append(
                    HeadColumn(f"{name} mean ({n} head{'s' if n > 1 else ''})", branch, heads)
                )
        return cols

    if isinstance(spec, str):
        if spec == "all":
            return [
                HeadColumn(layer.head_label(h), _branch(layer, h), (h,))
                for h in range(layer.num_heads)
            ] + mean_columns(2)
        if spec == "mean":
            return mean_columns(1)
        raise UsageError(f"--heads must be 'all', 'mean' or head indices, got {spec!r}")
    cols = []
    for h in spec:
        if not 0 <= h < layer.num_heads:
            hifi = f"Hi-Fi 0..{layer.hifi_heads - 1}, " if layer.hifi_heads else ""
            raise UsageError(
                f"--heads: head {h} does not exist in layer {layer.index} "
                f"({layer.name}), which has {layer.num_heads} heads "
                f"(0..{layer.num_heads - 1}: {hifi}{lo_name} "
                f"{layer.hifi_heads}..{layer.num_heads - 1})"
            )
        cols.append(HeadColumn(layer.head_label(h), _branch(layer, h), (h,)))
    return cols
