"""The packages' imports point down only (docs/ARCHITECTURE.md, "Layers").

    kb      the composition root: may import anything
    bot     chat platforms and the answer flow: core, store
    sync    sources, the sync engine, webhooks: core, store
    store   Postgres, search, the answer cache, embedders: core
    core    errors, HTTP policy, identities: nothing of the project

``bot`` and ``sync`` never import each other; they meet only in the store (the outbox).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("core", "store", "sync", "bot", "kb")
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "store": {"core", "store"},
    "sync": {"core", "store", "sync"},
    "bot": {"core", "store", "bot"},
    "kb": set(PROJECT),
}


def _imported_packages(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0]))
    return [(line, top) for line, top in found if top in PROJECT]


def _violations(package: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, top in _imported_packages(path):
            if top not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {top}")
    return bad


@pytest.mark.parametrize("package", [p for p in PROJECT if p != "kb"])
def test_a_lower_package_never_imports_one_above_it(package: str) -> None:
    assert _violations(package) == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    # The rule must be able to fail: an upward import written to a file is found.
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom kb.settings import Settings\nfrom bot import flow\n")
    assert [top for _, top in _imported_packages(module)] == ["kb", "bot"]
