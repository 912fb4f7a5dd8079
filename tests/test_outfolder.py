"""Output folders hold whole sets: each command its own names and manifest, one run at a time,
no debris from killed runs; file names that are not UTF-8 are written, escaped."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hilocli.errors import HiloError
from hilocli.outfolder import LOCK_NAME, STAGING_PREFIX, atomic_write, output_lock, own_outputs
from hilocli.output import OutputSet, escaped_text
from tests.conftest import strict_json


def _write(out: Path, command: str, names: dict[str, str]) -> None:
    with OutputSet(out, command) as files:
        for name, text in names.items():
            files.text(name, text)


def test_a_new_run_replaces_its_command_set_and_leaves_the_others(tmp_path):
    _write(tmp_path, "spectrum", {"spectrum.json": "1", "spectrum_paper.png": "p"})
    _write(tmp_path, "compare", {"compare.json": "c"})
    _write(tmp_path, "spectrum", {"spectrum.json": "2"})  # no --mode paper this time
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "compare.json",
        "compare.manifest.json",
        "spectrum.json",
        "spectrum.manifest.json",
    ]
    assert (tmp_path / "spectrum.json").read_text() == "2"
    assert (tmp_path / "compare.json").read_text() == "c"
    manifest = strict_json((tmp_path / "spectrum.manifest.json").read_text())
    assert manifest["command"] == "spectrum" and set(manifest["files"]) == {"spectrum.json"}
    assert own_outputs(tmp_path) == {p.name for p in tmp_path.iterdir()}


def test_a_name_of_another_command_set_is_refused_and_nothing_moves(tmp_path):
    _write(tmp_path, "spectrum", {"per_image.csv": "s"})
    with pytest.raises(HiloError, match=r"belongs to `hilo spectrum`'s set"):
        _write(tmp_path, "compare", {"compare.json": "c", "per_image.csv": "c"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["per_image.csv", "spectrum.manifest.json"]


_HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from hilocli.outfolder import output_lock
    with output_lock(Path(sys.argv[1]), "spectrum"):
        (Path(sys.argv[1]) / ".hilo-staging-dead").mkdir()
        print("holding", flush=True)
        time.sleep(60)
""")


def test_a_second_run_is_refused_and_a_killed_run_blocks_nothing(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "holding"
        with pytest.raises(HiloError) as err:
            _write(out, "compare", {"compare.json": "c"})
        assert f"`hilo spectrum`, process {proc.pid}" in str(err.value)
        assert "\n" not in str(err.value)
    finally:
        proc.send_signal(signal.SIGKILL)  # as `kill -9`: no cleanup runs
        proc.wait(timeout=30)
    assert (out / ".hilo-staging-dead").exists()  # what the killed run left ...
    _write(out, "compare", {"compare.json": "c"})  # ... the next run may write, and cleans it
    assert sorted(p.name for p in out.iterdir()) == ["compare.json", "compare.manifest.json"]


def test_a_run_that_writes_nothing_leaves_no_folder(tmp_path):
    with output_lock(tmp_path / "a" / "b", "spectrum") as out:
        assert (out / LOCK_NAME).exists()
        with output_lock(out, "spectrum"):  # re-entrant: the command, then its OutputSet
            pass
        assert (out / LOCK_NAME).exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_removes_dead_writers_temporaries_only(tmp_path):
    dest = tmp_path / "model.pth"
    dead = tmp_path / ".model.pth.abc123.part"
    dead.write_bytes(b"x" * 100)  # a killed writer's: nobody holds it
    live = tmp_path / ".model.pth.live01.part"
    live.write_bytes(b"y")
    import fcntl

    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a living writer's (here: this test holds it)
    try:
        atomic_write(dest, lambda p: p.write_bytes(b"whole"))
    finally:
        os.close(fd)
    assert dest.read_bytes() == b"whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "model.pth"]
    with pytest.raises(RuntimeError):
        atomic_write(dest, lambda p: (p.write_bytes(b"half"), (_ for _ in ()).throw(RuntimeError)))
    assert dest.read_bytes() == b"whole" and not dead.exists()
    assert STAGING_PREFIX not in "".join(p.name for p in tmp_path.iterdir())


def test_non_utf8_file_names_are_written_escaped(tmp_path):
    name = os.fsdecode(b"x\xff.jpg")  # what os.listdir gives for that file name
    assert escaped_text(name) == "x\\xff.jpg" and escaped_text("café") == "café"
    with OutputSet(tmp_path, "demo") as files:
        files.json("r.json", {"path": name, name: 1})
        files.csv("r.csv", ["path"], [[name]])
    assert strict_json((tmp_path / "r.json").read_text()) == {"path": "x\\xff.jpg", "x\\xff.jpg": 1}
    with open(tmp_path / "r.csv", encoding="utf-8", newline="") as fh:
        assert list(csv.reader(fh)) == [["path"], ["x\\xff.jpg"]]
    assert json.loads((tmp_path / "demo.manifest.json").read_text())["command"] == "demo"
