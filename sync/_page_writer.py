"""The per-page write step: a prepared page (or its absence) into the store, with its
outbox intent in the same transaction, and the listener told after the commit (split from
sync/engine.py, which prepares and embeds the pages this writes)."""

from __future__ import annotations

import hashlib
import logging
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import psycopg

from core.errors import KbError
from store import artifacts, outbox, sync_state
from store.artifacts import ArtifactRow, ArtifactState, ChunkRow
from store.db import Connection, Database
from store.outbox import SourceChange
from sync._run_bookkeeping import Outcome
from sync.embedding import PageVectors
from sync.source import SourceDocument

log = logging.getLogger("sync.engine")  # the engine's log, as before the split


class ChangeListener(Protocol):
    """Told about every committed change; the answer cache and notices hang off this."""

    def source_changed(self, artifact_id: str, *, content_hash: str, version: str) -> None: ...

    def source_deleted(self, artifact_id: str) -> None: ...


class NoListener:
    def source_changed(self, artifact_id: str, *, content_hash: str, version: str) -> None:
        return None

    def source_deleted(self, artifact_id: str) -> None:
        return None


@dataclass(frozen=True)
class PageWork:
    """A fetched page made ready on the prefetch thread: its row (None when it must leave the
    index), its stored state, and, when its text changed, its chunks."""

    doc: SourceDocument
    row: ArtifactRow | None
    state: ArtifactState | None
    chunks: tuple[ChunkRow, ...]

    @property
    def needs_embedding(self) -> bool:
        if self.row is None:
            return False
        s = self.state
        return s is None or s.deleted or s.content_hash != self.row.content_hash


def normalise_text(text: str) -> str:
    """NFC, unified newlines, no trailing spaces, at most one blank line in a row."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def content_hash(title: str, text: str) -> str:
    return hashlib.sha256(f"{title}\n{text}".encode()).hexdigest()


class PageWriter:
    """Writes pages for one engine: ``apply`` a prepared page, ``delete`` one that left."""

    def __init__(self, db: Database, listener: ChangeListener) -> None:
        self._db = db
        self._listener = listener

    def apply(
        self,
        work: PageWork,
        vectors: PageVectors | KbError | None,
        *,
        cursor_scope: tuple[str, str] | None,
        cursor: datetime | None,
        errors: list[str],
    ) -> Outcome:
        """One prepared page into the store. An unchanged page's cursor is the caller's to
        record; a changed page commits its cursor with its chunks."""
        doc, row, state = work.doc, work.row, work.state
        if row is None:
            # A page that became restricted must stop being searchable.
            return "deleted" if self.delete(doc.artifact_id) == "deleted" else "skipped"
        try:
            if not work.needs_embedding:
                assert state is not None
                if state.version != doc.version:
                    with self._db.connection() as conn:
                        artifacts.touch_version(conn, row)
                        change = SourceChange(
                            doc.artifact_id, "updated", row.content_hash, doc.version
                        )
                        _record_change(conn, change)
                    # Same text, new version: the cache records it and dirties nothing.
                    self._notify_changed(doc.artifact_id, row.content_hash, doc.version)
                return "unchanged"
            if isinstance(vectors, KbError):
                raise vectors
            assert vectors is not None
            with self._db.connection() as conn:
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (doc.artifact_id,))
                current = artifacts.states(conn, [doc.artifact_id]).get(doc.artifact_id)
                if (
                    current is not None
                    and not current.deleted
                    and current.content_hash == row.content_hash
                ):
                    return "unchanged"  # a concurrent writer (webhook or run) got here first
                artifacts.replace(
                    conn, row, vectors.chunks, vectors.chunk_vectors, vectors.sentence_vectors
                )
                if state is not None and not state.deleted:
                    change = SourceChange(doc.artifact_id, "updated", row.content_hash, doc.version)
                    _record_change(conn, change)
                if cursor_scope and cursor:
                    sync_state.advance_cursor(conn, *cursor_scope, cursor)
        except (KbError, psycopg.Error) as exc:
            errors.append(f"{doc.artifact_id}: {exc}")
            log.warning("could not sync %s: %s", doc.artifact_id, exc)
            return "failed"
        if state is not None and not state.deleted:
            # A page indexed for the first time (or restored) cannot be cited by any answer yet.
            self._notify_changed(doc.artifact_id, row.content_hash, doc.version)
        return "synced"

    def delete(self, artifact_id: str) -> Outcome:
        with self._db.connection() as conn:
            removed = artifacts.tombstone(conn, artifact_id)
            if removed:
                _record_change(conn, SourceChange(artifact_id, "deleted"))
        if not removed:
            return "skipped"
        try:
            self._listener.source_deleted(artifact_id)
        except Exception:  # the cache re-validates on read; never lose the sync over it
            log.exception("the answer cache could not be told %s was deleted", artifact_id)
        return "deleted"

    def _notify_changed(self, artifact_id: str, digest: str, version: str) -> None:
        try:
            self._listener.source_changed(artifact_id, content_hash=digest, version=version)
        except Exception:  # the cache re-validates on read; never lose the sync over it
            log.exception("the answer cache could not be told %s changed", artifact_id)


def _record_change(conn: Connection, change: SourceChange) -> None:
    """The intent to invalidate and notify, committed with the change that causes it; the
    listener applies it after the commit, or a later pass after a crash (docs/ARCHITECTURE.md,
    "Outbox")."""
    outbox.enqueue(conn, change)
