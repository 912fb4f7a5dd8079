"""Every `hilo ...` line in README.md and docs/*.md runs as written, so examples cannot drift.

Offline substitutions only: where a line would download released weights (`--pretrained`, or
`spectrum`/`attn-map` without `--checkpoint`/`--random-init`) or build the default LITv2-S at
random (`spectrum --random-init`), the tiny fixture replaces them (and `--model`); checkpoint
paths that are placeholders (`my_litv2.pth`) become the tiny fixture; placeholder image folders
(`photos/`) become `samples/`; `--out` goes to a temporary folder; the image commands run at
`--resolution 96` (the same pipeline, in seconds). `compare` keeps its number of weights: each
`--checkpoint`/`--model` becomes, in turn, the tiny fixture and seeded perturbed copies of it, on
at most 2 images (`--limit 2 --attn-images 1`).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import TINY_CKPT, hilo, strict_json

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
WEIGHTED = {"spectrum", "attn-map", "compare"}  # commands that default to released weights
DOC_RES = 96  # input size the image commands' examples run at here


def doc_examples() -> list[tuple[str, int, str]]:
    """(file, line number, command line) of every `hilo` line inside a fenced code block."""
    found = []
    for doc in DOCS:
        fenced = False
        for no, line in enumerate(doc.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            text = line.strip()
            if fenced and text.startswith("hilo "):
                found.append((doc.name, no, text))
    return found


def offline_args(line: str, out: Path) -> list[str]:
    """The example's arguments with the offline substitutions of the module docstring."""
    args = shlex.split(line, comments=True)[1:]
    cmd = args[0]
    fixed: list[str] = []
    it = iter(range(len(args)))
    for i in it:
        a = args[i]
        if a in ("--checkpoint", "-c") and not (ROOT / args[i + 1]).exists():
            fixed += [a, str(TINY_CKPT)]
            next(it)
        elif a in ("--out", "-o"):
            fixed += [a, str(out)]
            next(it)
        elif not a.startswith("-") and a.rstrip("/") in ("photos", "images", "imagenet-val"):
            fixed.append(str(ROOT / "samples"))
        elif not a.startswith("-") and (ROOT / a).exists():
            fixed.append(str(ROOT / a))
        else:
            fixed.append(a)
    bare_random = (
        cmd == "spectrum"
        and "--random-init" in args
        and not ({"--model", "-m", "--model-fn", "--hub"} & set(args))
    )
    if cmd == "compare":  # N sets of weights -> the tiny fixture and N - 1 perturbed copies
        count = sum(a in ("--checkpoint", "-c", "--model", "-m") for a in args)
        fixed = _without_option(fixed, "--checkpoint", "-c", "--model", "-m")
        for path in tiny_variants(out.parent / "weights", count):
            fixed += ["--checkpoint", str(path)]
        fixed = _without_option(fixed, "--limit", "--attn-images")
        fixed += ["--limit", "2", "--attn-images", "1"]
    downloads = cmd != "compare" and (
        bare_random
        or "--pretrained" in args
        or (cmd in WEIGHTED and not any(a in ("--checkpoint", "-c", "--random-init") for a in args))
    )
    if downloads:  # released weights -> the tiny fixture (its own architecture)
        fixed = _without_option(fixed, "--model", "-m")
        fixed = [a for a in fixed if a not in ("--pretrained", "--random-init")]
        fixed += ["--checkpoint", str(TINY_CKPT)]
    if cmd in WEIGHTED:  # sized down: the same pipeline at a small input, seconds not minutes
        fixed = _without_option(fixed, "--resolution", "-r") + ["--resolution", str(DOC_RES)]
    if "--out" not in fixed and "-o" not in fixed and cmd != "info":
        fixed += ["--out", str(out)]
    return fixed


def tiny_variants(folder: Path, count: int) -> list[Path]:
    """The tiny fixture, then count - 1 copies with every float tensor scaled by exp(0.05 N(0,1))
    (seeded by position; other weights, same architecture)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    raw = torch.load(TINY_CKPT, weights_only=True)
    paths = [TINY_CKPT]
    for k in range(1, count):
        g = torch.Generator().manual_seed(k)
        noisy = {
            n: v * torch.exp(0.05 * torch.randn(v.shape, generator=g))
            if v.is_floating_point()
            else v
            for n, v in raw["model"].items()
        }
        torch.save({**raw, "model": noisy}, folder / f"tiny_{k}.pth")
        paths.append(folder / f"tiny_{k}.pth")
    return paths


def _without_option(args: list[str], *names: str) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in names:
            skip = True
        else:
            out.append(a)
    return out


EXAMPLES = doc_examples()


def test_docs_have_examples():
    names = {f for f, _, _ in EXAMPLES}
    assert "README.md" in names and len(EXAMPLES) >= 10, names


@pytest.mark.parametrize("doc, line_no, line", EXAMPLES, ids=[f"{d}:{n}" for d, n, _ in EXAMPLES])
def test_doc_example_runs(doc, line_no, line, tmp_path, monkeypatch, unrasterised_figures):
    """Each example runs end to end; its figures are built but not rasterised (conftest)."""
    monkeypatch.chdir(ROOT)
    args = offline_args(line, tmp_path / "out")
    res = hilo(*args)
    assert res.returncode == 0, (
        f"{doc}:{line_no}: {line}\n-> hilo {shlex.join(args)}\n{res.stderr[-2000:]}"
    )
    if "--json" in args:
        strict_json(res.stdout)


def test_readme_names_real_files():
    text = (ROOT / "README.md").read_text()
    for path in re.findall(r"samples/[\w.-]+\.(?:jpg|png)", text):
        assert (ROOT / path).exists(), path


def python_examples() -> list[tuple[str, str]]:
    blocks = []
    for doc in DOCS:
        for i, block in enumerate(re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)):
            blocks.append((f"{doc.name}#{i}", block))
    return blocks


@pytest.mark.parametrize("name, code", python_examples(), ids=[n for n, _ in python_examples()])
def test_doc_python_example_runs(name, code, monkeypatch):
    """Python snippets run too (released weights swapped for a random init: offline)."""
    monkeypatch.chdir(ROOT)
    exec(compile(code.replace("pretrained=True", "pretrained=False"), name, "exec"), {})
