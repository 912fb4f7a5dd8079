"""The stderr console, number formatting and tables: how every command presents results.

Tables and progress go to stderr (stdout is for `--json`). One width rule: a terminal keeps its
own width; files and pipes get WIDTH columns so tables are not cut.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

WIDTH = 120  # columns when stderr is not a terminal


def console():
    """The stderr console."""
    from rich.console import Console

    con = Console(stderr=True)
    if not con.is_terminal:
        con.width = WIDTH
    return con


def say(con, text: str) -> None:
    """Print plain text (no rich markup or highlighting: paths and numbers stay as written)."""
    con.print(text, markup=False, highlight=False)


def num(value: float | int | None, spec: str = ".3g") -> str:
    """A number for a table cell; None and NaN as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "-" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return format(value, spec)


def human(n: float | None, unit: str = "") -> str:
    """1234567 -> '1.23 M'; None and NaN as '-'."""
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return "-"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.3g} {prefix}{unit}".rstrip()
    return f"{n:.4g} {unit}".rstrip()


def human_bytes(n: float | None) -> str:
    """Bytes in binary units: 1536 -> '1.5 KiB'."""
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return "-"
    for factor, prefix in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(n) >= factor:
            return f"{n / factor:.3g} {prefix}"
    return f"{int(n)} B"


def table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    caption: str | None = None,
    left: Sequence[str] = (),
):
    """A rich table in the house style: right-aligned numbers, columns named in `left` left."""
    from rich import box
    from rich.table import Table

    t = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        caption=caption,
        caption_justify="left",
    )
    for col in columns:
        t.add_column(col, justify="left" if col in left else "right", no_wrap=True)
    for row in rows:
        t.add_row(*(str(c) for c in row))
    return t


@contextmanager
def progress_bar(con, label: str, unit: str) -> Iterator[Callable[[int, int], None]]:
    """A transient bar on a terminal's stderr; yields the `progress(done, total)` callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn(f"[bold]{label}[/] {unit}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=con,
        transient=True,
        disable=not con.is_terminal,  # files and pipes get no bar (and no stray blank line)
    ) as bar:
        task = bar.add_task(unit, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
