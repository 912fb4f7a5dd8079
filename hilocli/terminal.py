"""The stderr console, number formatting and tables: how every command presents results.

Tables and progress go to stderr (stdout is for `--json`). One width rule: a terminal keeps its
own width; files and pipes get WIDTH columns so tables are not cut.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from hilocli.distributed import quiet_rank
from hilocli.image_decode import ALPHA_BACKGROUND

WIDTH = 120  # columns when stderr is not a terminal


def console():
    """The stderr console."""
    con = Console(stderr=True, quiet=quiet_rank())  # under torchrun/srun rank 0 alone speaks
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


def say_inputs(con, inputs) -> None:
    """Skipped files and duplicates of a run's `InputsRecord`, one line each (yellow headings)."""
    if inputs.skipped:
        con.print(f"[yellow]skipped {len(inputs.skipped)} file(s):[/]")
        for s in inputs.skipped:  # the loader's reasons name the file already
            named = s["path"] in s["reason"]
            say(con, f"  {s['reason'] if named else s['path'] + ': ' + s['reason']}")
    if inputs.duplicates:
        con.print(f"[yellow]counted once: {len(inputs.duplicates)} duplicate file(s):[/]")
        for d in inputs.duplicates:
            say(con, f"  {d['path']} = {d['same_as']}")
    if inputs.transparent:
        say(
            con,
            f"note: {len(inputs.transparent)} image(s) with transparency composited on white "
            f"{ALPHA_BACKGROUND}: "
            + ", ".join(inputs.transparent[:3])
            + (", ..." if len(inputs.transparent) > 3 else ""),
        )


def table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    caption: str | None = None,
    left: Sequence[str] = (),
):
    """A rich table in the house style: right-aligned numbers, columns named in `left` left."""
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


PROGRESS_EVERY_ENV = "HILO_PROGRESS_EVERY"  # seconds between plain progress lines (not a tty)
DEFAULT_PROGRESS_EVERY_S = 30.0


def _progress_every() -> float:
    raw = os.environ.get(PROGRESS_EVERY_ENV, str(DEFAULT_PROGRESS_EVERY_S))
    try:
        return max(0.0, float(raw))
    except ValueError:
        return DEFAULT_PROGRESS_EVERY_S


def progress_line(label: str, unit: str, done: int, total: int, elapsed_s: float) -> str:
    """'spectrum: 300/1000 images (30%), 12.5 images/s, 56 s left' (pure: tested)."""
    rate = done / elapsed_s if elapsed_s > 0 else float("nan")
    share = f" ({100 * done / total:.0f}%)" if total else ""
    left = (total - done) / rate if done and rate > 0 else float("nan")
    eta = "" if left != left else f", {human_seconds(left)} left"
    speed = "" if rate != rate else f", {rate:.3g} {unit}/s"
    return f"{label}: {done}/{total} {unit}{share}{speed}{eta}"


def human_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


@contextmanager
def progress_bar(con, label: str, unit: str) -> Iterator[Callable[[int, int], None]]:
    """Progress on stderr; yields the `progress(done, total)` callback.

    A terminal gets a transient bar with the rate and the time left; anything else (a batch job's
    log file, a pipe) gets a plain line every HILO_PROGRESS_EVERY seconds (default 30) and always
    a final one when the work is done (the block ends without an exception), so every run leaves a
    trace without flooding logs."""
    if not con.is_terminal:
        every, start = _progress_every(), time.monotonic()
        last = [start, None]  # time of the last line, the last (done, total) reported

        def plain(done: int, total: int) -> None:
            now, last[1] = time.monotonic(), (done, total)
            if now - last[0] >= every and done < total:
                say(con, progress_line(label, unit, done, total, now - start))
                last[0] = now

        yield plain  # an exception passes through: no final line for work that failed
        if last[1] is not None:
            say(con, progress_line(label, unit, *last[1], time.monotonic() - start))
        return
    with Progress(
        TextColumn(f"[bold]{label}[/] {unit}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=con,
        transient=True,
    ) as bar:
        task = bar.add_task(unit, total=None, rate="")
        start = time.monotonic()

        def update(done: int, total: int) -> None:
            elapsed = time.monotonic() - start
            rate = f"{done / elapsed:.3g} {unit}/s" if elapsed > 0 and done else ""
            bar.update(task, completed=done, total=total, rate=rate)

        yield update
