"""The repository's own documents: README.md and docs/*.md stand alone (every relative link
resolves inside the clone), and the folders their examples write are ignored by git."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from linkhoi.infer.cli import DEFAULT_OUT as DETECT_DEFAULT_OUT

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# `--out demo-quick`, `--output out/hico.json`, `generate_world("data/synthetic", ...)`
_OUTPUT_ARG = re.compile(r"""(?:--out|--output)[ =]([\w./-]+)|generate_world\("([^"]+)\"""")


def _example_outputs() -> set[str]:
    """Top-level folders that the documented commands write, relative to the clone."""
    found = {DETECT_DEFAULT_OUT, "linkhoi-demo", "runs"}  # defaults of detect, demo, train
    for doc in DOCS:
        for match in _OUTPUT_ARG.finditer(doc.read_text(encoding="utf-8")):
            path = match.group(1) or match.group(2)
            if path.startswith("/") or path.split("/")[0].isupper():  # absolute or DIR/OUT.json
                continue
            first = path.split("/")[0]
            if "/" in path or "." not in first:  # out/hico.json -> out; a bare name is a folder
                found.add(first)
    return found


def test_example_output_folders_are_ignored_by_git() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    outputs = sorted(_example_outputs())
    assert {"demo-quick", "det-out", "out"} <= set(outputs)  # the parser sees README's examples
    proc = subprocess.run(
        ["git", "check-ignore", "--no-index", *(f"{name}/file.txt" for name in outputs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    ignored = {line.split("/")[0] for line in proc.stdout.splitlines()}
    assert set(outputs) - ignored == set(), "add these example output folders to .gitignore"
