"""`hilo spectrum` on the tiny checkpoint, in process: files, the run record, figure data, inputs
(skipped, duplicates, the --out folder) and every failure as one line with nothing half-written."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hilocli.output import RECORD_KEYS
from tests.conftest import (
    SAMPLES,
    TINY_CKPT,
    assert_one_line_error,
    hilo,
    per_image_csv,
    strict_json,
)

TINY = ("--checkpoint", str(TINY_CKPT), "--resolution", "64", "--device", "cpu")
RECORD_KEYS = set(RECORD_KEYS)


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
def blank_figures(monkeypatch):
    """Every figure of the run drawn as a blank 1 x 1 inch one (what a test does not check costs
    seconds to draw); a test that checks a figure puts its real function back."""
    from matplotlib.figure import Figure

    from hilocli.spectrum import figures, maps, summary

    real = {name: getattr(figures, name) for name in ("hf_figure", "transfer_figure")}
    for module, name in [
        (figures, "hf_figure"),
        (figures, "radial_figure"),
        (maps, "maps_figure"),
        (figures, "paper_figure"),
        (figures, "transfer_figure"),
        (summary, "summary_figure"),
        (summary, "depth_figure"),
    ]:
        monkeypatch.setattr(module, name, lambda result: (Figure(figsize=(1, 1)), {}))
    return real


@pytest.fixture()
def image_dir(tmp_path) -> Path:
    """The 4 sample photos (samples/ also holds a README, which would be skipped)."""
    folder = tmp_path / "images"
    folder.mkdir()
    for p in sorted(SAMPLES.glob("*.jpg")):
        shutil.copy(p, folder / p.name)
    assert len(list(folder.iterdir())) == 4
    return folder


def test_record_files_and_figure_agree(image_dir, tmp_path, monkeypatch, unrasterised_figures):
    """The arrays the figures plotted are the arrays in spectrum.json; --json prints that file."""
    from hilocli.spectrum import figures, summary

    seen: dict = {}
    real_hf, real_radial = figures.hf_figure, figures.radial_figure
    real_summary = summary.summary_figure

    def spy(result):
        seen["hf_fig"], seen["hf"] = real_hf(result)
        return seen["hf_fig"], seen["hf"]

    def spy_radial(result):
        seen["fig"], seen["data"] = real_radial(result)
        return seen["fig"], seen["data"]

    def spy_summary(result):
        seen["summary_fig"], seen["summary"] = real_summary(result)
        return seen["summary_fig"], seen["summary"]

    monkeypatch.setattr(figures, "hf_figure", spy)
    monkeypatch.setattr(figures, "radial_figure", spy_radial)
    monkeypatch.setattr(summary, "summary_figure", spy_summary)
    out = tmp_path / "out"
    res = hilo(
        "spectrum",
        image_dir,
        *TINY,
        "--layer",
        "0,1,2",
        "--out",
        out,
        "--batch-size",
        "3",
        "--mode",
        "paper",
        "--control",
        "random",
        "--control-seeds",
        "2",
        "--json",
    )
    assert res.returncode == 0, res.stderr
    data = strict_json(res.stdout)
    assert data == strict_json((out / "spectrum.json").read_text())
    assert set(data) == RECORD_KEYS and data["command"] == "spectrum"
    assert data["files"] == {
        "record": str(out / "spectrum.json"),
        "per_image": str(out / "per_image.csv"),
        "summary_figure": str(out / "spectrum_summary.png"),
        "figure": str(out / "spectrum.png"),
        "radial_figure": str(out / "spectrum_radial.png"),
        "maps_figure": str(out / "spectrum_maps.png"),
        "paper_figure": str(out / "spectrum_paper.png"),
    }
    # figures built, not rasterised here (real PNGs: tests/test_scale.py's torchrun run)
    assert (out / "spectrum_paper.png").exists() and (out / "spectrum.manifest.json").exists()
    assert sorted(p.name for p in out.iterdir()) == [
        "per_image.csv",
        "spectrum.json",
        "spectrum.manifest.json",
        "spectrum.png",
        "spectrum_maps.png",
        "spectrum_paper.png",
        "spectrum_radial.png",
        "spectrum_summary.png",
    ]
    n = len(data["inputs"]["analysed"])
    assert n == 4 and data["inputs"]["skipped"] == [] and data["inputs"]["duplicates"] == []
    assert data["weights"]["source"] == "file" and len(data["weights"]["sha256"]) == 64
    settings = data["settings"]
    assert settings["cutoff"] == 0.25 and settings["resolution"] == 64 and settings["crop"]
    assert settings["layers"] == [0, 1, 2] and settings["tested_layers"] == []
    assert settings["batch_size"] == 3
    assert (settings["mode"], settings["control"], settings["seed"], settings["device"]) == (
        "paper",
        "random",
        0,
        "cpu",
    )
    assert (settings["alpha"], settings["margin"], settings["control_seeds"]) == (
        0.05,
        0.05,
        [1, 2],
    )
    assert settings["boundary"] == "hann"
    assert data["environment"]["torch"]
    results = data["results"]
    # the tiny checkpoint's Lo-Fi carries ~0.01% of the layer's power: its share is the shape of
    # a residue, so no layer is compared and there is no verdict (nor a random control)
    layers = {entry["index"]: entry for entry in results["layers"]}
    for i in (0, 1):
        assert "Lo-Fi is nearly silent" in layers[i]["not_comparable"]
        assert layers[i]["hifi_power_share"] > 0.99
    assert layers[2]["comparable"] is False and layers[2]["branches"]["hifi"] is None
    assert results["verdict"] is None and results["random_control"] is None
    line = results["verdict_line"]
    assert line.startswith("verdict: not comparable: layer 0: Lo-Fi is nearly silent")
    assert "litv2_tiny_a.pth" in line and line.split("(")[0] in res.stderr.replace("\n", " ")
    assert results["n_images"] == 4 and results["n_scenes"] == 4
    # per-image values live in per_image.csv (one row per image, weights, layer, branch)
    rows = per_image_csv(out / "per_image.csv")
    assert rows.columns == list(results["per_image"]["columns"])
    assert len(rows.rows) == 4 * 3 * 8  # images x (model + 2 seeds) x (3 + 3 + 2) branches
    paths = data["inputs"]["analysed"]
    for r in rows.rows:  # image index, path and its content hash agree with the inputs
        assert r["path"] == paths[int(r["image"])]
        assert r["sha256"] == hashlib.sha256(Path(r["path"]).read_bytes()).hexdigest()
    for layer in (0, 1, 2):  # the CSV matches the JSON's summaries exactly
        for b, entry in layers[layer]["branches"].items():
            if entry is None:
                assert not rows.values("model", layer, b, "hf_fraction").size
                continue
            for field, med in entry["median"].items():
                vals = rows.values("model", layer, b, field)
                assert vals.size == 4
                assert (med is None and np.isnan(vals).all()) or med == np.median(vals)
    key = "hf_fraction_deblocked"
    plotted = seen["summary"]
    assert plotted["layers"] == [] and plotted["word"] is None
    assert "not comparable" in plotted["title"]
    entry = layers[1]
    assert entry["grid"] == [4, 4] and entry["window_size"] == 2
    assert (entry["hifi_heads"], entry["lofi_heads"]) == (1, 1)
    for b in ("hifi", "lofi", "control"):
        br = entry["branches"][b]
        assert all(0.0 <= f <= 1.0 for f in rows.values("model", 1, b, "hf_fraction"))
        assert br["radial_freq"][1] == pytest.approx(0.25)  # 4 x 4 grid: bins of 1/4
        assert np.array(br["log_amplitude"]).shape == (4, 4)
    # the spectra figure: plotted radial profiles and medians are the JSON's numbers
    plotted = seen["data"]
    for i in (1, 2):
        for b, curve in plotted["layers"][i]["radial"].items():
            br = layers[i]["branches"][b]
            freq, rel = np.array(br["radial_freq"][1:]), np.array(br["radial_power_rel"][1:])
            np.testing.assert_allclose(curve["freq"], freq[rel > 0])
            np.testing.assert_allclose(curve["power_rel"], rel[rel > 0])
    for b in ("hifi", "lofi", "control"):
        medians = [
            float(np.median(rows.values("model", i, b, key)))
            for i in (0, 1, 2)
            if layers[i]["branches"][b] is not None
        ]
        assert seen["hf"]["hf_fraction"][b]["median"] == pytest.approx(medians)
    lines = [ln for ax in seen["fig"].axes for ln in ax.get_lines() if ln.get_label() == "Hi-Fi"]
    np.testing.assert_allclose(
        lines[1].get_ydata(), plotted["layers"][1]["radial"]["hifi"]["power_rel"]
    )


KNOWN = ("--model-fn", "tests/fixtures/known_answers.py:highpass_lowpass", "--random-init")


def test_verdict_control_and_summary_figure_are_the_csv_numbers(tmp_path, monkeypatch):
    """On a model whose Hi-Fi is a high-pass and Lo-Fi a low-pass (both loud): the verdict's p,
    estimate and interval are the signed-rank test of the CSV's per-scene deltas, the random
    control ranks the model's estimate among its seeds' (also from the CSV), and the summary
    figure plots exactly those numbers."""
    from hilocli.spectrum import exact, summary
    from tests.fixtures.known_images import distinct_photos

    seen = {}
    real = summary.summary_figure

    def spy(result):
        fig, seen["summary"] = real(result)
        return fig, seen["summary"]

    monkeypatch.setattr(summary, "summary_figure", spy)
    distinct_photos(tmp_path / "photos", 7, size=96)
    out = tmp_path / "o"
    res = hilo("spectrum", tmp_path / "photos", *KNOWN, "-r", "64", "--out", out,
               "--control", "random", "--control-seeds", "3", "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    results = strict_json(res.stdout)["results"]
    v, control = results["verdict"], results["random_control"]
    assert results["n_scenes"] == v["n"] == 7 and v["word"] == "supported"
    rows = per_image_csv(out / "per_image.csv")
    key = "hf_fraction_deblocked"

    def delta(weights):
        return rows.values(weights, 0, "hifi", key) - rows.values(weights, 0, "lofi", key)

    hl = exact.hodges_lehmann(delta("model"))
    assert v["p"] == pytest.approx(hl.p) and v["estimate"] == pytest.approx(hl.estimate)
    assert v["ci"] == pytest.approx([hl.low, hl.high]) and v["p"] == pytest.approx(2 / 2**7)
    seeds = [exact.hodges_lehmann(delta(f"random:{s}")).estimate for s in (1, 2, 3)]
    assert control["seed_statistics"] == pytest.approx(seeds)
    beaten = sum(x >= hl.estimate for x in seeds)
    assert control["p"] == pytest.approx((1 + beaten) / 4)
    assert control["word"] == "insufficient"  # 3 seeds cannot reach p 0.05 (19 can)
    sens = results["verdict_sensitivity"]
    raw = rows.values("model", 0, "hifi", "hf_fraction") - rows.values(
        "model", 0, "lofi", "hf_fraction"
    )
    assert sens["estimate"] == pytest.approx(exact.hodges_lehmann(raw).estimate)
    plotted = seen["summary"]
    np.testing.assert_allclose(np.sort(plotted["columns"][0]["deltas"]), np.sort(delta("model")))
    assert plotted["columns"][-1]["estimate"] == pytest.approx(v["estimate"])
    assert plotted["columns"][-1]["random_band"] == pytest.approx([min(seeds), max(seeds)])
    assert "n = 7 scenes from 7 images" in plotted["title"] and "SUPPORTED" in plotted["title"]


def test_groups_file_sets_the_scenes_and_is_checked_before_decoding(tmp_path, blank_figures):
    from tests.fixtures.known_images import distinct_photos

    photos = distinct_photos(tmp_path / "photos", 6, size=96)
    table = tmp_path / "groups.csv"
    table.write_text("path,group\n" + "".join(f"{p},{'ab'[i % 2]}\n" for i, p in enumerate(photos)))
    res = hilo("spectrum", tmp_path / "photos", *KNOWN, "-r", "64", "--groups", table,
               "--out", tmp_path / "o", "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    results = strict_json(res.stdout)["results"]
    assert results["n_images"] == 6 and results["n_scenes"] == 2 and results["verdict"]["n"] == 2
    assert results["scenes"]["source"] == f"--groups {table}"
    assert results["verdict"]["word"] == "insufficient"  # 2 scenes, whatever the 6 images say
    table.write_text("path,group\n" + "".join(f"{p},a\n" for p in photos[1:]))
    decoded = []
    import hilocli.batches

    real = hilocli.batches.image_chunks
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            hilocli.batches, "image_chunks", lambda *a, **k: decoded.append(1) or real(*a, **k)
        )
        bad = hilo("spectrum", tmp_path / "photos", *KNOWN, "-r", "64", "--groups", table,
                   "--out", tmp_path / "o2")  # fmt: skip
    assert_one_line_error(bad, 1, "1 of 6 analysed images are not listed")
    assert decoded == [] and not (tmp_path / "o2").exists()


def test_one_image_given_twice_and_a_copy_gives_no_verdict(tmp_path, blank_figures):
    folder = tmp_path / "imgs"
    (first,) = make_images(folder, count=1)
    shutil.copy(first, folder / "copy.png")
    res = hilo("spectrum", folder, first, *KNOWN, "-r", "128", "--out", tmp_path / "o", "--json")
    assert res.returncode == 0, res.stderr
    data = strict_json(res.stdout)
    v = data["results"]["verdict"]
    assert data["results"]["n"] == 1 and v["n"] == 1 and v["word"] == "insufficient"
    assert len(data["inputs"]["duplicates"]) == 2 and v["min_images"] == 6


def test_depth_curve_on_one_image(tmp_path, blank_figures):
    (first,) = make_images(tmp_path / "imgs", count=1)
    res = hilo("spectrum", first, *TINY, "--out", tmp_path / "o", "--depth", "--json")
    assert res.returncode == 0, res.stderr
    data = strict_json(res.stdout)
    # --depth: Park & Kim's curve over every block of the tiny model (5 blocks), one image
    depth = data["results"]["depth_curve"]
    assert len(depth["blocks"]) == len(depth["highest"]) == 5
    assert np.array(depth["per_image_highest"]).shape == (1, 5)
    assert data["files"]["depth_figure"].endswith("spectrum_depth.png")


def test_control_seeds_differ_from_the_model_seed_also_at_random_init():
    import torch

    from hilocli.spectrum import SpectrumRequest
    from hilocli.spectrum.request import control_seeds
    from hilocli.weights import WeightsRequest, random_init_like

    for seed in (0, 3, -1, 2**31):
        assert seed not in control_seeds(seed, 5) and len(set(control_seeds(seed, 5))) == 5
    request = SpectrumRequest(
        inputs=(Path("x"),),
        weights=WeightsRequest(model="litv2_s", pretrained=False, seed=3),
        control="random",
        control_seeds=3,
    ).validate()
    assert request.to_dict()["control_seeds"] == [4, 5, 6]
    loaded = WeightsRequest(checkpoint=TINY_CKPT).load(torch.device("cpu"))
    twins = [random_init_like(loaded, s, "cpu") for s in (0, *control_seeds(0, 2))]
    assert [t.provenance.seed for t in twins] == [0, 1, 2]
    params = [torch.cat([p.flatten() for p in t.model.parameters()]) for t in twins]
    assert not torch.equal(params[0], params[1]) and not torch.equal(params[1], params[2])
    again = random_init_like(loaded, 1, "cpu")  # a seed gives the same network every time
    assert torch.equal(params[1], torch.cat([p.flatten() for p in again.model.parameters()]))


def test_inputs_skipped_duplicates_and_the_out_folder(tmp_path, blank_figures):
    folder = tmp_path / "mixed"
    first, *_ = make_images(folder / "sub", count=3)  # nested: the folder is read recursively
    shutil.copy(first, folder / "copy_of_img0.png")  # byte-identical: counted once
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (folder / "notes.txt").write_text("not an image at all")
    out = folder / "results"  # --out inside the input folder, holding an earlier run's PNGs
    make_images(out, count=2)
    listed = {"command": "spectrum", "files": {"img0.png": {}, "img1.png": {}}}
    (out / "spectrum.manifest.json").write_text(json.dumps(listed))  # hilo's: never read
    res = hilo("spectrum", folder, first, *TINY, "--out", out, "--json")
    assert res.returncode == 0, res.stderr
    inputs = strict_json(res.stdout)["inputs"]
    # walk order: copy_of_img0.png comes first, so sub/img0.png (walked, then given again) is
    # its duplicate twice, by content and by content again
    copy = str(folder / "copy_of_img0.png")
    assert inputs["analysed"] == [
        copy,
        str(folder / "sub" / "img1.png"),
        str(folder / "sub" / "img2.png"),
    ]
    assert inputs["n"] == 3
    assert inputs["duplicates"] == [{"path": str(first), "same_as": copy}] * 2
    skipped = {Path(s["path"]).name: s["reason"] for s in inputs["skipped"]}
    assert set(skipped) == {"broken.jpg", "notes.txt", "results"}
    assert skipped["results"] == "3 file(s) hilo wrote here are not read as inputs"
    assert "broken.jpg" in res.stderr and "notes.txt" in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert any(ln.startswith("verdict: ") for ln in lines[-6:])
    # default layers: those with both branches (tiny model: 0 and 1, not the MSA layer 2)
    assert [e["index"] for e in strict_json(res.stdout)["results"]["layers"]] == [0, 1]


def test_bad_options_are_one_line_before_any_work(tmp_path, monkeypatch):
    from hilocli.weights import WeightsRequest

    def no_work(self, *args, **kwargs):
        raise AssertionError("weights were loaded before the options were checked")

    folder = tmp_path / "imgs"
    make_images(folder, count=1)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    monkeypatch.setattr(WeightsRequest, "load", no_work)
    common = [folder, *TINY, "--out", tmp_path / "o"]
    for extra, fragment in [
        (("--cutoff", "0.7"), "cutoff"),
        (("--batch-size", "0"), "batch"),
        (("--limit", "0"), "--limit"),
        (("--resolution", "100000"), "8192"),
        (("--out", a_file), "not a folder"),
        (("--random-init",), "conflict"),
        (("--boundary", "smooth"), "--boundary"),
        (("--groups", tmp_path / "missing.csv"), "--groups"),
        (("--alpha", "0.7"), "--alpha"),
        (("--control-seeds", "0"), "--control-seeds"),
        (("--compile", "sometimes"), "--compile"),
    ]:
        assert_one_line_error(hilo("spectrum", *common, *extra), 2, fragment)
    assert not (tmp_path / "o").exists()


def test_failures_leave_nothing_behind(tmp_path, monkeypatch):
    import torch

    folder = tmp_path / "imgs"
    make_images(folder, count=2)
    out = tmp_path / "o"
    out.mkdir()
    (out / "spectrum.json").write_text("{}\n")  # an earlier run's record stays untouched
    assert_one_line_error(
        hilo("spectrum", folder, *TINY, "--out", out, "--layer", "7"), 2, "--layer 7"
    )
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"garbage")
    assert_one_line_error(hilo("spectrum", junk, *TINY, "--out", out), 1, "a.png")
    # NaN in a weight: refused with the tensor's name
    ckpt = torch.load(TINY_CKPT, weights_only=True)
    ckpt["model"]["layers.2.blocks.0.attn.h_qkv.weight"][0, 0] = float("nan")
    bad = tmp_path / "nan.pth"
    torch.save(ckpt, bad)
    res = hilo("spectrum", folder, "--checkpoint", bad, "--resolution", "64", "--out", out)
    assert_one_line_error(res, 1, "layers.2.blocks.0.attn.h_qkv.weight", "non-finite")

    # a failure while the files are staged leaves no file and no staging folder
    from hilocli.spectrum import figures

    def boom(result):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(figures, "hf_figure", boom)
    res = hilo("spectrum", folder, *TINY, "--out", out)
    assert_one_line_error(res, 1, "drawing failed")
    assert sorted(p.name for p in out.iterdir()) == ["spectrum.json"]
    assert (out / "spectrum.json").read_text() == "{}\n"


def test_transfer_option_draws_each_heads_gain(image_dir, tmp_path, monkeypatch, blank_figures):
    """--transfer: per-head gains in the JSON and transfer.png; the figure plots the JSON."""
    from hilocli.spectrum import figures

    seen: dict = {}
    real = blank_figures["transfer_figure"]

    def spy(result):
        fig, seen["data"] = real(result)
        return fig, seen["data"]

    monkeypatch.setattr(figures, "transfer_figure", spy)
    out = tmp_path / "out"
    res = hilo("spectrum", image_dir, *TINY, "--limit", "2", "--out", out, "--transfer", "--json")
    assert res.returncode == 0, res.stderr
    data = strict_json(res.stdout)
    assert data["settings"]["transfer"] is True and data["settings"]["matched"] is False
    assert data["files"]["transfer_figure"] == str(out / "transfer.png")
    assert (out / "transfer.png").stat().st_size > 0
    curves = data["results"]["transfer_curves"]
    assert [c["index"] for c in curves] == [0, 1] and curves[0]["window_size"] == 2
    radii = np.array(curves[0]["radii"])
    assert radii[0] == 0 and radii[-1] == 0.5 and curves[0]["angles"] == [0, 45, 90, 135]
    for c in curves:
        for b in ("hifi", "lofi"):
            gain = np.array(c[b])  # (heads, angles, radii)
            assert gain.shape[1:] == (4, len(radii))
            # softmax rows sum to 1: the mean of a constant is the constant (gain 1 at f = 0),
            # and a convex combination of unit phasors never exceeds 1
            np.testing.assert_allclose(gain[..., 0], 1.0, atol=1e-5)
            assert np.all(gain <= 1 + 1e-5) and np.all(gain >= 0)
            np.testing.assert_allclose(seen["data"]["layers"][c["index"]][b], gain.mean(1))


def test_matched_option_gives_positive_ratios_and_a_table(image_dir, tmp_path, blank_figures):
    res = hilo("spectrum", image_dir, *TINY, "--limit", "2", "--layer", "1", "--out",
               tmp_path / "o", "--matched", "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    data = strict_json(res.stdout)
    assert data["settings"]["matched"] is True and data["results"]["transfer_curves"] is None
    rows = per_image_csv(tmp_path / "o" / "per_image.csv")
    for b in ("hifi", "lofi"):
        for band in ("low", "high"):
            ratios = rows.values("model", 1, b, f"matched_ratio_{band}")
            assert ratios.shape == (2,) and np.all(np.isfinite(ratios)) and np.all(ratios > 0)
    assert np.isnan(rows.values("model", 1, "control", "matched_ratio_low")).all()  # undefined
    assert "band power ratios" in res.stderr and "match high" in res.stderr
