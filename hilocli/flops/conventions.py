"""Counting conventions: which operations cost how many MACs, and the per-operation rules.

The authors' convention (worked out from their released `flops()` methods and checked to the digit
against all 11 published model counts and the single-layer figures; see docs/flops.md):

COUNTED (one MAC each)
  * linear layer: in * out per token; its bias is NOT counted;
  * convolution: k*k * in/groups * out per output position; its bias adds one MAC per output element
    for the depthwise conv of the ConvFFN and both DTM convs, but NOT for the patch embedding;
  * LayerNorm and BatchNorm: one MAC per element;
  * attention products: q @ k^T and attn @ v, one MAC per multiply-add.
NOT COUNTED
  softmax, the attention scale, average pooling (Lo-Fi keys/values), GELU, residual adds, zero
  padding, the mean over tokens before the head, and the bilinear sampling of the deformable conv
  (the DTM's deformable conv is counted as if it were a plain 2x2 stride-2 conv).
AUTHORS' QUIRKS (reproduced by `AUTHORS`, fixed by `AS_RUN`)
  * the DTM offset conv is counted with 12 output channels (3*k*k, as for a modulated DCNv2); the
    model runs 2*k*k = 8;
  * the final LayerNorm is counted on (H0*W0) // 2**num_stages tokens (H0 x W0 = patch grid), i.e.
    4x the tokens stage 4 really has (a formula inherited from Swin).
The authors' single-layer benchmark used fvcore instead (`FVCORE`): the same products, but a
LayerNorm with affine weights costs 5 MACs per element and no bias is counted. It matters only for
the SRA baseline's LayerNorm (see `hilocli.flops.attention`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hilocli.errors import UsageError

# ----------------------------------------------------------------------------------------------
# Conventions
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Convention:
    """Which operations cost how many MACs. Products are always counted in full."""

    name: str
    description: str
    norm_macs_per_element: int = 1  # LayerNorm / BatchNorm
    conv_bias: bool = True  # ConvFFN depthwise conv, DTM convs, SRA's reduction conv
    patch_embed_bias: bool = False
    linear_bias: bool = False
    dtm_offset_channels: int | None = None  # None: what the model runs (2 * k * k)
    final_norm_swin_tokens: bool = False  # final norm on (H0*W0) // 2**stages tokens

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


AUTHORS = Convention(
    "authors",
    "the authors' flops() methods (reproduce the published MACs): norms 1 MAC/element, conv "
    "bias 1 MAC/output except the patch embedding, no linear bias; DTM offset conv as 12 "
    "channels, final norm on 4x stage-4 tokens",
    dtm_offset_channels=12,
    final_norm_swin_tokens=True,
)
AS_RUN = Convention(
    "as-run",
    "the authors' per-operation rules applied to what the model runs: DTM offset conv with its 8 "
    "channels, final norm on the real stage-4 tokens, every conv bias counted",
    patch_embed_bias=True,
)
FVCORE = Convention(
    "fvcore",
    "fvcore (the authors' single-layer benchmark): LayerNorm 5 MACs/element (affine), no bias",
    norm_macs_per_element=5,
    conv_bias=False,
)
CONVENTIONS: dict[str, Convention] = {c.name: c for c in (AUTHORS, AS_RUN, FVCORE)}


def get_convention(name: str | Convention) -> Convention:
    if isinstance(name, Convention):
        return name
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise UsageError(
            f"unknown cost convention {name!r}; known: {', '.join(CONVENTIONS)}"
        ) from None


# ----------------------------------------------------------------------------------------------
# Building blocks: (product MACs, bias MACs, params)
# ----------------------------------------------------------------------------------------------


def linear_cost(
    tokens: int, d_in: int, d_out: int, bias: bool, conv: Convention
) -> tuple[int, int, int]:
    """(product MACs, bias MACs, params) of a Linear(d_in, d_out) on `tokens` tokens."""
    bias_macs = tokens * d_out if (bias and conv.linear_bias) else 0
    return tokens * d_in * d_out, bias_macs, d_in * d_out + (d_out if bias else 0)


def conv_cost(
    out_positions: int, k: int, c_in: int, c_out: int, groups: int, count_bias: bool
) -> tuple[int, int, int]:
    """(product MACs, bias MACs, params) of a Conv2d with bias on `out_positions` positions."""
    return (
        out_positions * k * k * (c_in // groups) * c_out,
        out_positions * c_out if count_bias else 0,
        k * k * (c_in // groups) * c_out + c_out,
    )


def norm_cost(elements: int, channels: int, conv: Convention) -> tuple[int, int]:
    """(MACs, params) of a LayerNorm/BatchNorm with affine weights over `elements` values."""
    return elements * conv.norm_macs_per_element, 2 * channels
