"""``kb daemon``: scheduled syncs, queued /kb-sync requests, the webhook listener and its
worker, and delivery of the outbox (notices, ops alerts, sync results).

Each part runs on its own thread; SIGTERM (or Ctrl-C) sets one stop event and every part
finishes what it is doing and returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from bot.outbox import OutboxDeliverer
from store import sync_state
from store.cache import AnswerCache
from store.daemon_lock import DaemonLock
from store.db import Database
from sync.engine import RunReport, SyncEngine
from sync.source import SourceConnector

log = logging.getLogger(__name__)

NIGHTLY_HOUR_UTC = 3
REQUEST_POLL_SECONDS = 2.0
BUSY_RETRY_SECONDS = 5.0
LOCK_CHECK_TICKS = 5  # seconds between checks that this daemon still holds the lock


def report_dict(report: RunReport) -> dict[str, Any]:
    c = report.counts
    return {
        "source": report.source,
        "status": report.status,
        "synced": c.synced,
        "unchanged": c.unchanged,
        "deleted": c.deleted,
        "skipped": c.skipped,
        "failed": c.failed,
        "errors": list(report.errors[:5]),
        "seconds": round(report.seconds, 1),
    }


@dataclass
class Daemon:
    db: Database
    engine: SyncEngine
    connectors: Mapping[str, SourceConnector]
    sync_every_minutes: int
    cache: AnswerCache
    deliverer: OutboxDeliverer | None = None
    background: list[Callable[[threading.Event], None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    busy_retry_seconds: float = BUSY_RETRY_SECONDS
    standby_poll_seconds: float = 5.0

    def run(self) -> None:
        """Run every part until :attr:`stop` is set; as a standby while another daemon of
        this store runs (store/daemon_lock.py), and again as one if another took over while
        a Postgres restart had ended this one's session."""
        lock = DaemonLock(self.db)
        try:
            while not self.stop.is_set():
                if not self._wait_for_lock(lock):
                    return
                self._run_active(lock)
        finally:
            lock.release()

    def _wait_for_lock(self, lock: DaemonLock) -> bool:
        if lock.try_acquire():
            return True
        log.warning(
            "another kb daemon is running on this store: this one stands by and runs "
            "no job until that one stops"
        )
        while not lock.try_acquire():
            if self.stop.wait(self.standby_poll_seconds):
                return False
        log.warning("the other kb daemon stopped: this one takes over")
        return True

    def _run_active(self, lock: DaemonLock) -> None:
        """Run the parts until :attr:`stop` is set or another daemon holds the lock."""
        with self.db.connection() as conn:
            released = sync_state.release_abandoned_requests(conn)
        if released:
            log.warning("re-queued %d sync request(s) abandoned by a stopped daemon", released)
        if self.deliverer is not None:
            try:
                # This is now the store's only deliverer: what another left claimed is orphaned.
                self.deliverer.take_over()
            except Exception:  # the lease still recovers them later
                log.exception("could not take over the outbox claims of a stopped daemon")
        scheduler = BackgroundScheduler(timezone=UTC)
        for name in self.connectors:
            scheduler.add_job(
                self.scheduled_sync,
                "interval",
                minutes=self.sync_every_minutes,
                args=[name, False],
                id=f"incremental-{name}",
                max_instances=1,
                coalesce=True,
                next_run_time=datetime.now(UTC),
            )
            scheduler.add_job(
                self.scheduled_sync,
                "cron",
                hour=NIGHTLY_HOUR_UTC,
                args=[name, True],
                id=f"nightly-{name}",
                max_instances=1,
                coalesce=True,
            )
        parts: list[Callable[[threading.Event], None]] = [self.serve_requests, *self.background]
        if self.deliverer is not None:
            parts.append(self.deliverer.run_forever)
        active = threading.Event()  # set to stop the parts (a stop, or the lock lost)
        threads = [
            threading.Thread(
                target=self._guarded,
                args=(part, active),
                name=getattr(part, "__name__", "part"),
                daemon=True,
            )
            for part in parts
        ]
        scheduler.start()
        for thread in threads:
            thread.start()
        log.info(
            "kb daemon running: %s every %d min, nightly reconciliation at %02d:00 UTC",
            ", ".join(self.connectors) or "no sources configured",
            self.sync_every_minutes,
            NIGHTLY_HOUR_UTC,
        )
        try:
            self._hold(lock)
        finally:
            active.set()
            if self.stop.is_set():
                log.info("kb daemon stopping")
            scheduler.shutdown(wait=True)
            for thread in threads:
                thread.join(timeout=30)

    def _hold(self, lock: DaemonLock) -> None:
        """Until stopped; returns early when a Postgres restart ended this daemon's session and
        another daemon took the lock before it could take it again."""
        ticks = 0
        while not self.stop.wait(1.0):
            ticks += 1
            if ticks % LOCK_CHECK_TICKS == 0 and lock.still_held() is False:
                log.warning(
                    "another kb daemon took over while the store was away: this one stops "
                    "its jobs and stands by"
                )
                return

    def _guarded(self, part: Callable[[threading.Event], None], active: threading.Event) -> None:
        # A crashed part is restarted after a pause rather than silently gone.
        while not active.is_set():
            try:
                part(active)
                return
            except Exception:
                log.exception("daemon part %s crashed; restarting in 5 s", part)
                active.wait(5.0)

    def scheduled_sync(self, source: str, full: bool) -> None:
        report = self.engine.run(
            self.connectors[source], full=full, trigger="nightly" if full else "schedule"
        )
        log.info("%s sync: %s", "full" if full else "incremental", report.summary())

    def serve_requests(self, stop: threading.Event) -> None:
        """Run /kb-sync requests queued in Postgres, oldest first, one at a time."""
        while not stop.is_set():
            if not self.run_next_request():
                stop.wait(REQUEST_POLL_SECONDS)

    def run_next_request(self) -> bool:
        with self.db.connection() as conn:
            request = sync_state.claim_request(conn)
        if request is None:
            return False
        wanted = {s.upper() for s in request["scopes"] or []}
        reports: list[dict[str, Any]] = []
        for name, connector in self.connectors.items():
            if request["source"] not in ("all", name):
                continue
            scopes = [s for s in connector.scopes() if not wanted or s in wanted]
            if wanted and not scopes:
                continue
            reports.append(report_dict(self._run_waiting(connector, scopes, request["full_sync"])))
        with self.db.connection() as conn:
            sync_state.finish_request(conn, request["request_id"], request["requested_by"], reports)
        return True

    def _run_waiting(self, connector: SourceConnector, scopes: list[str], full: bool) -> RunReport:
        """Run now, or as soon as the scheduled run of the same source has finished."""
        deadline = time.monotonic() + 3600
        while True:
            report = self.engine.run(connector, scopes=scopes, full=full, trigger="slack")
            if report.status != "busy" or time.monotonic() > deadline or self.stop.is_set():
                return report
            self.stop.wait(self.busy_retry_seconds)
