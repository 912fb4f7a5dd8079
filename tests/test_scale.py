"""Many images, several processes: decoding workers, torchrun / srun sharding, the per-image CSV,
progress lines for logs. Per-image rows must be identical whatever the workers and processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hilocli.batches import chunk_count
from hilocli.distributed import SINGLE, Placement, placement, shard
from hilocli.errors import UsageError
from hilocli.terminal import progress_line
from tests.conftest import (
    FIXTURES,
    TINY_CKPT,
    hilo,
    per_image_csv,
    strict_json,
    unrasterise_figures,
)

TINY = ("--checkpoint", str(TINY_CKPT), "--resolution", "64", "--device", "cpu")
# --no-crop: images of three sizes, so chunks hold several groups; batch 4 over 9 images: 3 chunks
RUN = (*TINY, "--no-crop", "--batch-size", "4", "--layer", "1")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    from PIL import Image

    folder = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(7)
    for i in range(9):
        h, w = (60, 80, 100)[i % 3], 90
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def one_process(images, tmp_path_factory) -> Path:
    """One process, one thread (as each torchrun process below: OMP_NUM_THREADS=1), so that
    matmuls split their sums alike and the rows are comparable byte for byte."""
    import torch

    out, threads = tmp_path_factory.mktemp("single"), torch.get_num_threads()
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    unrasterise_figures(mp)
    try:
        res = hilo(
            "spectrum", images, *RUN, "--workers", "0", "--out", out,
            env={"HILO_PROGRESS_EVERY": "0"},  # a progress line per chunk (stderr is no tty)
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
        mp.undo()
    assert res.returncode == 0, res.stderr
    (out / "stderr.txt").write_text(res.stderr)
    return out


def test_workers_do_not_change_a_single_number(images, one_process, tmp_path, unrasterised_figures):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = hilo("spectrum", images, *RUN, "--workers", "2", "--out", tmp_path, "--json")
    finally:
        torch.set_num_threads(threads)
    assert res.returncode == 0, res.stderr
    assert strict_json(res.stdout)["settings"]["workers"] == 2
    assert (tmp_path / "per_image.csv").read_bytes() == (one_process / "per_image.csv").read_bytes()
    rows = per_image_csv(one_process / "per_image.csv")
    assert len(rows.rows) == 9 * 3  # images x (Hi-Fi, Lo-Fi, control) of one layer
    assert sorted({int(r["image"]) for r in rows.rows}) == list(range(9))


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _clean_env(**extra: str) -> dict[str, str]:
    drop = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", **extra}


@pytest.mark.slow
def test_torchrun_two_processes_give_the_rows_of_one(images, one_process, tmp_path):
    """Two CPU processes (gloo) through torchrun: rank 0 alone prints and writes; the per-image
    CSV is byte-identical to one process's; the JSON says two processes ran."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", _free_port(), "-m", "hilocli", "spectrum", str(images), *RUN,
         "--workers", "1", "--out", str(out), "--json"],
        capture_output=True, text=True, env=_clean_env(), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = strict_json(proc.stdout)  # one JSON document: rank 0's
    assert data == strict_json((out / "spectrum.json").read_text())
    assert (data["settings"]["world_size"], data["settings"]["launcher"]) == (2, "torchrun")
    assert data["inputs"]["n"] == 9 and "Traceback" not in proc.stderr
    assert sum(ln.startswith("verdict: ") for ln in proc.stderr.splitlines()) == 1
    assert (out / "per_image.csv").read_bytes() == (one_process / "per_image.csv").read_bytes()
    for name in ("spectrum.png", "spectrum_summary.png"):  # real figures, drawn by rank 0 alone
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    single = strict_json((one_process / "spectrum.json").read_text())["results"]["layers"]
    for a, b in zip(single, data["results"]["layers"], strict=True):  # summed maps: rounding only
        for branch in ("hifi", "lofi", "control"):
            np.testing.assert_allclose(
                a["branches"][branch]["radial_power"], b["branches"][branch]["radial_power"],
                rtol=1e-5,
            )  # fmt: skip


@pytest.mark.slow
def test_a_rank_failure_is_one_line_not_a_hang(images, tmp_path):
    """Two processes started as SLURM's srun starts them (SLURM_PROCID, MASTER_ADDR/PORT); the
    user model breaks in rank 1 only: rank 0 says so in one line, both exit 1, nobody waits."""
    common = dict(SLURM_STEP_NUM_TASKS="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=_free_port())
    model = f"{FIXTURES / 'user_models.py'}:fails_on_rank_one"
    cmd = [sys.executable, "-m", "hilocli", "spectrum", str(images), "--model-fn", model,
           "--random-init", "--resolution", "64", "--batch-size", "4", "--workers", "0",
           "--out", str(tmp_path / "o")]  # fmt: skip
    procs = [
        subprocess.Popen(
            cmd,
            env=_clean_env(**common, SLURM_PROCID=str(r), SLURM_LOCALID=str(r), RANK=str(r)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in (0, 1)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [1, 1]
    assert outs[1] == ("", "")  # rank 1 is quiet: rank 0 reports for the run
    assert outs[0][1] == (
        "hilo: error: rank 1 of 2 failed: RuntimeError: the model of rank one broke\n"
    )
    assert not (tmp_path / "o").exists()


_FROM_MAIN = """
import json, sys
import hilocli.images as images
import hilocli.inputs as inputs
from hilocli.distributed import from_main, placement, process_group
from hilocli.errors import HiloError

hashed = []
real = inputs._file_sha256
inputs._file_sha256 = lambda p: hashed.append(p.name) or real(p)
where = placement()
with process_group(where, "cpu"):
    found = from_main(where, lambda: images.collect_inputs([sys.argv[1]]))
    try:
        from_main(where, lambda: images.collect_inputs([sys.argv[1] + "/nope.png"]))
        failed = "no error"
    except HiloError as exc:
        failed = f"{type(exc).__name__}: {exc}"
print(json.dumps({"files": [p.name for p in found.files], "sha": len(found.sha256),
                  "hashed": len(hashed), "failed": failed}))
"""


@pytest.mark.slow
def test_inputs_are_listed_and_hashed_once_for_all_ranks(images):
    """Two ranks (srun-style, gloo): rank 0 alone reads and hashes the files, rank 1 gets the same
    list and hashes; a missing path on rank 0 stops both (rank 0 says what, rank 1 is told)."""
    common = dict(SLURM_STEP_NUM_TASKS="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _FROM_MAIN, str(images)],
            env=_clean_env(**common, SLURM_PROCID=str(r), SLURM_LOCALID=str(r)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in (0, 1)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    rank0, rank1 = (json.loads(out) for out, _ in outs)
    assert rank0["files"] == rank1["files"] and len(rank0["files"]) == 9
    assert rank0["sha"] == rank1["sha"] == 9
    assert (rank0["hashed"], rank1["hashed"]) == (9, 0)
    assert (
        rank0["failed"].startswith("HiloError: no such file or directory")
        and "nope.png" in (rank0["failed"])
    )
    assert rank1["failed"] == "PeerFailed: another rank failed"


def test_placement_from_torchrun_and_slurm_variables():
    assert placement({}) == SINGLE
    # a batch script without srun: the job's task count, one process
    assert placement({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}) == SINGLE
    assert placement({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == Placement(
        1, 2, 1, "torchrun"
    )
    slurm = {"SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "4", "SLURM_LOCALID": "1"}
    with pytest.raises(UsageError, match="MASTER_ADDR"):
        placement(slurm)
    got = placement({**slurm, "MASTER_ADDR": "node1", "MASTER_PORT": "29500"})
    assert got == Placement(3, 4, 1, "slurm") and not got.is_main
    assert placement({"RANK": "0", "WORLD_SIZE": "1"}) == SINGLE
    for bad in ({"RANK": "2", "WORLD_SIZE": "2"}, {"RANK": "x", "WORLD_SIZE": "2"}):
        with pytest.raises(UsageError):
            placement(bad)


def test_shards_cover_every_chunk_once():
    for files, batch, world in ((9, 4, 2), (1, 16, 3), (50_000, 64, 8), (10, 3, 4)):
        count = chunk_count(files, batch)
        assert count == -(-files // batch)
        shares = [shard(count, Placement(r, world, r, "torchrun")) for r in range(world)]
        assert sorted(i for s in shares for i in s) == list(range(count))
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_progress_lines_for_logs(one_process):
    line = progress_line("spectrum", "images", 300, 1000, 24.0)
    assert line == "spectrum: 300/1000 images (30%), 12.5 images/s, 56 s left"
    assert progress_line("spectrum", "images", 0, 10, 0.0) == "spectrum: 0/10 images (0%)"
    # not a terminal (a log file): plain lines, here one per chunk (HILO_PROGRESS_EVERY=0)
    stderr = (one_process / "stderr.txt").read_text()
    lines = [ln for ln in stderr.splitlines() if ln.startswith("spectrum: ")]
    assert [ln.split(" images")[0] for ln in lines] == [
        "spectrum: 4/9",
        "spectrum: 8/9",
        "spectrum: 9/9",
    ]
    assert "images/s" in lines[-1]
