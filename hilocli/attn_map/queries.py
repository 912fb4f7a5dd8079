"""Query points: original-image pixels -> model-input pixels -> the token of each layer, exactly.

Every step is rational arithmetic (`fractions.Fraction`): `--query` text is read as an exact
decimal, `PreparedImage.to_input_xy` scales and shifts exactly, and
`hilocli.models.geometry.pixel_to_token` floors exactly, so no query lands one token off through
rounding. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from hilocli.errors import UsageError
from hilocli.models.geometry import LayerGeometry, pixel_to_token

# default queries: the centre and the four quadrant centres of the model input, (x, y) fractions
DEFAULT_POINTS = (
    (Fraction(1, 2), Fraction(1, 2)),
    (Fraction(1, 4), Fraction(1, 4)),
    (Fraction(3, 4), Fraction(1, 4)),
    (Fraction(1, 4), Fraction(3, 4)),
    (Fraction(3, 4), Fraction(3, 4)),
)


@dataclass(frozen=True)
class Query:
    """A query point on the original image and where it lies on the model input."""

    x: Fraction  # original-image pixels, x right
    y: Fraction  # y down
    x_input: Fraction  # model-input pixels
    y_input: Fraction
    source: str  # "user" | "default"

    @property
    def input_xy(self) -> tuple[float, float]:
        return float(self.x_input), float(self.y_input)

    def token(self, g: LayerGeometry) -> tuple[int, int]:
        """(row, col) of the layer's token that covers this point (clamped, see geometry)."""
        return pixel_to_token(self.x_input, self.y_input, 0, g.grid, g.stride)

    def to_dict(self) -> dict[str, Any]:
        return {
            "x": float(self.x),
            "y": float(self.y),
            "x_input": float(self.x_input),
            "y_input": float(self.y_input),
            "source": self.source,
        }


def parse_query(text: str) -> tuple[Fraction, Fraction]:
    """'X,Y' (original-image pixels) -> exact (x, y); UsageError otherwise."""
    parts = text.replace(" ", "").split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        x, y = Fraction(parts[0]), Fraction(parts[1])
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"--query must be X,Y in image pixels, got {text!r}") from None
    return x, y


def default_queries(prepared) -> list[Query]:
    """The centre and the four quadrant centres of the model input: always inside what the
    model sees, whatever the crop."""
    w, h = prepared.input_size
    out = []
    for fx, fy in DEFAULT_POINTS:
        xi, yi = fx * w, fy * h
        x, y = prepared.from_input_xy(xi, yi)
        out.append(Query(x=x, y=y, x_input=xi, y_input=yi, source="default"))
    return out


def user_queries(prepared, points: list[tuple[Fraction, Fraction]]) -> list[Query]:
    """Map `--query` points onto the model input; UsageError for a point outside the image or
    cropped away (the message names the region the model sees)."""
    out = []
    for x, y in points:
        try:
            xi, yi = prepared.to_input_xy(x, y)
        except ValueError as exc:
            raise UsageError(f"--query {float(x):g},{float(y):g}: {exc}") from None
        out.append(Query(x=x, y=y, x_input=xi, y_input=yi, source="user"))
    return out
