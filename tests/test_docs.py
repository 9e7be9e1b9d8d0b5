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


_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def _prose(text: str) -> str:
    """The document without its fenced code blocks (console output is not a link)."""
    return _FENCE.sub("", text)


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens,
    repeated headings numbered -1, -2, ..."""
    seen: dict[str, int] = {}
    out = set()
    for line in _prose(path.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links(doc: Path) -> list[str]:
    text = _prose(doc.read_text(encoding="utf-8"))
    return [m.group(1) or m.group(2) for m in _LINK.finditer(text)]


def test_every_relative_link_resolves_inside_the_repository() -> None:
    problems = []
    checked = 0
    for doc in DOCS:
        for target in _links(doc):
            if re.match(r"^(https?|mailto):", target):
                continue  # a web page, not a file of the clone
            checked += 1
            where, _, anchor = target.partition("#")
            if where.startswith("/") or re.match(r"^\w+:", where):
                problems.append(f"{doc.name}: {target} is not a relative link")
                continue
            path = (doc.parent / where).resolve() if where else doc
            if path != ROOT and ROOT not in path.parents:
                problems.append(f"{doc.name}: {target} leaves the repository")
            elif not path.exists():
                problems.append(f"{doc.name}: {target} points to a missing file")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                problems.append(f"{doc.name}: {target} names no heading of {path.name}")
    assert checked > 20  # the links were found
    assert problems == []


def test_docs_do_not_refer_to_files_outside_the_repository() -> None:
    # Plain mentions too (`shared/docs/method.md`), not only links: a clone has no such file.
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for needle in ("shared/docs", "../shared", "eval-hico.md", "eval-vcoco-swig.md"):
            assert needle not in text, f"{doc.name} mentions {needle}"


def test_anchor_rule_matches_github() -> None:
    doc = ROOT / "docs" / "internals.md"
    assert "triplet-files-linkhoievaltriplets" in _anchors(doc)  # `code` and ':' dropped
    assert "7-optimisation-and-augmentation-ours" in _anchors(ROOT / "docs" / "method.md")
