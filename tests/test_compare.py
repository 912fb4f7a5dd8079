"""`hilo compare` on the tiny fixture and a perturbed copy of it, in process: each row's numbers are
those `hilo spectrum`, `hilo attn-map` and `hilo flops` give alone for that checkpoint; labels and
the record name the weights by SHA-256; bad invocations fail in one line before any work."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from hilocli.output import RECORD_KEYS
from tests.conftest import TINY_CKPT, assert_one_line_error, hilo, per_image_csv, strict_json

RES = ("--resolution", "64", "--device", "cpu")


LOFI_GAIN = {"layers.2.blocks.0": 300.0}  # Lo-Fi power x 90,000


def audible_copy(path: Path) -> Path:
    """The tiny checkpoint with layer 0's Lo-Fi output projection scaled up, so that Lo-Fi
    carries about half of the layer's power instead of 0.001% (a near-silent branch is never
    compared: issue 21); layer 1's Lo-Fi output is constant at 64 px and stays not comparable."""
    import torch

    raw = torch.load(TINY_CKPT, weights_only=True)
    model = dict(raw["model"])
    for block, gain in LOFI_GAIN.items():
        model[f"{block}.attn.l_proj.weight"] = model[f"{block}.attn.l_proj.weight"] * gain
    torch.save({**raw, "model": model}, path)
    return path


def perturbed_copy(path: Path, source: Path, seed: int = 1, scale: float = 0.05) -> Path:
    """`source` with every float tensor multiplied by exp(scale * N(0, 1)) (seeded; the sign of
    each value kept, so BatchNorm variances stay positive), saved in the same layout."""
    import torch

    raw = torch.load(source, weights_only=True)
    g = torch.Generator().manual_seed(seed)
    noisy = {
        k: v * torch.exp(scale * torch.randn(v.shape, generator=g)) if v.is_floating_point() else v
        for k, v in raw["model"].items()
    }
    torch.save({**raw, "model": noisy}, path)
    return path


def make_images(folder: Path, count: int = 6) -> Path:
    """Small textured RGB images (6: enough for the exact test to reach alpha 0.05)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        h, w = 64 + 8 * (i % 3), 72 + 6 * i
        y, x = np.mgrid[0:h, 0:w]
        base = 127 + 90 * np.sin(x / (2 + i)) * np.cos(y / 5) + rng.normal(0, 25, (h, w))
        rgb = np.stack([base, base[::-1], base[:, ::-1]], -1).clip(0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"img{i}.png")
    return folder


def spectrum_alone(images: Path, checkpoint: Path) -> dict:
    """What `hilo spectrum IMAGES -c CHECKPOINT --resolution 64 --device cpu --json` prints,
    through its own run (the figures, which do not change the record, left out for speed), with
    its per-image deltas (n, layers) under "deltas" (what its per_image.csv holds)."""
    from hilocli.output import dumps
    from hilocli.spectrum import SpectrumRequest, run
    from hilocli.weights import WeightsRequest

    request = SpectrumRequest(
        inputs=(images,), weights=WeightsRequest(checkpoint=checkpoint), resolution=64,
        device="cpu",
    )  # fmt: skip
    result = run(request)
    return {**strict_json(dumps(result.to_record())), "deltas": result.deltas}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """One compare run (its record, files and plotted numbers) and the references alone."""
    from hilocli.compare import figures

    tmp = tmp_path_factory.mktemp("compare")
    images = make_images(tmp / "images")
    shutil.copy(images / "img0.png", images / "copy_of_img0.png")  # counted once
    tiny = audible_copy(tmp / "tiny_audible.pth")
    other = perturbed_copy(tmp / "tiny_perturbed.pth", tiny)
    out = tmp / "out"
    seen: dict = {}
    real = figures.compare_figure

    def spy(result):
        fig, data = real(result)
        seen["data"] = data
        return fig, data

    from hilocli.weights import WeightsRequest

    real_load = WeightsRequest.load
    loads: list[str] = []

    def counted_load(self, *args, **kwargs):
        loads.append(str(self.checkpoint))
        return real_load(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures, "compare_figure", spy)
        mp.setattr(WeightsRequest, "load", counted_load)
        res = hilo(
            "compare", images, "-c", tiny, "--checkpoint", other, *RES,
            "--attn-images", "2", "--out", out, "--json",
        )  # fmt: skip
    assert res.returncode == 0, res.stderr
    spectra = [spectrum_alone(images, ckpt) for ckpt in (tiny, other)]
    return {
        "res": res,
        "data": strict_json(res.stdout),
        "out": out,
        "images": images,
        "other": other,
        "tiny": tiny,
        "spectra": spectra,
        "plotted": seen["data"],
        "loads": loads,
    }


def test_rows_equal_spectrum_alone(setup):
    """Each row's estimate, interval, p, word and per-image deltas are `hilo spectrum`'s."""
    rows = setup["data"]["results"]["checkpoints"]
    assert [r["position"] for r in rows] == [1, 2]
    for row, ref in zip(rows, setup["spectra"]):
        v, rv = row["verdict"], ref["results"]["verdict"]
        assert row["sha256"] == ref["weights"]["sha256"]
        assert row["n"] == ref["results"]["n"] == 6 == v["n"]
        assert row["tested_layers"] == ref["results"]["tested_layers"] == [0]
        assert [c["index"] for c in row["compared_layers"]] == [0]
        assert row["verdict_word"] == v["word"] == rv["word"]
        assert row["verdict_word"] != "insufficient"  # 6 images: the test can reach alpha
        for key in ("estimate", "p", "ci_level", "mean"):
            assert v[key] == pytest.approx(rv[key], rel=1e-12), key
        assert row["estimate"] == v["estimate"] and row["p"] == v["p"]
        assert row["ci"] == v["ci"] == pytest.approx(rv["ci"], rel=1e-12)
        assert all(np.isfinite(row["ci"]))
        rows_csv = per_image_csv(setup["out"] / "compare_per_image.csv")
        got = np.array(
            [
                rows_csv.values(row["label"], i, "hifi", "hf_fraction_deblocked")
                - rows_csv.values(row["label"], i, "lofi", "hf_fraction_deblocked")
                for i in (0,)
            ]
        ).T
        np.testing.assert_allclose(got, ref["deltas"], rtol=1e-12)
        assert row["verdict_line"] == ref["results"]["verdict_line"]
    # the perturbed copy really is other weights: its per-image deltas differ
    assert not np.allclose(*(ref["deltas"] for ref in setup["spectra"]))


def test_each_set_of_weights_is_loaded_once(setup):
    """The spectrum and the attention distance of a set share one loaded model."""
    assert setup["loads"] == [str(setup["tiny"]), str(setup["other"])]
    for k in (1, 2):  # eager (the distance pass reuses the model), and recorded so
        record = strict_json((setup["out"] / f"compare_spectrum_{k}.json").read_text())
        assert record["settings"]["compile"]["used"] is False


def test_per_checkpoint_spectrum_files_are_spectrum_records(setup):
    out, data = setup["out"], setup["data"]
    for k, ref in enumerate(setup["spectra"], 1):
        rec = strict_json((out / f"compare_spectrum_{k}.json").read_text())
        assert rec["command"] == "spectrum" and set(rec) == set(RECORD_KEYS)
        assert rec["results"] == ref["results"]
        assert rec["weights"] == ref["weights"]
        assert data["files"][f"spectrum_{k}"] == str(out / f"compare_spectrum_{k}.json")


def test_record_names_weights_and_is_strict(setup):
    data, out = setup["data"], setup["out"]
    assert set(data) == set(RECORD_KEYS) and data["command"] == "compare"
    assert data == strict_json((out / "compare.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == [
        "compare.json", "compare.manifest.json", "compare.png", "compare_per_image.csv",
        "compare_spectrum_1.json", "compare_spectrum_2.json",
    ]  # fmt: skip
    sets = data["weights"]["sets"]
    assert data["weights"]["count"] == 2
    for s, path in zip(sets, (setup["tiny"], setup["other"])):
        assert len(s["sha256"]) == 64 and s["path"] == str(path)
        assert s["label"] == f"{Path(path).name}@{s['sha256'][:8]}"
    assert sets[0]["sha256"] != sets[1]["sha256"]
    assert sets[0]["label"] in setup["res"].stderr and sets[0]["sha256"] in setup["res"].stderr
    rows = data["results"]["checkpoints"]
    assert [r["label"] for r in rows] == [s["label"] for s in sets]
    inputs = data["inputs"]
    assert inputs["n"] == 6 and len(inputs["duplicates"]) == 1
    dup = inputs["duplicates"][0]
    assert {Path(dup["path"]).name, Path(dup["same_as"]).name} == {"img0.png", "copy_of_img0.png"}
    settings = data["settings"]
    assert (settings["resolution"], settings["attn_images"], settings["attn_images_used"]) == (
        64, 2, 2,
    )  # fmt: skip
    note = data["results"]["layers_note"]
    assert note.startswith("layers compared: 0 (1 layer), the same for every set")
    # undefined numbers are null and listed, never 0: the tiny model has both branches here
    assert data["undefined"] == []


def test_distance_and_macs_equal_attn_map_and_flops(setup):
    """Hi-Fi / Lo-Fi distance of the first image = attn-map's per-head distances averaged over
    heads and the compared layers; MACs = hilo flops' total at the same resolution."""
    row = setup["data"]["results"]["checkpoints"][0]
    dist = row["attention_distance"]
    assert dist["n_images"] == 2 and dist["layers"] == [0]
    assert dist["unit"] == "model-input pixels"
    first = dist["images"][0]
    from hilocli.attn_map import AttnMapRequest
    from hilocli.attn_map import run as attn_map_run
    from hilocli.output import dumps
    from hilocli.weights import WeightsRequest

    request = AttnMapRequest(
        image=Path(first), weights=WeightsRequest(checkpoint=setup["tiny"]), layers="0",
        resolution=64, device="cpu",
    )  # fmt: skip
    layers = strict_json(dumps(attn_map_run(request).to_record()))["results"]["layers"]
    for branch in ("hifi", "lofi"):
        per_layer = [np.mean(layer[branch]["mean_distance_px"]) for layer in layers]
        np.testing.assert_allclose(dist["per_image"][f"{branch}_px"][0], per_layer, rtol=1e-5)
        assert dist[f"{branch}_px"] == pytest.approx(
            np.mean(dist["per_image"][f"{branch}_px"]), rel=1e-12
        )
    assert dist["hifi_px"] < dist["lofi_px"]  # windows are local, pooled keys global
    flops = hilo("flops", "--checkpoint", TINY_CKPT, "--resolution", "64", "--json")
    assert flops.returncode == 0, flops.stderr
    assert row["cost"]["macs"] == strict_json(flops.stdout)["results"]["macs"] > 0
    assert row["cost"]["resolution"] == [64, 64]


def test_figure_plots_the_record(setup):
    plotted, rows = setup["plotted"], setup["data"]["results"]["checkpoints"]
    assert plotted["labels"] == [r["label"] for r in rows]
    assert plotted["word"] == [r["verdict_word"] for r in rows]
    np.testing.assert_allclose(plotted["estimate"], [r["estimate"] for r in rows])
    np.testing.assert_allclose(plotted["ci"], [r["ci"] for r in rows])
    for branch in ("hifi", "lofi"):
        np.testing.assert_allclose(
            plotted[f"{branch}_px"], [r["attention_distance"][f"{branch}_px"] for r in rows]
        )
    assert plotted["macs"] == [r["cost"]["macs"] for r in rows]
    assert "n = 6 scenes from 6 images" in plotted["title"]


def test_bad_invocations_fail_in_one_line(tmp_path):
    images = make_images(tmp_path / "images", 1)
    one = hilo("compare", images, "-c", TINY_CKPT, *RES, "--out", tmp_path / "o")
    assert_one_line_error(one, 2, "at least 2 sets of weights", "got 1")
    missing = hilo("compare", images, "-c", TINY_CKPT, "-c", tmp_path / "nope.pth", *RES)
    assert_one_line_error(missing, 2, "nope.pth", "no such file")
    copy = shutil.copy(TINY_CKPT, tmp_path / "copy.pth")
    same = hilo("compare", images, "-c", TINY_CKPT, "-c", copy, *RES, "--out", tmp_path / "o")
    assert_one_line_error(same, 2, "copy.pth", "same weights")
    twice = hilo("compare", images, "-c", TINY_CKPT, "-c", TINY_CKPT, *RES)
    assert_one_line_error(twice, 2, "given twice")
    labels = hilo("compare", images, "-c", TINY_CKPT, "-c", copy, "--label", "a", *RES)
    assert_one_line_error(labels, 2, "--label", "one per set")
    no_image = hilo("compare", tmp_path / "none.png", "-c", TINY_CKPT, "-c", copy, *RES,
                    "--out", tmp_path / "o")  # fmt: skip
    assert_one_line_error(no_image, 1, "none.png")
    unknown = hilo("compare", images, "-m", "litv2_s", "-m", "litv2_x")
    assert_one_line_error(unknown, 2, "litv2_x")
    assert not (tmp_path / "o").exists()  # nothing written by a failed run


def test_alpha_end_points_are_measured_not_judged(tmp_path):
    """A model with one branch per layer (alpha 0 or 1) is still measured on its windowed
    layers: the other branch's distance is null (listed as undefined), its verdict word says
    'not comparable', and the note says the head splits differ."""
    import torch

    from hilocli.compare.run import default_layers
    from hilocli.loaded import loaded_model
    from hilocli.models import LITv2Config, Preprocess, create_model

    cfg = LITv2Config(embed_dim=16, depths=[1, 1, 2, 1], num_heads=[1, 1, 2, 4], alpha=0.0,
                      local_ws=[0, 0, 2, 1], num_classes=10, img_size=64)  # fmt: skip
    torch.manual_seed(0)
    model = create_model(cfg)
    assert default_layers(loaded_model(model, None, "alpha0", Preprocess(), cfg)) == "0,1"
    torch.save({"model": model.state_dict()}, tmp_path / "alpha0.pth")
    images = make_images(tmp_path / "images", 2)
    from hilocli.compare import CompareRequest, run
    from hilocli.compare.render import compare_table
    from hilocli.output import dumps
    from hilocli.terminal import console

    request = CompareRequest(
        inputs=(images,), checkpoints=(TINY_CKPT, tmp_path / "alpha0.pth"),
        labels=("tiny", "alpha 0"), resolution=64, device="cpu",
    )  # fmt: skip
    result = run(request)
    data = strict_json(dumps(result.to_record()))
    first, second = data["results"]["checkpoints"]
    assert (first["label"], second["label"]) == ("tiny", "alpha 0")
    assert first["verdict_word"] == "not comparable"  # the tiny model's Lo-Fi is near silent
    assert "Lo-Fi is nearly silent" in first["verdict_line"]
    assert second["verdict_word"] == "not comparable" and second["verdict"] is None
    assert second["estimate"] is None and "results.checkpoints[1].estimate" in data["undefined"]
    assert second["measured_layers"] == [0, 1] and second["tested_layers"] == []
    assert second["attention_distance"]["lofi_px"] is None
    assert second["attention_distance"]["hifi_px"] > 0
    assert "head splits differ" in data["results"]["layers_note"]
    con = console()
    with con.capture() as captured:
        con.print(compare_table(result))
    assert "not comparable" in captured.get()
