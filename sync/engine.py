"""The sync engine: connector documents through the checksum gate into the store.

For each document: normalise and hash its text; an unchanged hash skips chunking and
embedding entirely. A changed document is chunked and embedded *before* the write
transaction, then its row and chunks are replaced in one transaction (with the scope's cursor
when items arrive in modification order), so a failure at any point leaves the previous version
searchable. The same transaction writes a ``source_change`` intent to the outbox; only after the
commit is the listener (the answer cache and its notices) told to apply it.
"""

from __future__ import annotations

import hashlib
import logging
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal, Protocol

import psycopg

from core.errors import KbError
from store import artifacts, outbox, sync_state
from store.artifacts import ArtifactRow, ChunkRow
from store.db import Connection, Database
from store.embedders import Embedder
from store.outbox import SourceChange
from store.search import refresh_term_stats, sentence_units
from store.sync_state import RunCounts
from sync.chunking import Chunker
from sync.source import FetchFailure, SourceConnector, SourceDocument

log = logging.getLogger(__name__)

Outcome = Literal["synced", "unchanged", "deleted", "skipped", "failed"]
_RUN_LOCK = 0x6B62_7379  # "kbsy": one active runner per source, across processes


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
class RunReport:
    run_id: int | None
    source: str
    scopes: tuple[str, ...]
    mode: str
    status: Literal["ok", "partial", "failed", "busy"]
    counts: RunCounts
    errors: tuple[str, ...]
    seconds: float

    def summary(self) -> str:
        c = self.counts
        return (
            f"{self.source}: synced {c.synced}, unchanged {c.unchanged}, deleted {c.deleted}, "
            f"skipped {c.skipped}, failed {c.failed} ({self.seconds:.1f} s)"
        )


@dataclass
class _Tally:
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(RunCounts.__dataclass_fields__, 0)
    )
    errors: list[str] = field(default_factory=list)
    listing_failed: bool = False

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome] += 1

    def frozen(self) -> RunCounts:
        return RunCounts(**self.counts)


Progress = Callable[[str, RunCounts], None]


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


def embedding_text(title: str, heading: str, text: str) -> str:
    """What is embedded for a chunk: the page title (and section) give it context."""
    return f"{title}\n{heading}\n{text}" if heading and heading != title else f"{title}\n{text}"


class SyncEngine:
    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        chunker: Chunker,
        listener: ChangeListener | None = None,
        *,
        include_restricted: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._embedder = embedder
        self._chunker = chunker
        self._listener = listener or NoListener()
        self._include_restricted = include_restricted
        self._clock = clock

    def run(
        self,
        connector: SourceConnector,
        *,
        scopes: Iterable[str] | None = None,
        full: bool = False,
        trigger: str = "manual",
        progress: Progress | None = None,
    ) -> RunReport:
        """One sync run of a source: incremental from each scope's cursor, or full (with
        deletions). Returns status "busy" without doing anything when another process is
        already running this source."""
        source = connector.source
        chosen = tuple(scopes) if scopes else connector.scopes()
        mode = "full" if full else "incremental"
        started = time.monotonic()
        with self._db.connection() as lock_conn:
            lock_conn.autocommit = True
            got = lock_conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s)) AS ok", (_RUN_LOCK, source)
            ).fetchone()
            if not got or not got["ok"]:
                return RunReport(
                    None,
                    source,
                    chosen,
                    mode,
                    "busy",
                    RunCounts(),
                    (f"a {source} sync is already running",),
                    0.0,
                )
            try:
                return self._locked_run(connector, chosen, full, trigger, progress, started)
            finally:
                lock_conn.execute(
                    "SELECT pg_advisory_unlock(%s, hashtext(%s))", (_RUN_LOCK, source)
                )
                lock_conn.autocommit = False

    def _locked_run(
        self,
        connector: SourceConnector,
        scopes: tuple[str, ...],
        full: bool,
        trigger: str,
        progress: Progress | None,
        started: float,
    ) -> RunReport:
        source = connector.source
        mode = "full" if full else "incremental"
        with self._db.connection() as conn:
            run_id = sync_state.start_run(conn, source, list(scopes), mode, trigger)
        tally = _Tally()
        for scope in scopes:
            self._run_scope(connector, scope, full, tally, progress)
        counts = tally.frozen()
        status: Literal["ok", "partial", "failed"] = (
            "failed" if tally.listing_failed else "partial" if counts.failed else "ok"
        )
        with self._db.connection() as conn:
            if counts.synced or counts.deleted:
                refresh_term_stats(conn)
            sync_state.finish_run(conn, run_id, status, counts, tally.errors)
            if status == "ok":
                sync_state.record_success(conn, source, run_id)
            else:
                sync_state.record_failure(conn, source, "; ".join(tally.errors[:3]), run_id)
        report = RunReport(
            run_id,
            source,
            scopes,
            mode,
            status,
            counts,
            tuple(tally.errors),
            time.monotonic() - started,
        )
        log.info("sync run %s finished %s: %s", run_id, status, report.summary())
        return report

    def _run_scope(
        self,
        connector: SourceConnector,
        scope: str,
        full: bool,
        tally: _Tally,
        progress: Progress | None,
    ) -> None:
        source = connector.source
        scope_started = self._clock()
        with self._db.connection() as conn:
            since = None if full else sync_state.get_cursor(conn, source, scope)
        ordered = since is not None
        clean = True
        try:
            for item in connector.changed(scope, since):
                if isinstance(item, FetchFailure):
                    outcome: Outcome = "failed"
                    tally.errors.append(f"{item.artifact_id}: {item.error}")
                else:
                    cursor = item.updated_at if ordered and clean else None
                    outcome = self._process(
                        item, cursor_scope=(source, scope), cursor=cursor, errors=tally.errors
                    )
                clean = clean and outcome != "failed"
                tally.add(outcome)
                if progress:
                    progress(scope, tally.frozen())
            if full:
                listing = connector.list_ids(scope)
                with self._db.connection() as conn:
                    gone = artifacts.live_ids(conn, source, scope) - listing.artifact_ids
                for artifact_id in sorted(gone):
                    tally.add(self._delete(artifact_id))
        except KbError as exc:
            tally.listing_failed = True
            tally.errors.append(f"{source} {scope}: {exc}")
            log.warning("sync of %s %s stopped: %s", source, scope, exc)
            return
        if clean:
            with self._db.connection() as conn:
                sync_state.advance_cursor(conn, source, scope, scope_started)

    def sync_document(self, doc: SourceDocument | None, artifact_id: str) -> Outcome:
        """Run one fetched artifact (or its absence) through the gate: webhooks use this."""
        if doc is None:
            return self._delete(artifact_id)
        return self._process(doc, cursor_scope=None, cursor=None, errors=[])

    def _process(
        self,
        doc: SourceDocument,
        *,
        cursor_scope: tuple[str, str] | None,
        cursor: datetime | None,
        errors: list[str],
    ) -> Outcome:
        if doc.restricted and not self._include_restricted:
            # A page that became restricted must stop being searchable.
            return "deleted" if self._delete(doc.artifact_id) == "deleted" else "skipped"
        doc = replace(doc, text=normalise_text(doc.text), title=doc.title.strip())
        digest = content_hash(doc.title, doc.text)
        row = ArtifactRow(
            doc.artifact_id,
            doc.source,
            doc.scope_key,
            doc.title,
            doc.url,
            doc.version,
            digest,
            doc.labels,
            doc.text,
            doc.updated_at,
        )
        try:
            with self._db.connection() as conn:
                state = artifacts.states(conn, [doc.artifact_id]).get(doc.artifact_id)
            if state is not None and not state.deleted and state.content_hash == digest:
                with self._db.connection() as conn:
                    if state.version != doc.version:
                        artifacts.touch_version(conn, row)
                        _record_change(
                            conn, SourceChange(doc.artifact_id, "updated", digest, doc.version)
                        )
                    if cursor_scope and cursor:
                        sync_state.advance_cursor(conn, *cursor_scope, cursor)
                if state.version != doc.version:
                    # Same text, new version: the cache records it and dirties nothing.
                    self._notify_changed(doc.artifact_id, digest, doc.version)
                return "unchanged"
            chunks = [
                ChunkRow(c.ord, c.heading, c.text, c.token_count, sentence_units(c.text))
                for c in self._chunker.split(doc.text or doc.title)
            ]
            # One call: the chunks, then every chunk's sentences (retrieval scores both).
            vectors = self._embedder.embed(
                [embedding_text(doc.title, c.heading, c.text) for c in chunks]
                + [s for c in chunks for s in c.sentences]
            )
            with self._db.connection() as conn:
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (doc.artifact_id,))
                current = artifacts.states(conn, [doc.artifact_id]).get(doc.artifact_id)
                if current is not None and not current.deleted and current.content_hash == digest:
                    return "unchanged"  # a concurrent writer (webhook or run) got here first
                artifacts.replace(conn, row, chunks, vectors[: len(chunks)], vectors[len(chunks) :])
                if state is not None and not state.deleted:
                    _record_change(
                        conn, SourceChange(doc.artifact_id, "updated", digest, doc.version)
                    )
                if cursor_scope and cursor:
                    sync_state.advance_cursor(conn, *cursor_scope, cursor)
        except (KbError, psycopg.Error) as exc:
            errors.append(f"{doc.artifact_id}: {exc}")
            log.warning("could not sync %s: %s", doc.artifact_id, exc)
            return "failed"
        if state is not None and not state.deleted:
            # A page indexed for the first time (or restored) cannot be cited by any answer yet.
            self._notify_changed(doc.artifact_id, digest, doc.version)
        return "synced"

    def _delete(self, artifact_id: str) -> Outcome:
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
