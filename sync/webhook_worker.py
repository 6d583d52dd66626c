"""The webhook worker: stored deliveries -> fetch the artifact -> the sync engine's gate.

Webhook bodies are partial or stale, so a delivery is only a prompt: the worker fetches the
artifact through its source's connector and hands the result (or its absence: deleted, trashed)
to :meth:`SyncEngine.sync_document`, which runs the checksum gate, the transactional upsert and
the ChangeListener (the answer cache and its notices). A ``deleted`` delivery is verified the
same way: if the fetch still finds the page, it is live. What a scheduled sync would not index
(outside the spaces, projects or JQL; restricted; a security level) is recorded as ignored,
with the reason, and removed from the index if it was there.

Per artifact, all pending deliveries are handled by one fetch, oldest first; the older ones
are marked superseded, as are those received before that fetch started. Deliveries to one
artifact are debounced: it is processed once no delivery came for ``quiet`` seconds, or once
its oldest pending delivery has waited ``max_wait`` seconds, so a burst of a thousand edits
costs a few fetches while a lone edit is processed within ``quiet`` plus the fetch.

Exclusivity per artifact comes from a session-level advisory lock on the worker's connection:
several worker threads or daemons may run, and a worker killed mid-fetch (kill -9) loses its
session, hence its locks, while its deliveries stay pending for the next worker.

Failures (RemoteError, store errors, the engine reporting "failed") are retried with
exponential backoff; after ``max_attempts`` the delivery is dead, keeps its last error, and an
ops alert is queued (at most one per source per hour for dead webhooks).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import psycopg

from core.errors import KbError
from store import outbox, webhook_events
from store.db import Connection, Database
from store.webhook_events import PendingEvent
from sync.engine import SyncEngine
from sync.source import OutsideSelection, SourceConnector

log = logging.getLogger(__name__)

_LOCK = 0x6B62_7768  # "kbwh": advisory-lock namespace of webhook artifacts
_ERROR_LIMIT = 1000


class WebhookWorker:
    """Processes stored webhook events; run :meth:`run_forever` on a thread of ``kb daemon``."""

    def __init__(
        self,
        db: Database,
        engine: SyncEngine,
        connectors: Mapping[str, SourceConnector],
        *,
        max_attempts: int = 5,
        retry_base: float = 15.0,
        retry_factor: float = 3.0,
        retry_max: float = 900.0,
        quiet: float = 0.2,
        max_wait: float = 1.0,
        poll_interval: float = 1.0,
        batch: int = 50,
        retention_days: float | None = 30.0,
    ) -> None:
        if max_attempts < 1 or batch < 1:
            raise ValueError("max_attempts and batch must be at least 1")
        if min(quiet, max_wait, poll_interval, retry_base) < 0 or retry_factor < 1:
            raise ValueError("delays must not be negative and retry_factor must be >= 1")
        self._db = db
        self._engine = engine
        self._connectors = dict(connectors)
        self._max_attempts = max_attempts
        self._retry = (retry_base, retry_factor, retry_max)
        self._quiet = quiet
        self._max_wait = max_wait
        self._poll = poll_interval
        self._batch = batch
        self._retention = retention_days
        self._wake = threading.Event()
        self._random = random.Random()
        self._next_prune = 0.0

    def wake(self) -> None:
        """Tell the worker a delivery was stored (pass this to ``build_webhook_app``)."""
        self._wake.set()

    # --- the loop -------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event) -> None:
        """Process due events until ``stop`` is set; pending events left by a stopped or
        crashed daemon are processed first. Set ``stop`` and call :meth:`wake` to stop
        promptly; otherwise it notices within ``poll_interval``."""
        log.info("webhook worker started")
        while not stop.is_set():
            try:
                self._maybe_prune()
                handled = self.process_due(self._batch)
            except Exception:  # the store may be restarting: keep the daemon alive, retry
                log.exception("the webhook worker failed; retrying in %.1f s", self._poll)
                stop.wait(self._poll)
                continue
            if handled:
                continue
            if self._wake.wait(self._poll):
                self._wake.clear()
                # Let a burst of deliveries for one page settle, so it costs one fetch.
                stop.wait(self._quiet + 0.02)
        log.info("webhook worker stopped")

    def process_due(self, limit: int = 50) -> int:
        """Process up to ``limit`` artifacts with due events; returns how many were fetched
        (whatever the outcome). Artifacts another worker is processing are skipped."""
        with self._db.connection() as conn:
            conn.autocommit = True  # session-level advisory locks; explicit transactions
            try:
                due = webhook_events.due_artifacts(
                    conn, quiet=self._quiet, max_wait=self._max_wait, limit=limit
                )
                handled = 0
                for source, artifact_id in due:
                    if self._handle_locked(conn, source, artifact_id):
                        handled += 1
                return handled
            finally:
                conn.autocommit = False

    # --- one artifact -----------------------------------------------------------------------

    def _handle_locked(self, conn: Connection, source: str, artifact_id: str) -> bool:
        got = conn.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s)) AS ok", (_LOCK, artifact_id)
        ).fetchone()
        if not got or not got["ok"]:
            return False
        try:
            return self._handle(conn, source, artifact_id)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (_LOCK, artifact_id))

    def _handle(self, conn: Connection, source: str, artifact_id: str) -> bool:
        with conn.transaction():
            events = webhook_events.claim(conn, source, artifact_id)
            if not events:
                return False  # processed by another worker between the listing and the lock
            latest = events[-1]
            # Older deliveries are covered by the one fetch below; failures carry over, so a
            # stream of deliveries cannot keep a broken artifact retrying for ever.
            attempts = max(e.attempts for e in events)
            webhook_events.supersede(conn, [e.event_id for e in events[:-1]])
            if attempts != latest.attempts:
                webhook_events.set_attempts(conn, latest.event_id, attempts)
        connector = self._connectors.get(source)
        if connector is None:
            with conn.transaction():
                webhook_events.mark_finished_with_error(
                    conn, latest.event_id, "ignored", attempts, f"{source} is not configured"
                )
            log.warning("webhook event for %s ignored: %s is not configured", artifact_id, source)
            return True
        fetch_started = webhook_events.db_now(conn)
        started = time.monotonic()
        error: str | None = None
        ignored: str | None = None  # why a scheduled sync would not index it either
        outcome = "failed"
        try:
            try:
                document = connector.fetch(artifact_id)
            except OutsideSelection as outside:
                ignored, document = str(outside), None  # absent: removed if it was indexed
            outcome = self._engine.sync_document(document, artifact_id)
            if outcome == "failed":
                error = "the sync engine could not index it (see the daemon log)"
            elif document is not None and document.restricted and outcome in ("deleted", "skipped"):
                # The engine applied the restriction rule (kept out, removed if indexed).
                ignored = f"{artifact_id} has read restrictions or a security level"
        except KbError as exc:  # messages name the service and status, never a secret
            error = str(exc)
        except psycopg.Error as exc:
            error = f"store error: {exc.diag.message_primary or type(exc).__name__}"
        except Exception as exc:
            log.exception("processing the webhook event for %s failed", artifact_id)
            error = f"{type(exc).__name__}: {exc}"
        if error is None:
            if ignored is not None and outcome == "deleted":
                ignored += "; removed from the index"
            with conn.transaction():
                if ignored is None:
                    webhook_events.mark_done(conn, latest.event_id, outcome)
                else:
                    webhook_events.mark_finished_with_error(
                        conn, latest.event_id, "ignored", attempts, ignored[:_ERROR_LIMIT]
                    )
                covered = webhook_events.supersede_covered(
                    conn, source, artifact_id, latest.event_id, fetch_started
                )
            log.info(
                "webhook %s for %s: %s in %.0f ms (%d deliveries)",
                latest.event,
                artifact_id,
                outcome if ignored is None else f"ignored ({ignored})",
                (time.monotonic() - started) * 1000,
                len(events) + covered,
            )
        else:
            self._failed(conn, source, artifact_id, latest, attempts + 1, error[:_ERROR_LIMIT])
        return True

    def _failed(
        self,
        conn: Connection,
        source: str,
        artifact_id: str,
        event: PendingEvent,
        attempts: int,
        error: str,
    ) -> None:
        if attempts < self._max_attempts:
            base, factor, cap = self._retry
            delay = min(cap, base * factor ** (attempts - 1)) * self._random.uniform(0.9, 1.1)
            with conn.transaction():
                webhook_events.mark_retry(conn, event.event_id, attempts, error, delay)
            log.warning(
                "webhook %s for %s failed (attempt %d of %d), retrying in %.0f s: %s",
                event.event,
                artifact_id,
                attempts,
                self._max_attempts,
                delay,
                error,
            )
            return
        hour = datetime.now(UTC).strftime("%Y-%m-%dT%H")
        message = (
            f"webhook {event.event or 'event'} for {artifact_id} gave up after {attempts} "
            f"attempts: {error}"
        )
        with conn.transaction():
            webhook_events.mark_finished_with_error(conn, event.event_id, "dead", attempts, error)
            # The same kind of alert as sync_state.record_failure's; one per source and hour, so
            # an outage that kills many deliveries is announced once.
            outbox.enqueue(
                conn, outbox.OpsAlert(source, message, None, ongoing=False, key=f"webhook:{hour}")
            )
        log.error("%s", message)

    def _maybe_prune(self) -> None:
        if self._retention is None or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + 3600
        with self._db.connection() as conn:
            pruned = webhook_events.prune(conn, self._retention * 86400)
        if pruned:
            log.info("pruned %d finished webhook events", pruned)
