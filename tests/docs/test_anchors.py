"""Every ``docs/<page>.md#anchor`` the code and tests cite names a heading of that page.

Code comments cite design decisions by anchor (docs/architecture.md#...);
MkDocs checks the links between pages, not these. Anchors are computed as the
site computes them (Python-Markdown's ``toc`` slugify on the heading's text).
"""

from __future__ import annotations

import re
from pathlib import Path

from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parents[2]
CITED = re.compile(r"docs/([\w-]+)\.md#([\w-]+)")
SOURCES = ["motorpatch", "tests", "bench", "compat", "examples"]


def _anchors(page: str) -> set[str]:
    text = (ROOT / "docs" / f"{page}.md").read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # no headings inside code blocks
    headings = re.findall(r"^#{1,6} +(.+?) *$", text, flags=re.M)
    return {slugify(re.sub(r"[`*]", "", h), "-") for h in headings}


def _citations() -> list[tuple[str, str, str]]:
    paths = [ROOT / "setup.py"]
    for top in SOURCES:
        paths += sorted((ROOT / top).rglob("*.py"))
    return [
        (str(path.relative_to(ROOT)), page, anchor)
        for path in paths
        for page, anchor in CITED.findall(path.read_text(encoding="utf-8"))
    ]


def test_every_cited_anchor_is_a_heading() -> None:
    citations = _citations()
    assert len(citations) >= 5, "the pattern no longer finds the code's citations"
    broken = [f"{where}: docs/{page}.md#{anchor}" for where, page, anchor in citations
              if anchor not in _anchors(page)]
    assert broken == []


def test_anchors_are_computed_as_the_site_computes_them() -> None:
    anchors = _anchors("architecture")
    assert "uninstall-always-finishes" in anchors  # from "### `uninstall()` always finishes"
    assert "the-layout" in anchors
