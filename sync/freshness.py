"""From a committed source change to stale answers and "source updated" notices.

The sync engine (scheduled runs and webhooks alike) calls this listener after each commit.
It invalidates the answer cache and queues one notice per (thread, artifact, change) in the
outbox; the dedupe key makes a repeated report of the same change send nothing twice.
"""

from __future__ import annotations

import logging

from store.cache import AnswerCache, Invalidation
from store.db import Database
from store.sync_state import enqueue

log = logging.getLogger(__name__)

ARTIFACT = "SELECT title, url, version FROM artifacts WHERE artifact_id = %s"


class CacheInvalidator:
    """A :class:`sync.engine.ChangeListener` backed by the answer cache and the outbox."""

    def __init__(self, db: Database, cache: AnswerCache) -> None:
        self._db = db
        self._cache = cache
        self.dirtied = 0
        self.evicted = 0

    def source_changed(self, artifact_id: str, *, content_hash: str, version: str) -> None:
        result = self._cache.source_changed(artifact_id, content_hash=content_hash, version=version)
        self.dirtied += result.dirtied
        self._queue(
            artifact_id, result, change="updated", new_version=version, change_key=content_hash
        )

    def source_deleted(self, artifact_id: str) -> None:
        result = self._cache.source_deleted(artifact_id)
        self.evicted += result.evicted
        self._queue(artifact_id, result, change="deleted", new_version=None, change_key="deleted")

    def _queue(
        self,
        artifact_id: str,
        result: Invalidation,
        *,
        change: str,
        new_version: str | None,
        change_key: str,
    ) -> None:
        if not result.places:
            return
        with self._db.connection() as conn:
            row = conn.execute(ARTIFACT, (artifact_id,)).fetchone()
            title = row["title"] if row else artifact_id
            url = row["url"] if row else ""
            for unit_id, place in result.places:
                unit = self._cache.get(unit_id)
                old = unit.provenance.get(artifact_id) if unit else None
                key = (
                    f"notice:{place.platform}:{place.channel}:{place.thread}:"
                    f"{artifact_id}:{change_key}"
                )
                enqueue(
                    conn,
                    "notice",
                    key,
                    {
                        "platform": place.platform,
                        "channel": place.channel,
                        "thread": place.thread,
                        "artifact_id": artifact_id,
                        "title": title,
                        "url": url,
                        "change": change,
                        "old_version": old.version if old else None,
                        "new_version": new_version,
                        "question": unit.question if unit else "",
                        "unit_id": unit_id,
                    },
                )
        log.info("%s %s: queued notices for %d thread(s)", artifact_id, change, len(result.places))
