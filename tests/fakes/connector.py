"""An in-memory SourceConnector: the engine's seam, faked for engine tests.

End-to-end tests use the fake Atlassian HTTP servers instead; this one lets engine tests
control exactly what a source holds and when listing fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from core.errors import RemoteError
from sync.source import FetchFailure, ScopeListing, SourceDocument, SourceName


class MemoryConnector:
    def __init__(self, source: SourceName = "confluence", scopes: tuple[str, ...] = ("ENG",)):
        self._source: SourceName = source
        self._scopes = scopes
        self.docs: dict[str, SourceDocument] = {}
        self.broken: set[str] = set()  # ids yielded as FetchFailure
        self.fail_listing = False
        self.since_seen: list[datetime | None] = []
        self.clock = datetime(2026, 11, 1, tzinfo=UTC)

    @property
    def source(self) -> SourceName:
        return self._source

    def scopes(self) -> tuple[str, ...]:
        return self._scopes

    def put(
        self,
        key: str,
        title: str,
        text: str,
        *,
        scope: str = "ENG",
        version: str | None = None,
        restricted: bool = False,
    ) -> SourceDocument:
        artifact_id = f"{self._source}:{key}"
        old = self.docs.get(artifact_id)
        self.clock += timedelta(minutes=1)
        doc = SourceDocument(
            artifact_id=artifact_id,
            source=self._source,
            scope_key=scope,
            title=title,
            url=f"https://wiki.example/{key}",
            text=text,
            updated_at=self.clock,
            version=version or str(int(old.version) + 1 if old else 1),
            restricted=restricted,
        )
        self.docs[artifact_id] = doc
        return doc

    def touch(self, key: str) -> None:
        """A metadata-only edit: the version moves, the text does not."""
        doc = self.docs[f"{self._source}:{key}"]
        self.clock += timedelta(minutes=1)
        self.docs[doc.artifact_id] = replace(
            doc, version=str(int(doc.version) + 1), updated_at=self.clock
        )

    def changed(
        self, scope_key: str, since: datetime | None
    ) -> Iterator[SourceDocument | FetchFailure]:
        self.since_seen.append(since)
        if self.fail_listing:
            raise RemoteError("fake source is down")
        docs = sorted(
            (d for d in self.docs.values() if d.scope_key == scope_key or scope_key == "*"),
            key=lambda d: d.updated_at or self.clock,
        )
        for doc in docs:
            if since is not None and doc.updated_at is not None and doc.updated_at < since:
                continue
            if doc.artifact_id in self.broken:
                yield FetchFailure(doc.artifact_id, "conversion failed")
            else:
                yield doc

    def list_ids(self, scope_key: str) -> ScopeListing:
        if self.fail_listing:
            raise RemoteError("fake source is down")
        return ScopeListing(
            scope_key,
            frozenset(d.artifact_id for d in self.docs.values() if d.scope_key == scope_key),
        )

    def fetch(self, artifact_id: str) -> SourceDocument | None:
        return self.docs.get(artifact_id)
