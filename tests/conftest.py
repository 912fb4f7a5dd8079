"""Shared fixtures: the authors' tiny LITv2 checkpoint and its architecture."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TINY_CKPT = FIXTURES / "litv2_tiny_a.pth"
TINY_EXPECTED = FIXTURES / "litv2_tiny_a_expected.npz"
MANIFEST = FIXTURES / "litv2_state_dict_manifest.json"
SAMPLES = Path(__file__).parent.parent / "samples"

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def tiny_cfg():
    from hilocli.models import LITv2Config

    spec = json.loads((FIXTURES / "litv2_tiny_a.json").read_text())
    return LITv2Config(
        embed_dim=spec["embed_dim"],
        depths=spec["depths"],
        num_heads=spec["num_heads"],
        alpha=spec["alpha"],
        local_ws=spec["local_ws"],
        num_classes=spec["num_classes"],
        img_size=spec["img_size"],
    )


@pytest.fixture(scope="session")
def tiny_ckpt_path() -> Path:
    return TINY_CKPT


@pytest.fixture()
def tiny_model(tiny_cfg):
    """The tiny LITv2 with the authors' trained-by-their-code weights, eval mode, CPU."""
    import torch

    from hilocli.models import create_model

    model = create_model(tiny_cfg)
    model.load_state_dict(torch.load(TINY_CKPT, weights_only=True)["model"])
    return model


@pytest.fixture(scope="session")
def manifest() -> dict:
    return json.loads(MANIFEST.read_text())


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def hilo(*args: str, env: dict | None = None) -> CliResult:
    """Run the CLI in this process (fast): exit code, stdout and stderr, as a subprocess gives."""
    import contextlib
    import io
    import os

    from hilocli.cli import run

    out, err = io.StringIO(), io.StringIO()
    old_env = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run([str(a) for a in args])
    finally:
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return CliResult(code, out.getvalue(), err.getvalue())


def run_hilo(*args: str, env: dict | None = None, cwd: Path | None = None):
    """Run the real `hilo` entry point in a subprocess (as a user would). Slow: keep these few
    and mark their tests `@pytest.mark.slow`; use `hilo(...)` in process otherwise."""
    import os
    import subprocess
    import sys

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "hilocli", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=300,
    )


def strict_json(text: str):
    """json.loads that refuses NaN / Infinity tokens (invalid JSON outside Python)."""

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def assert_one_line_error(proc, code: int, *fragments: str) -> None:
    """Exit code `code`, exactly one line on stderr starting `hilo: error:`, no traceback (a
    batch log's progress lines before it aside: `spectrum: 2/2 images (100%), ...`)."""
    import re

    progress = re.compile(r"^[a-z-]+: \d+/\d+ ")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not progress.match(ln)]
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("hilo: error:"), proc.stderr
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])


class PerImageCsv:
    """A spectrum run's per_image.csv read with the csv module (an independent reader)."""

    def __init__(self, path: Path):
        import csv

        with Path(path).open(newline="") as fh:
            reader = csv.DictReader(fh)
            self.columns = list(reader.fieldnames or [])
            self.rows = list(reader)

    def values(self, weights: str, layer: int, branch: str, field: str):
        """One field over images, in image order (empty cells: NaN)."""
        import numpy as np

        picked = [
            r
            for r in self.rows
            if (r["weights"], int(r["layer"]), r["branch"]) == (weights, layer, branch)
        ]
        picked.sort(key=lambda r: int(r["image"]))
        return np.array([float(r[field]) if r[field] != "" else np.nan for r in picked])


def per_image_csv(path: Path) -> PerImageCsv:
    return PerImageCsv(path)


def unrasterise_figures(monkeypatch) -> None:
    """Figures are built (every plotting call runs) but not rasterised: `OutputSet.figure` stages
    an empty placeholder file instead of the PNG. Drawing costs seconds per run; the figure tests
    (tests/test_spectrum.py, test_attention.py, the record-vs-figure CLI tests) check real files."""
    from hilocli.output import OutputSet

    def placeholder(self, name, fig, **_kwargs):
        import matplotlib.pyplot as plt

        self._stage(name).write_bytes(b"")
        plt.close(fig)
        return self.path(name)

    monkeypatch.setattr(OutputSet, "figure", placeholder)


@pytest.fixture()
def unrasterised_figures(monkeypatch):
    unrasterise_figures(monkeypatch)


def hilo_layers(model):
    """The HiLo layers (`hilocli.hilo.layer.HiLoLayer`) of a model, as the loader finds them: a
    LITv2 with its config's metadata (stage, block name, stride), any other model by structure."""
    from hilocli.hilo.discover import find_layers
    from hilocli.loaded import layer_meta

    cfg = getattr(model, "cfg", None)
    return find_layers(model, None if cfg is None else layer_meta(cfg))[0]


def capture_layers(model, indices, **kwargs):
    """`hilocli.hilo.capture.capture` of the layers at `indices` (what --layer takes)."""
    from hilocli.hilo.capture import capture

    layers = hilo_layers(model)
    return capture(model, [layers[i] for i in indices], **kwargs)
