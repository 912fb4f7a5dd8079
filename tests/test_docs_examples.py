"""Every `hilo ...` line in README.md and docs/*.md runs as written, so examples cannot drift.

Offline substitutions only: released weights become the tiny fixture (`--pretrained`,
`--model NAME` without weights) or a random init; checkpoint paths that are placeholders
(`my_litv2.pth`) become the tiny fixture; placeholder image folders (`photos/`) become
`samples/`; `--out` goes to a temporary folder. Slow options are kept but sized down
(`--limit`, small resolutions) only where the line asks for a heavy run.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import TINY_CKPT, hilo

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
WEIGHTED = {"spectrum", "attn-map", "compare"}  # commands that default to released weights


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
        if a == "--pretrained":
            fixed.append("--random-init")
        elif a in ("--checkpoint", "-c") and not (ROOT / args[i + 1]).exists():
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
    has_weights = any(a in ("--checkpoint", "-c", "--random-init") for a in fixed)
    if cmd in WEIGHTED and not has_weights:
        fixed.append("--random-init")
    if "--out" not in fixed and "-o" not in fixed and cmd != "info":
        fixed += ["--out", str(out)]
    return fixed


EXAMPLES = doc_examples()


def test_docs_have_examples():
    names = {f for f, _, _ in EXAMPLES}
    assert "README.md" in names and len(EXAMPLES) >= 10, names


@pytest.mark.parametrize("doc, line_no, line", EXAMPLES,
                         ids=[f"{d}:{n}" for d, n, _ in EXAMPLES])
def test_doc_example_runs(doc, line_no, line, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = offline_args(line, tmp_path / "out")
    res = hilo(*args)
    assert res.returncode == 0, f"{doc}:{line_no}: {line}\n-> hilo {shlex.join(args)}\n" \
                                f"{res.stderr[-2000:]}"
    if "--json" in args:
        import json

        json.loads(res.stdout, parse_constant=lambda t: (_ for _ in ()).throw(ValueError(t)))


def test_readme_names_real_files():
    text = (ROOT / "README.md").read_text()
    for path in re.findall(r"samples/[\w.-]+\.(?:jpg|png)", text):
        assert (ROOT / path).exists(), path
