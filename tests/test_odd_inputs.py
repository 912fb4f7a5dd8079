# ruff: noqa: F811 - blank_figures, a fixture imported by name
"""Odd inputs never hang, never lose a run, and end in one line naming what is wrong; output
folders hold whole sets of each command. In process (`hilo(...)`), the tiny checkpoint at 64 px."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import TINY_CKPT, assert_one_line_error, hilo, per_image_csv, strict_json
from tests.test_cli_spectrum import TINY, blank_figures, make_images  # noqa: F401 - a fixture

SPEC = Path(__file__).parent / "fixtures" / "user_models.py"


def _run(*args) -> dict:
    res = hilo("spectrum", *args, *TINY, "--json")
    assert res.returncode == 0, res.stderr
    return strict_json(res.stdout)


def test_special_files_are_refused_as_arguments_and_skipped_in_folders(tmp_path, blank_figures):
    folder = tmp_path / "imgs"
    make_images(folder, count=2)
    os.mkfifo(folder / "pipe.png")  # opening it would block for ever
    (folder / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    (folder / "linked").symlink_to(tmp_path, target_is_directory=True)
    out = tmp_path / "o"
    assert_one_line_error(
        hilo("spectrum", folder / "pipe.png", *TINY, "--out", out),
        2,
        "pipe.png is a FIFO (named pipe), not an image file",
    )
    assert not out.exists()
    data = _run(folder, "--out", out)
    assert data["inputs"]["n"] == 2
    assert {Path(s["path"]).name: s["reason"] for s in data["inputs"]["skipped"]} == {
        "pipe.png": "a FIFO (named pipe): not read",
        "gone.png": "a broken symbolic link",
        "loop.png": "a symbolic link loop",
        "linked": "a symbolic link to a folder: not followed (give the folder itself)",
    }


@pytest.mark.parametrize("command", ["info", "convert"])
def test_a_fifo_as_checkpoint_is_refused_never_opened(tmp_path, command):
    os.mkfifo(tmp_path / "w.pth")
    args = (
        ["-c", tmp_path / "w.pth"]
        if command == "info"
        else [tmp_path / "w.pth", tmp_path / "o.pth"]
    )
    res = hilo(command, *args)
    assert_one_line_error(res, 2, "w.pth is a FIFO (named pipe), not a file; it is not opened")


def test_an_unreadable_folder_is_listed_as_skipped(tmp_path, monkeypatch):
    from hilocli.inputs import collect_inputs

    make_images(tmp_path / "ok", count=1)
    (tmp_path / "locked").mkdir()
    real = os.scandir

    def scandir(path="."):  # as for a folder without read permission (tests may run as root)
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = collect_inputs([tmp_path])
    assert found.files == [tmp_path / "ok" / "img0.png"]
    assert found.skipped == [(tmp_path / "locked", "cannot read this folder (Permission denied)")]


def test_a_file_name_that_is_not_utf8_is_analysed_and_written(tmp_path, blank_figures):
    folder = tmp_path / "imgs"
    first, _ = make_images(folder, count=2)
    odd = os.fsencode(folder) + b"/x\xff.png"
    os.rename(first, odd)
    out = tmp_path / "o"
    data = _run(folder, "--out", out)
    assert data["inputs"]["analysed"][1] == f"{folder}/x\\xff.png"  # the byte as \xff
    assert strict_json((out / "spectrum.json").read_text())["inputs"] == data["inputs"]
    rows = per_image_csv(out / "per_image.csv")
    assert f"{folder}/x\\xff.png" in {r["path"] for r in rows.rows}


def test_limit_counts_images_and_out_may_be_the_image_folder(tmp_path, blank_figures):
    folder = tmp_path / "imgs"
    make_images(folder, count=3)
    (folder / "README.md").write_text("# my photos\n")  # sorts first: takes no slot
    data = _run(folder, "--limit", "2", "--out", folder)
    assert [Path(p).name for p in data["inputs"]["analysed"]] == ["img0.png", "img1.png"]
    assert (folder / "spectrum.json").exists()
    again = _run(
        folder, "--out", folder
    )  # its own outputs (spectrum.png, ...: 7 files) are not inputs
    assert [Path(p).name for p in again["inputs"]["analysed"]] == [
        "img0.png",
        "img1.png",
        "img2.png",
    ]
    reasons = [s["reason"] for s in again["inputs"]["skipped"]]
    assert "7 file(s) hilo wrote here are not read as inputs" in reasons
    elsewhere = _run(folder, "--out", tmp_path / "o")  # hilo's files are never inputs, anywhere
    assert elsewhere["inputs"]["analysed"] == again["inputs"]["analysed"]


def test_an_input_the_model_cannot_take_is_refused_before_decoding(tmp_path, blank_figures):
    from hilocli.resize import model_input_size

    Image.new("RGB", (4000, 3), (9, 9, 9)).save(tmp_path / "strip.png")
    assert model_input_size(4000, 3, 64, "whole") == (85333, 64)
    res = hilo("spectrum", tmp_path / "strip.png", *TINY, "--no-crop", "--out", tmp_path / "o")
    assert_one_line_error(
        res, 1, "strip.png: a 4000x3 image becomes a 85333x64 model input (whole mode)",
        "each side must be 32..8192 px",
    )  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_memory_estimate_refuses_what_the_device_cannot_hold(tmp_path, monkeypatch):
    from hilocli.inputs import InputSet, fit_to_model
    from hilocli.loaded import loaded_model
    from hilocli.models import LITv2Config, Preprocess, create_model
    from hilocli.models.geometry import forward_bytes
    from hilocli.models.litv2 import LITv2  # noqa: F401 - the config class is LITv2Config

    cfg = LITv2Config(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 1, 2, 4))
    # stage 1 of a 64 x 64 input: 16 x 16 tokens x 16 channels x (4 + 4) x 4 bytes
    assert forward_bytes(cfg, 64, 64) == 16 * 16 * 16 * 8 * 4
    found = InputSet(sizes={Path("a.png"): (64, 64), Path("b.png"): (640, 64)})
    monkeypatch.setattr("hilocli.inputs.available_bytes", lambda device: 200_000)
    loaded = loaded_model(create_model(cfg), None, "tiny", Preprocess(), cfg)
    assert loaded.min_input_size == 32
    kept = fit_to_model(found, [Path("a.png"), Path("b.png")], 64, "whole", loaded, "cpu")
    assert kept == [Path("a.png")]
    assert found.skipped == [
        (
            Path("b.png"),
            "b.png: a 640x64 image becomes a 640x64 model input (whole mode), about 1.25 MiB "
            "for the forward, over the 195 KiB available; use a smaller --resolution or the crop",
        )
    ]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (("--seed", str(10**23)), "--seed must lie in 0..9223372036854775807"),
        (("--seed", "-1"), "--seed must lie in 0.."),
        (
            ("--seed", str(2**63 - 2), "--control", "random"),
            "--seed plus --control-seeds must lie in 0..",
        ),
    ],
)
def test_option_values_out_of_range_are_usage_errors(tmp_path, extra, fragment):
    make_images(tmp_path / "imgs", count=1)
    res = hilo("spectrum", tmp_path / "imgs", *TINY, *extra, "--out", tmp_path / "o")
    assert_one_line_error(res, 2, fragment)


def test_negative_layer_counts_from_the_end(tmp_path, blank_figures):
    make_images(tmp_path / "imgs", count=1)
    data = _run(tmp_path / "imgs", "--layer", "-1", "--out", tmp_path / "o")
    assert [layer["index"] for layer in data["results"]["layers"]] == [2]  # the last of 0, 1, 2
    res = hilo("spectrum", tmp_path / "imgs", *TINY, "--layer", "-4", "--out", tmp_path / "o")
    assert_one_line_error(res, 2, "--layer -4 is out of range", "-3..-1 from the end")


def test_transparent_images_are_composited_on_white_and_said(tmp_path, blank_figures):
    folder = tmp_path / "imgs"
    make_images(folder, count=1)
    rgba = np.zeros((40, 50, 4), np.uint8)
    rgba[10:30, 10:40] = (200, 30, 30, 255)  # an opaque square, the rest transparent
    Image.fromarray(rgba, "RGBA").save(folder / "cut.png")
    res = hilo("spectrum", folder, *TINY, "--out", tmp_path / "o", "--json")
    assert res.returncode == 0, res.stderr
    inputs = strict_json(res.stdout)["inputs"]
    assert inputs["transparent"] == [str(folder / "cut.png")]
    assert inputs["transparent_background"] == [255, 255, 255]
    assert "1 image(s) with transparency composited on white (255, 255, 255)" in res.stderr


def test_user_code_that_prints_never_reaches_the_json(tmp_path):
    noisy = tmp_path / "noisy.py"
    noisy.write_text(
        textwrap.dedent(f"""
            import importlib.util
            spec = importlib.util.spec_from_file_location("um", {str(SPEC)!r})
            um = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(um)

            def net():
                print("building my model")
                model = um.backbone()
                model.register_forward_pre_hook(lambda m, a: print("forward!"))
                return model
        """)
    )
    res = hilo("info", "--model-fn", f"{noisy}:net", "--resolution", "76", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["command"] == "info"  # stdout: the JSON alone
    assert "building my model" in res.stderr


def test_conflicting_model_and_checkpoint_is_a_usage_error():
    res = hilo("info", "--model", "litv2_m", "--checkpoint", TINY_CKPT)
    assert_one_line_error(res, 2, "--model litv2_m conflicts with --checkpoint", "drop --model")


def test_compare_offline_never_suggests_random_init(tmp_path):
    make_images(tmp_path / "imgs", count=1)
    env = {"TORCH_HOME": str(tmp_path / "th"), "HILO_RELEASE_URL": (tmp_path / "x").as_uri()}
    res = hilo(
        "compare", tmp_path / "imgs", "-m", "litv2_s", "-m", "litv2_m", "-o", tmp_path / "o",
        env=env,
    )  # fmt: skip
    assert_one_line_error(res, 1, "cannot download", "--checkpoint PATH")
    assert "--random-init" not in res.stderr


def test_info_list_shows_whole_variant_names_on_80_columns():
    from rich.console import Console

    from hilocli.info import render_variants, variants_record
    from hilocli.models import VARIANTS

    con = Console(file=io.StringIO(), width=80, color_system=None)
    render_variants(con, variants_record())
    text = con.file.getvalue()
    assert max(map(len, text.splitlines())) <= 80
    names = [ln.split()[0] for ln in text.splitlines()[4:] if ln.strip().startswith("litv2")]
    assert names == list(VARIANTS)


def test_progress_in_a_log_ends_with_a_line(monkeypatch):
    from rich.console import Console

    from hilocli.terminal import progress_bar

    monkeypatch.setenv("HILO_PROGRESS_EVERY", "3600")  # no periodic line in this short run
    con = Console(file=io.StringIO(), width=120)
    assert not con.is_terminal
    with progress_bar(con, "spectrum", "images") as progress:
        for done in (4, 8, 9, 9):
            progress(done, 9)
    lines = con.file.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spectrum: 9/9 images (100%)")


def test_sets_of_commands_share_a_folder_and_a_rerun_replaces_its_own(tmp_path, blank_figures):
    folder = tmp_path / "imgs"
    make_images(folder, count=2)
    out = tmp_path / "o"
    _run(folder, "--mode", "paper", "--out", out)
    assert (out / "spectrum_paper.png").exists()
    res = hilo("compare", folder, "-c", TINY_CKPT, "-c", TINY_CKPT, "-r", "64", "-o", out)
    assert res.returncode == 2  # the same weights twice: refused, nothing written
    _run(folder, "--out", out)  # without --mode paper: the earlier paper figure goes
    assert not (out / "spectrum_paper.png").exists()
    listed = json.loads((out / "spectrum.manifest.json").read_text())["files"]
    assert set(listed) == {p.name for p in out.iterdir()} - {"spectrum.manifest.json"}


_HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from hilocli.outfolder import output_lock
    with output_lock(Path(sys.argv[1]), "compare"):
        print("holding", flush=True)
        time.sleep(60)
""")


def test_a_second_run_into_a_busy_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    from hilocli.weights import WeightsRequest

    make_images(tmp_path / "imgs", count=1)
    out = tmp_path / "o"
    monkeypatch.setattr(WeightsRequest, "load", lambda *a, **k: pytest.fail("loaded weights"))
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "holding"
        res = hilo("spectrum", tmp_path / "imgs", *TINY, "--out", out)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert_one_line_error(res, 1, f"another run is writing into {out} (`hilo compare`, process")
