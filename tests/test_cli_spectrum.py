"""`hilo spectrum` end to end on the tiny checkpoint: files, JSON, figure data, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SAMPLES, TINY_CKPT, assert_one_line_error, run_hilo

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def make_images(folder: Path, count: int = 6) -> list[Path]:
    """Small synthetic photographs-to-be: textured RGB images of a few sizes."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        h, w = 70 + 10 * (i % 3), 90 + 7 * i
        y, x = np.mgrid[0:h, 0:w]
        base = 127 + 90 * np.sin(x / (2 + i)) * np.cos(y / 5) + rng.normal(0, 25, (h, w))
        rgb = np.stack([base, base[::-1], base[:, ::-1]], -1).clip(0, 255).astype(np.uint8)
        path = folder / f"img{i}.png"
        Image.fromarray(rgb).save(path)
        paths.append(path)
    return paths


@pytest.fixture()
def image_dir(tmp_path) -> Path:
    """samples/ when the project's photos are there, else generated images."""
    real = sorted(p for p in SAMPLES.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) \
        if SAMPLES.exists() else []
    folder = tmp_path / "images"
    if len(real) >= 2:  # the photos alone (samples/ also holds a README, which would be skipped)
        folder.mkdir()
        for p in real:
            shutil.copy(p, folder / p.name)
        return folder
    make_images(folder)
    return folder


def test_end_to_end_json_matches_the_figure(image_dir, tmp_path, monkeypatch):
    """In-process run: the arrays the figure plotted are the arrays in the JSON file."""
    from typer.testing import CliRunner

    import hilocli.plotting_spectrum as plotting
    from hilocli.cli import app

    seen: dict = {}
    real = plotting.spectrum_figure

    def spy(*args, **kwargs):
        fig, data = real(*args, **kwargs)
        seen["fig"], seen["data"] = fig, data
        return fig, data

    monkeypatch.setattr(plotting, "spectrum_figure", spy)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "spectrum", str(image_dir), "--checkpoint", str(TINY_CKPT), "--resolution", "64",
        "--layer", "all", "--out", str(out), "--device", "cpu", "--batch-size", "4",
        "--mode", "paper", "--control", "random", "--limit", "6"])
    assert result.exit_code == 0, result.output
    assert (out / "spectrum.png").stat().st_size > 0
    assert (out / "spectrum_paper.png").stat().st_size > 0
    data = json.loads((out / "spectrum.json").read_text())
    n = data["images"]["count"]
    assert 2 <= n <= 6 and data["images"]["skipped_count"] == 0
    assert data["weights"]["source"] == "file" and len(data["weights"]["sha256"]) == 64
    assert data["settings"]["cutoff"] == 0.25 and data["settings"]["resolution"] == 64
    assert data["environment"]["torch"] and data["random_control"]["weights"]["trained"] is False
    assert "architecture, not a trained model" in data["random_control"]["verdict"]
    assert data["verdict"].startswith("verdict: ") and "litv2_tiny_a.pth" in data["verdict"]
    layers = {entry["index"]: entry for entry in data["layers"]}
    assert sorted(layers) == [0, 1, 2]
    assert layers[2]["comparable"] is False and layers[2]["branches"]["hifi"] is None
    assert layers[2]["verdict"]["verdict"] == "not comparable"
    for i in (0, 1):
        entry = layers[i]
        assert entry["grid"] == [4, 4] and entry["window_size"] == 2
        v = entry["verdict"]
        assert v["verdict"] in ("supported", "contradicted", "inconclusive")
        hifi = entry["branches"]["hifi"]["per_image"]["hf_fraction_excl_grid"]
        lofi = entry["branches"]["lofi"]["per_image"]["hf_fraction_excl_grid"]
        assert len(hifi) == len(lofi) == n
        # the comparison's numbers are those of the per-image vectors
        diff = np.array(hifi) - np.array(lofi)
        assert v["hifi_vs_lofi"]["median_difference"] == pytest.approx(float(np.median(diff)))
        assert v["hifi_vs_lofi"]["share_a_greater"] == pytest.approx(float(np.mean(diff > 0)))
        for b in ("hifi", "lofi", "control"):
            br = entry["branches"][b]
            assert all(0.0 <= f <= 1.0 for f in br["per_image"]["hf_fraction"])
            assert br["radial_freq"][1] == pytest.approx(0.25)  # 4 x 4 grid: bins of 1/4
            assert np.array(br["log_amplitude"]).shape == (4, 4)
    # the figure: plotted radial profiles and medians are the JSON's numbers
    plotted = seen["data"]
    for i in (0, 1, 2):
        for b, curve in plotted["layers"][i]["radial"].items():
            br = layers[i]["branches"][b]
            freq, rel = np.array(br["radial_freq"][1:]), np.array(br["radial_power_rel"][1:])
            np.testing.assert_allclose(curve["freq"], freq[rel > 0])
            np.testing.assert_allclose(curve["power_rel"], rel[rel > 0])
    for b in ("hifi", "lofi", "control"):
        medians = [float(np.median(layers[i]["branches"][b]["per_image"]["hf_fraction_excl_grid"]))
                   for i in (0, 1, 2) if layers[i]["branches"][b] is not None]
        assert plotted["hf_fraction"][b]["median"] == pytest.approx(medians)
    # and the Line2D objects on the radial axis carry exactly those arrays
    fig = seen["fig"]
    lines = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label() == "Hi-Fi"]
    np.testing.assert_allclose(lines[0].get_ydata(), plotted["layers"][0]["radial"]["hifi"]
                               ["power_rel"])


def test_folder_with_corrupt_and_non_image_files(tmp_path):
    folder = tmp_path / "mixed"
    make_images(folder / "sub", count=3)  # nested: the folder is read recursively
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (folder / "notes.txt").write_text("not an image at all")
    out = tmp_path / "out"
    proc = run_hilo("spectrum", folder, "--checkpoint", TINY_CKPT, "--resolution", "64",
                    "--out", out, "--json", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data == json.loads((out / "spectrum.json").read_text())
    assert data["images"]["count"] == 3
    skipped = {Path(s["path"]).name for s in data["images"]["skipped"]}
    assert {"broken.jpg", "notes.txt"} <= skipped
    assert "broken.jpg" in proc.stderr and "notes.txt" in proc.stderr
    assert "Traceback" not in proc.stderr
    last = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert any(ln.startswith("verdict: ") for ln in last[-3:])
    # default layers: those with both branches (tiny model: 0 and 1, not the MSA layer 2)
    assert [entry["index"] for entry in data["layers"]] == [0, 1]


def test_bad_input_is_one_line(tmp_path):
    folder = tmp_path / "imgs"
    make_images(folder, count=1)
    common = ["--checkpoint", TINY_CKPT, "--resolution", "64", "--out", tmp_path / "o"]
    assert_one_line_error(run_hilo("spectrum", folder, *common, "--cutoff", "0.7"), 2, "cutoff")
    assert_one_line_error(run_hilo("spectrum", folder, *common, "--layer", "7"), 2, "--layer 7")
    assert_one_line_error(run_hilo("spectrum", folder, *common, "--batch-size", "0"), 2)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"garbage")
    assert_one_line_error(run_hilo("spectrum", junk, *common), 1)
    assert not (tmp_path / "o" / "spectrum.json").exists()  # nothing half-written
