"""Errors a user can cause. The CLI turns them into one line on stderr and an exit code."""


class HiloError(Exception):
    """A failure caused by the input or the environment (exit code 1)."""

    exit_code = 1


class UsageError(HiloError, ValueError):
    """A bad argument or option value (exit code 2)."""

    exit_code = 2


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that cleanups (staged outputs) run; exit 143."""


def on_sigterm(signum, frame) -> None:
    """The SIGTERM handler `hilo` installs."""
    raise Terminated()
