"""The sync engine: connector documents through the checksum gate into the store.

For each document: normalise and hash its text; an unchanged hash skips chunking and
embedding entirely. A changed document is chunked and embedded *before* the write
transaction, then its row and chunks are replaced in one transaction (with the scope's cursor
when items arrive in modification order), so a failure at any point leaves the previous version
searchable. The same transaction writes a ``source_change`` intent to the outbox; only after the
commit is the listener (the answer cache and its notices) told to apply it.

A run is a pipeline: a prefetch thread lists, fetches, normalises, reads the stored states of
a group of pages in one query and chunks what changed; this thread embeds all of a group's
texts in one call (the embedder batches them by length, sentences with sentences and chunks
with chunks) and commits the group's pages in order, each as its vectors arrive.

The write step of one page is sync/_page_writer.py; a run's tallies and its report are
sync/_run_bookkeeping.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Literal

import psycopg

from core.errors import KbError
from store import artifacts, sync_state
from store.artifacts import ArtifactRow, ChunkRow
from store.db import Database
from store.embedders import Embedder
from store.search import refresh_term_stats
from store.sync_state import RunCounts
from sync._page_writer import ChangeListener, NoListener, PageWriter, content_hash, normalise_text
from sync._page_writer import PageWork as _Work
from sync._prefetch import Prefetcher
from sync._run_bookkeeping import Outcome, Progress, RunReport
from sync._run_bookkeeping import ScopeRun as _ScopeRun
from sync._run_bookkeeping import Tally as _Tally
from sync.chunking import Chunker, sentence_units
from sync.embedding import PageText, PageVectors, SentenceSignal, embed_pages
from sync.source import FetchFailure, SourceConnector, SourceDocument

__all__ = ["ChangeListener", "Item", "NoListener", "Outcome", "RunReport", "SyncEngine"]

log = logging.getLogger(__name__)

_RUN_LOCK = 0x6B62_7379  # "kbsy": one active runner per source, across processes
Item = SourceDocument | FetchFailure


class SyncEngine:
    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        chunker: Chunker,
        listener: ChangeListener | None = None,
        *,
        include_restricted: bool = False,
        sentence_signal: SentenceSignal = "pooled",
        group_pages: int = 32,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._embedder = embedder
        self._chunker = chunker
        self._listener = listener or NoListener()
        self._writer = PageWriter(db, self._listener)
        self._include_restricted = include_restricted
        self._sentence_signal = sentence_signal
        self._group_pages = group_pages
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
        run = _ScopeRun((source, scope), ordered=since is not None, tally=tally)
        try:
            prefetch = Prefetcher(
                connector.changed(scope, since), self._prepare, group_size=self._group_pages
            )
            with prefetch as groups:
                for group in groups:
                    self._run_group(group, run, progress)
            if full:
                listing = connector.list_ids(scope)
                with self._db.connection() as conn:
                    gone = artifacts.live_ids(conn, source, scope) - listing.artifact_ids
                for artifact_id in sorted(gone):
                    tally.add(self._writer.delete(artifact_id))
        except KbError as exc:
            tally.listing_failed = True
            tally.errors.append(f"{source} {scope}: {exc}")
            log.warning("sync of %s %s stopped: %s", source, scope, exc)
            return
        if run.clean:
            with self._db.connection() as conn:
                sync_state.advance_cursor(conn, source, scope, scope_started)

    def indexed(self, source: str, scopes: Iterable[str]) -> int:
        """How many live artifacts the store holds for these scopes (a progress estimate)."""
        with self._db.connection() as conn:
            return sum(len(artifacts.live_ids(conn, source, scope)) for scope in scopes)

    def sync_document(self, doc: SourceDocument | None, artifact_id: str) -> Outcome:
        """Run one fetched artifact (or its absence) through the gate: webhooks use this."""
        if doc is None:
            return self._writer.delete(artifact_id)
        (work,) = self._prepare([doc])
        if isinstance(work, FetchFailure):
            log.warning("could not sync %s: %s", doc.artifact_id, work.error)
            return "failed"
        (vectors,) = self._embed([work]) if work.needs_embedding else (None,)
        return self._writer.apply(work, vectors, cursor_scope=None, cursor=None, errors=[])

    def _prepare(self, items: list[Item]) -> list[_Work | FetchFailure]:
        """Normalise, hash, read the stored states of the whole group in one query, and chunk
        what changed. Runs on the prefetch thread."""
        docs = [
            replace(i, text=normalise_text(i.text), title=i.title.strip())
            for i in items
            if isinstance(i, SourceDocument)
        ]
        try:
            with self._db.connection() as conn:
                known = artifacts.states(conn, [d.artifact_id for d in docs])
        except psycopg.Error as exc:
            return [FetchFailure(i.artifact_id, f"reading its stored state: {exc}") for i in items]
        prepared = iter(docs)
        out: list[_Work | FetchFailure] = []
        for item in items:
            if isinstance(item, FetchFailure):
                out.append(item)
                continue
            doc = next(prepared)
            if doc.restricted and not self._include_restricted:
                out.append(_Work(doc, None, None, ()))
                continue
            row = ArtifactRow(
                doc.artifact_id,
                doc.source,
                doc.scope_key,
                doc.title,
                doc.url,
                doc.version,
                content_hash(doc.title, doc.text),
                doc.labels,
                doc.text,
                doc.updated_at,
            )
            state = known.get(doc.artifact_id)
            work = _Work(doc, row, state, ())
            if work.needs_embedding:
                chunks = tuple(
                    ChunkRow(
                        c.ord,
                        c.heading,
                        c.text,
                        c.token_count,
                        sentence_units(c.text) if self._sentence_signal != "none" else (),
                    )
                    for c in self._chunker.split(doc.text or doc.title)
                )
                work = replace(work, chunks=chunks)
            out.append(work)
        return out

    def _run_group(
        self, group: list[_Work | FetchFailure], run: _ScopeRun, progress: Progress | None
    ) -> None:
        """Embed every changed page of the group in one call (the embedder sorts all their
        texts by length), then commit the pages in order, each as its own transaction."""
        todo = [w for w in group if isinstance(w, _Work) and w.needs_embedding]
        vectors = dict(zip(map(id, todo), self._embed(todo), strict=True))
        pending_cursor: datetime | None = None
        for item in group:
            if isinstance(item, FetchFailure):
                outcome: Outcome = "failed"
                run.tally.errors.append(f"{item.artifact_id}: {item.error}")
            else:
                cursor = item.doc.updated_at if run.ordered and run.clean else None
                outcome = self._writer.apply(
                    item,
                    vectors.get(id(item)),
                    cursor_scope=run.cursor_scope,
                    cursor=cursor,
                    errors=run.tally.errors,
                )
                if outcome == "unchanged" and cursor is not None:
                    pending_cursor = cursor  # recorded once for the group, below
                elif outcome == "synced":
                    pending_cursor = None  # the commit recorded its own, later, cursor
            run.clean = run.clean and outcome != "failed"
            run.tally.add(outcome)
            if progress:
                progress(run.cursor_scope[1], run.tally.frozen())
        if pending_cursor is not None:
            with self._db.connection() as conn:
                sync_state.advance_cursor(conn, *run.cursor_scope, pending_cursor)

    def _embed(self, works: list[_Work]) -> list[PageVectors | KbError]:
        pages = [PageText(w.row.title if w.row else "", w.chunks) for w in works]
        return embed_pages(self._embedder, self._sentence_signal, pages)
