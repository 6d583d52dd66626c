"""The bundled sample knowledge base (``kb/sample_kb``) as two source connectors.

The files are Confluence REST v1 content objects and Jira REST v2 issues, written for the
demo; they go through the real parsers of :mod:`sync.confluence` and :mod:`sync.jira`, then
the real sync engine, exactly as fetched pages would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from importlib import resources
from importlib.abc import Traversable
from typing import Any

from store.embedders.shipped import ShippedVectors
from sync._confluence_parse import parse_v1_content
from sync._jira_parse import parse_issue
from sync.source import FetchFailure, ScopeListing, SourceDocument, SourceName

# The sample's vectors, made by `python -m kb.sample_vectors` (docs/BENCHMARKS.md,
# "First `kb demo`"): used only where the model file and each text match.
VECTORS_MANIFEST = "vectors.json"
VECTORS_ROWS = "vectors.npy"

WIKI_BASE = "https://northwind.example/wiki"
JIRA_BASE = "https://northwind.example"


def _root() -> Traversable:
    return resources.files("kb") / "sample_kb"


def _read(folder: Traversable) -> list[dict[str, Any]]:
    return [
        json.loads(entry.read_text(encoding="utf-8"))
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".json")
    ]


class SampleConnector:
    """One source (Confluence or Jira) of the sample knowledge base."""

    def __init__(self, source: SourceName) -> None:
        self._source: SourceName = source
        self._docs: dict[str, SourceDocument] = {}
        if source == "confluence":
            for raw in _read(_root() / "confluence" / "pages"):
                doc = parse_v1_content(raw, web_base=WIKI_BASE)
                self._docs[doc.artifact_id] = doc
        else:
            for raw in _read(_root() / "jira" / "issues"):
                doc = parse_issue(raw, base_url=JIRA_BASE)
                self._docs[doc.artifact_id] = doc

    @property
    def source(self) -> SourceName:
        return self._source

    def scopes(self) -> tuple[str, ...]:
        return tuple(sorted({d.scope_key for d in self._docs.values()}))

    def changed(
        self, scope_key: str, since: datetime | None
    ) -> Iterator[SourceDocument | FetchFailure]:
        for doc in sorted(self._docs.values(), key=lambda d: d.artifact_id):
            if doc.scope_key == scope_key:
                yield doc

    def list_ids(self, scope_key: str) -> ScopeListing:
        return ScopeListing(
            scope_key,
            frozenset(d.artifact_id for d in self._docs.values() if d.scope_key == scope_key),
        )

    def fetch(self, artifact_id: str) -> SourceDocument | None:
        return self._docs.get(artifact_id)

    def titles(self) -> dict[str, str]:
        return {d.artifact_id: d.title for d in self._docs.values()}


def sample_connectors() -> list[SampleConnector]:
    return [SampleConnector("confluence"), SampleConnector("jira")]


def sample_questions() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((_root() / "questions.json").read_text("utf-8"))
    return data


def sample_vectors() -> ShippedVectors | None:
    """The vectors shipped with the sample, or None if they are not there."""
    manifest, rows = _root() / VECTORS_MANIFEST, _root() / VECTORS_ROWS
    if not (manifest.is_file() and rows.is_file()):
        return None
    return ShippedVectors.load(manifest.read_text("utf-8"), rows.read_bytes())
