"""The `hilo` command line. Thin: parses options, calls the analysis modules, presents results.

Heavy imports (torch, matplotlib) happen inside the commands so `hilo --help` stays instant.
"""

from __future__ import annotations

import sys

import typer

from hilocli import __version__
from hilocli.commands.attn_map import attn_map
from hilocli.commands.flops import flops
from hilocli.commands.info import info
from hilocli.commands.spectrum import spectrum
from hilocli.errors import HiloError

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
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Look inside HiLo attention (LITv2): frequency spectra, attention maps and cost."""


app.command("info")(info)
app.command("flops")(flops)
app.command("spectrum")(spectrum)
app.command("attn-map")(attn_map)


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"hilo: error: {message}\n")
    raise SystemExit(code)


def main() -> None:
    """Entry point: one line on stderr and a non-zero exit for every failure, never a traceback."""
    try:
        app(prog_name="hilo", standalone_mode=True)
    except HiloError as exc:
        _fail(str(exc), exc.exit_code)
    except ValueError as exc:  # argument validation deeper down (torchvision style)
        _fail(str(exc).splitlines()[0] if str(exc) else "invalid value", 2)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except MemoryError:
        _fail("out of memory; try a smaller --resolution or --batch-size", 1)
    except RuntimeError as exc:  # torch raises RuntimeError (or its OutOfMemoryError subclass)
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "out of memory" in text.lower():
            _fail("out of memory; try a smaller --resolution or --batch-size, or --device cpu", 1)
        _fail(text, 1)
    except OSError as exc:
        _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc), 1)


if __name__ == "__main__":
    main()
