"""Code cites the contracts in the repository (docs/ARCHITECTURE.md), by sections that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "store", "sync", "bot", "kb")
CITATION = re.compile(r'ARCHITECTURE\.md,\s+"([^"]+)"')


def _sources() -> list[Path]:
    return [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]


def _headings() -> list[str]:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    return [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")]


def test_every_cited_section_of_the_architecture_page_exists() -> None:
    headings = _headings()
    missing = [
        f"{path.relative_to(ROOT)} cites {section!r}"
        for path in _sources()
        for section in (" ".join(s.split()) for s in CITATION.findall(path.read_text("utf-8")))
        if not any(h == section or h.startswith(f"{section}:") for h in headings)
    ]
    assert missing == []


def test_no_code_cites_a_design_file_outside_the_repository() -> None:
    citing = [
        str(path.relative_to(ROOT))
        for path in _sources()
        if "DESIGN.md" in path.read_text(encoding="utf-8")
    ]
    assert citing == []
