"""From a committed source change to stale answers and "source updated" notices.

The sync engine writes a ``source_change`` intent into the outbox in the same transaction as
the artifact write or deletion (docs/ARCHITECTURE.md, "Outbox"). This applier turns pending
intents into their effects: it invalidates the answer cache and queues one notice per
(thread, artifact, change), and marks the intent applied in the transaction that queues the
notices. The engine asks it to apply right after each commit; :meth:`apply_pending` also picks
up what a crashed process left, so a crash between the content commit and the invalidation
loses no notice. The notice's dedupe key makes a repeated report of a change send nothing twice.
"""

from __future__ import annotations

import logging
import threading

from store import outbox
from store.cache import AnswerCache, Invalidation
from store.db import Connection, Database
from store.outbox import Notice, SourceChange

log = logging.getLogger(__name__)


class CacheInvalidator:
    """A :class:`sync.engine.ChangeListener` that applies the engine's outbox intents."""

    def __init__(self, db: Database, cache: AnswerCache) -> None:
        self._db = db
        self._cache = cache
        self.dirtied = 0
        self.evicted = 0

    def source_changed(self, artifact_id: str, *, content_hash: str, version: str) -> None:
        self.apply_pending(artifact_id=artifact_id)

    def source_deleted(self, artifact_id: str) -> None:
        self.apply_pending(artifact_id=artifact_id)

    def apply_pending(self, *, artifact_id: str | None = None, limit: int = 100) -> int:
        """Apply pending intents (of one artifact, or every one); returns how many."""
        with self._db.connection() as conn:
            claimed = outbox.claim_changes(conn, artifact_id=artifact_id, limit=limit)
            for message_id, change in claimed:
                self._apply(conn, change)
                outbox.mark_applied(conn, message_id)
        return len(claimed)

    def drain(self, batch: int = 100) -> int:
        """Apply everything pending; a failure is logged and left for the next pass."""
        applied = 0
        try:
            while (done := self.apply_pending(limit=batch)) > 0:
                applied += done
                if done < batch:
                    break
        except Exception:
            log.exception("applying pending source changes failed; they stay queued")
        return applied

    def _apply(self, conn: Connection, change: SourceChange) -> None:
        if change.change == "deleted":
            result = self._cache.source_deleted(change.artifact_id)
            self.evicted += result.evicted
        else:
            result = self._cache.source_changed(
                change.artifact_id,
                content_hash=change.content_hash or "",
                version=change.version or "",
            )
            self.dirtied += result.dirtied
        self._queue(conn, change, result)

    def _queue(self, conn: Connection, change: SourceChange, result: Invalidation) -> None:
        if not result.places:
            return
        title, url = outbox.artifact_label(conn, change.artifact_id)
        for unit_id, place in result.places:
            unit = self._cache.get(unit_id)
            old = unit.provenance.get(change.artifact_id) if unit else None
            outbox.enqueue(
                conn,
                Notice(
                    platform=place.platform,
                    channel=place.channel,
                    thread=place.thread,
                    artifact_id=change.artifact_id,
                    title=title,
                    url=url,
                    change=change.change,
                    old_version=old.version if old else None,
                    new_version=change.version if change.change == "updated" else None,
                    question=unit.question if unit else "",
                    unit_id=unit_id,
                    change_key=change.content_hash or "deleted",
                ),
            )
        log.info(
            "%s %s: queued notices for %d thread(s)",
            change.artifact_id,
            change.change,
            len(result.places),
        )


def apply_forever(
    applier: CacheInvalidator, stop: threading.Event, poll_seconds: float = 2.0
) -> None:
    """The daemon's pass over intents left pending by a crash (or by another process)."""
    while not stop.is_set():
        try:
            applier.apply_pending()
        except Exception:  # a database hiccup: the intents stay pending for the next pass
            log.exception("applying source changes failed; retrying in %.0f s", poll_seconds)
        stop.wait(poll_seconds)
