"""The `hilo` command line and its error contract, enforced here alone.

- Click/Typer usage errors (bad option values, unknown options): one line, exit 2.
- `UsageError`: one line, exit 2; `HiloError`: one line, exit 1.
- Out of memory: one line with what to try, exit 1.
- Anything else is a bug: one line naming its type and "set HILO_DEBUG=1 for the traceback", exit 1.
- With `--json`, stdout carries the JSON alone: anything else printed (by a user's --model-fn,
  say) goes to stderr (`hilocli.output.json_stdout`).
- Ctrl-C: exit 130; SIGTERM: exit 143 (outputs of the run are not written, see `hilocli.output`).
- Under torchrun/srun only rank 0 prints its line; a failure on another rank reaches rank 0
  (`hilocli.distributed.agree`), which names the rank.
With HILO_DEBUG=1 every failure also prints its traceback.

Heavy imports (torch, matplotlib) happen inside the commands so `hilo --help` stays instant.
`main` (the console entry) keeps freed host memory for the process and defers cyclic garbage
collection until the model is loaded (`hilocli.runtime`).
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from contextlib import nullcontext

import typer

try:  # Typer >= 0.26 vendors its own click
    from typer._click.exceptions import ClickException
except ImportError:  # older Typer on the click package
    from click.exceptions import ClickException

from hilocli import __version__
from hilocli.commands.attn_map import attn_map
from hilocli.commands.compare import compare
from hilocli.commands.convert import convert
from hilocli.commands.flops import flops
from hilocli.commands.info import info
from hilocli.commands.spectrum import spectrum
from hilocli.distributed import quiet_rank
from hilocli.errors import HiloError, Terminated, on_sigterm
from hilocli.output import json_stdout
from hilocli.runtime import defer_collection, keep_freed_memory

DEBUG_ENV = "HILO_DEBUG"

app = typer.Typer(
    name="hilo",
    help="Look inside HiLo attention (LITv2): frequency spectra, attention maps and cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hilo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Look inside HiLo attention (LITv2): frequency spectra, attention maps and cost."""


app.command("info")(info)
app.command("flops")(flops)
app.command("spectrum")(spectrum)
app.command("attn-map")(attn_map)
app.command("convert")(convert)
app.command("compare")(compare)


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


def _fail(message: str, code: int) -> int:
    if not quiet_rank() or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        sys.stderr.write(f"hilo: error: {message}\n")  # under torchrun/srun: rank 0's line
        sys.stderr.flush()
    return code


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on `argv` (default sys.argv[1:]) and return the exit code; never raises."""
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    args = sys.argv[1:] if argv is None else list(argv)
    try:  # with --json, stdout carries the JSON alone: other prints (user code's) go to stderr
        with json_stdout() if "--json" in args else nullcontext():
            result = app(args=args, prog_name="hilo", standalone_mode=False)
        if result == 130:  # Typer turns KeyboardInterrupt into a silent Exit(130)
            return _fail("interrupted", 130)
        return result if isinstance(result, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return _fail("interrupted", 130)
    except Terminated:
        return _fail("terminated", 143)
    except ClickException as exc:  # usage errors from parsing
        if debug:
            traceback.print_exc()
        hint = ""
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            hint = f" (see `{ctx.command_path} --help`)"
        message = _first_line(exc.format_message()) or "missing command"
        return _fail(message + hint, exc.exit_code)
    except HiloError as exc:
        if debug:
            traceback.print_exc()
        return _fail(_first_line(str(exc)) or type(exc).__name__, exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the contract: one line, never a traceback
        if debug:
            traceback.print_exc()
        if _is_oom(exc):
            return _fail(
                "out of memory; try a smaller --resolution or --batch-size, or --device cpu", 1
            )
        if isinstance(exc, OSError) and exc.strerror:
            where = f": {exc.filename}" if exc.filename else ""
            return _fail(f"{exc.strerror}{where}", 1)
        text = _first_line(str(exc))
        return _fail(
            f"internal error ({type(exc).__name__}{': ' + text if text else ''}); "
            f"set {DEBUG_ENV}=1 for the traceback",
            1,
        )


def main() -> None:
    """Console entry point. The process-wide settings hilo makes are made here, once: freed
    host memory kept for reuse (`keep_freed_memory`; every result's environment records it as
    `host_allocator`), and no cyclic garbage collection until the model is loaded
    (`defer_collection`; the loader's `freeze_loaded` turns it back on)."""
    signal.signal(signal.SIGTERM, on_sigterm)
    keep_freed_memory()
    defer_collection()
    raise SystemExit(run())


if __name__ == "__main__":
    main()
