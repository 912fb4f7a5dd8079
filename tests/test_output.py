"""The output contract: strict JSON, the run record's keys, output sets that appear together."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hilocli.errors import UsageError
from hilocli.output import (
    STAGING_PREFIX,
    InputsRecord,
    OutputSet,
    RunRecord,
    check_out_dir,
    dumps,
    sha256_file,
    to_jsonable,
)
from tests.conftest import strict_json


def test_non_finite_numbers_become_null_and_are_listed():
    undefined: list[str] = []
    out = to_jsonable(
        {"a": [1.0, float("nan")], "b": {"c": np.float32("inf")}, "d": np.array([0.5, np.nan])},
        undefined,
    )
    assert out == {"a": [1.0, None], "b": {"c": None}, "d": [0.5, None]}
    assert undefined == ["$.a[1]", "$.b.c", "$.d[1]"]
    text = dumps({"x": float("-inf"), "y": Path("p"), "z": (1, 2)})
    assert strict_json(text) == {"x": None, "y": "p", "z": [1, 2]}


def test_run_record_has_the_same_keys_for_every_command():
    rec = RunRecord(
        command="demo",
        settings={"cutoff": 0.25},
        weights={"source": "random init"},
        environment={"torch": "x"},
        results={"score": math.nan},
        inputs=InputsRecord(analysed=["a.jpg"], duplicates=[{"path": "b.jpg", "same_as": "a.jpg"}]),
    )
    d = rec.to_dict()
    assert list(d) == [
        "command",
        "version",
        "settings",
        "weights",
        "inputs",
        "environment",
        "files",
        "results",
        "undefined",
    ]
    assert d["inputs"]["n"] == 1 and d["inputs"]["duplicates"][0]["same_as"] == "a.jpg"
    assert d["results"] == {"score": None} and d["undefined"] == ["results.score"]
    strict_json(dumps(d))


def test_check_out_dir(tmp_path):
    assert check_out_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # validation creates nothing
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        check_out_dir(a_file)
    with pytest.raises(UsageError, match="not a folder"):
        check_out_dir(a_file / "sub")
    if os.geteuid() != 0:  # root can write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(UsageError, match="not writable"):
            check_out_dir(ro / "x")


def test_files_appear_together_with_a_manifest(tmp_path):
    with OutputSet(tmp_path, "demo") as files:
        j = files.json("r.json", {"v": 1})
        t = files.text("notes.txt", "hello\n")
        assert not j.exists() and not t.exists()  # staged only
    assert strict_json(j.read_text()) == {"v": 1}
    manifest = strict_json((tmp_path / "demo.manifest.json").read_text())
    assert manifest["files"]["notes.txt"]["sha256"] == sha256_file(t)
    assert set(manifest["files"]) == {"r.json", "notes.txt"}
    assert not list(tmp_path.glob(f"{STAGING_PREFIX}*"))
    assert oct(j.stat().st_mode & 0o777) != oct(0o600)  # the usual mode, not mkstemp's


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_a_failed_run_leaves_the_previous_set(tmp_path, exc):
    with OutputSet(tmp_path, "demo") as files:
        files.json("r.json", {"v": 1})
        files.text("fig.svg", "<svg/>")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(exc):
        with OutputSet(tmp_path, "demo") as files:
            files.json("r.json", {"v": 2})
            raise exc()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_sigint_during_the_moves_is_held_until_the_set_is_complete(tmp_path, monkeypatch):
    real_replace = os.replace
    sent = []

    def replace_and_interrupt(src, dst):
        if not sent:
            sent.append(True)
            # arrives while the moves run; raise_signal delivers it to this thread at once
            # (os.kill to the process may land on a torch or DataLoader thread, handled later)
            signal.raise_signal(signal.SIGINT)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_and_interrupt)
    # Python's own SIGINT handler, whatever this process inherited (a job started in the
    # background of a non-interactive shell starts with SIGINT ignored)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with OutputSet(tmp_path, "demo") as files:
                files.json("a.json", {"v": 1})
                files.json("b.json", {"v": 2})
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert sent and {p.name for p in tmp_path.iterdir()} == {
        "a.json",
        "b.json",
        "demo.manifest.json",
    }


def test_sigterm_while_staging_leaves_nothing(tmp_path):
    (tmp_path / "r.json").write_text('{"old": true}\n')
    script = textwrap.dedent(f"""
        import signal, sys, time
        from pathlib import Path
        from hilocli.errors import on_sigterm
        from hilocli.output import OutputSet
        signal.signal(signal.SIGTERM, on_sigterm)
        with OutputSet(Path({str(tmp_path)!r}), "demo") as files:
            files.json("r.json", {{"new": True}})
            print("ready", flush=True)
            time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    assert (tmp_path / "r.json").read_text() == '{"old": true}\n'
