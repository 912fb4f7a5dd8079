"""The error contract of `hilo`, enforced in cli.py: one line on stderr, exit 2 for usage,
1 otherwise, 130 on interrupt, never a traceback unless HILO_DEBUG=1."""

from __future__ import annotations

import pytest

from hilocli.errors import HiloError
from tests.conftest import assert_one_line_error, hilo


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["info", "--device", "tpu"], "--device"),
        (["spectrum", "samples", "--format", "jpg"], "--format"),
        (["flops", "--batch-size", "x"], "--batch-size"),
        (["info", "--bogus"], "No such option: --bogus"),
        (["no-such-command"], "no-such-command"),
        ([], "missing command"),
        (["info", "--checkpoint", "x.pth", "--random-init"], "conflict"),
        (["info", "--model", "litv2_zz"], "unknown model"),
    ],
)
def test_usage_errors_are_one_line_exit_2(args, fragment):
    assert_one_line_error(hilo(*args), 2, fragment)


def _break_validation(monkeypatch, exc: BaseException) -> None:
    from hilocli.weights import WeightsRequest

    def boom(self):
        raise exc

    monkeypatch.setattr(WeightsRequest, "validate", boom)


def test_a_bug_is_one_line_naming_its_type(monkeypatch):
    _break_validation(monkeypatch, TypeError("unsupported operand"))
    res = hilo("info")
    assert_one_line_error(res, 1, "internal error (TypeError: unsupported operand)", "HILO_DEBUG=1")


def test_a_plain_value_error_is_a_bug_not_bad_usage(monkeypatch):
    _break_validation(monkeypatch, ValueError("shapes differ"))
    assert_one_line_error(hilo("info"), 1, "internal error (ValueError")


def test_hilo_debug_shows_the_traceback(monkeypatch):
    _break_validation(monkeypatch, TypeError("unsupported operand"))
    res = hilo("info", env={"HILO_DEBUG": "1"})
    assert res.returncode == 1
    assert "Traceback" in res.stderr and "TypeError: unsupported operand" in res.stderr
    assert res.stderr.rstrip().splitlines()[-1].startswith("hilo: error: internal error")


@pytest.mark.parametrize(
    "exc, code, fragment",
    [
        (HiloError("the thing failed"), 1, "the thing failed"),
        (KeyboardInterrupt(), 130, "interrupted"),
        (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), 1, "out of memory; try"),
        (MemoryError(), 1, "out of memory"),
        (PermissionError(13, "Permission denied", "/x/y"), 1, "Permission denied: /x/y"),
    ],
)
def test_failure_classes(monkeypatch, exc, code, fragment):
    _break_validation(monkeypatch, exc)
    assert_one_line_error(hilo("info"), code, fragment)


def test_version_and_help_exit_0():
    from hilocli import __version__

    res = hilo("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"hilo {__version__}"
    res = hilo("spectrum", "--help")
    assert res.returncode == 0 and "--random-init" in res.stdout and res.stderr == ""
