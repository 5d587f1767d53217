"""docs/pipelines.md: its generated regions match the code, and everything it links exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks import make_pipeline_docs as docs
from darkroom.apps.pipeline import OPERATORS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGE = DOCS / "pipelines.md"
LINK = re.compile(r"(!?)\[[^\]]*\]\(([^)\s]+)\)")
REGENERATE = "run `python benchmarks/make_pipeline_docs.py --tables` (or without --tables for pictures)"


def page() -> str:
    return PAGE.read_text(encoding="utf-8")


def links(text: str) -> list[tuple[bool, str]]:
    """(is a picture, target) for every markdown link outside code blocks."""
    prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    return [(bang == "!", target) for bang, target in LINK.findall(prose)]


def anchors(md: Path) -> set[str]:
    """GitHub's anchors for the headings of ``md``."""
    text = re.sub(r"```.*?```", "", md.read_text(encoding="utf-8"), flags=re.DOTALL)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}


def test_generated_regions_are_fresh():
    text = page()
    assert docs.render_doc(text) == text, REGENERATE


def test_every_operator_has_a_section_with_its_table():
    text = page()
    for op in OPERATORS:
        assert f"<!-- pipelines:op-{op}:start -->" in text, f"document the {op!r} operator; {REGENERATE}"
        assert f"### `{op}`" in text, f"docs/pipelines.md needs a '### `{op}`' section"


def test_every_linked_picture_exists():
    pictures = [target for is_picture, target in links(page()) if is_picture]
    assert pictures, "docs/pipelines.md links no picture"
    missing = [t for t in pictures if not (DOCS / t).is_file()]
    assert not missing, f"missing pictures {missing}: {REGENERATE}"


def test_every_picture_is_linked_and_small():
    linked = {(DOCS / t).resolve() for is_picture, t in links(page()) if is_picture}
    files = sorted(docs.IMG_DIR.glob("*"))
    orphans = [f.name for f in files if f.resolve() not in linked]
    assert not orphans, f"pictures no page links (delete them): {orphans}"
    sizes = {f.name: f.stat().st_size for f in files}
    assert all(size <= 64 * 1024 for size in sizes.values()), sizes
    assert sum(sizes.values()) <= 600 * 1024, sizes


def test_every_showcase_has_a_picture():
    missing = [s.name for s in docs.SHOWCASES if not (docs.IMG_DIR / s.file).is_file()]
    assert not missing, f"no picture for {missing}: run `python benchmarks/make_pipeline_docs.py`"


@pytest.mark.parametrize("target", sorted({t for is_picture, t in links(page()) if not is_picture}))
def test_links_resolve(target: str):
    if target.startswith(("http://", "https://")):
        return
    path, _, anchor = target.partition("#")
    md = (DOCS / path).resolve() if path else PAGE
    assert md.is_file(), f"{target}: no file {md}"
    if anchor and md.suffix == ".md":
        assert anchor in anchors(md), f"{target}: no heading with anchor #{anchor} in {md.name}"


def test_error_examples_are_refused():
    for title, request in docs.ERROR_EXAMPLES:
        assert docs.api_error(request), f"{title}: the example request is accepted"
