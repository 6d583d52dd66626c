"""Named queries for stored webhook deliveries (migration 0004) and the listener's metrics.

Every time comparison uses the database clock (``clock_timestamp()``), so the listener and
workers on other hosts agree on what is due without trusting their own clocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from store.db import Connection

INSERT_EVENT = """
INSERT INTO webhook_events (source, delivery_id, artifact_id, kind, event, version, status,
                            processed_at)
VALUES (%(source)s, %(delivery_id)s, %(artifact_id)s, %(kind)s, %(event)s, %(version)s,
        %(status)s, CASE WHEN %(finished)s THEN clock_timestamp() END)
ON CONFLICT (source, delivery_id) DO NOTHING
RETURNING event_id
"""

# A delivery identified only by its body hash may be a new edit that produced the same body
# (an automation rule sending {"page": {"id": ...}}): once the earlier one is finished, the
# delivery is queued again. Re-fetching is cheap and the checksum gate makes it a no-op when
# nothing moved; missing an edit is not.
REOPEN_EVENT = """
UPDATE webhook_events
SET status = 'pending', attempts = 0, received_at = clock_timestamp(),
    next_attempt_at = clock_timestamp(), last_error = NULL, outcome = NULL,
    processed_at = NULL, duplicates = duplicates + 1
WHERE source = %s AND delivery_id = %s AND status IN ('done', 'superseded', 'dead')
RETURNING event_id
"""

COUNT_DUPLICATE = """
UPDATE webhook_events SET duplicates = duplicates + 1
WHERE source = %s AND delivery_id = %s
RETURNING event_id
"""

# Artifacts with due events whose burst has gone quiet (no delivery for ``quiet`` seconds), or
# whose oldest pending delivery has waited ``max_wait`` seconds: a burst of edits to one page
# costs a few fetches, and a steady stream cannot postpone its processing for ever.
DUE_ARTIFACTS = """
SELECT source, artifact_id
FROM webhook_events
WHERE status = 'pending' AND next_attempt_at <= clock_timestamp()
GROUP BY source, artifact_id
HAVING max(received_at) <= clock_timestamp() - %(quiet)s * interval '1 second'
    OR min(received_at) <= clock_timestamp() - %(max_wait)s * interval '1 second'
ORDER BY min(received_at)
LIMIT %(limit)s
"""

CLAIM_ARTIFACT = """
SELECT event_id, event, kind, version, attempts, received_at
FROM webhook_events
WHERE source = %s AND artifact_id = %s AND status = 'pending'
ORDER BY received_at, event_id
FOR UPDATE SKIP LOCKED
"""

SUPERSEDE_IDS = """
UPDATE webhook_events SET status = 'superseded', processed_at = clock_timestamp()
WHERE event_id = ANY(%s) AND status = 'pending'
"""

# Deliveries received before the fetch started are covered by what it read.
SUPERSEDE_COVERED = """
UPDATE webhook_events SET status = 'superseded', processed_at = clock_timestamp()
WHERE source = %s AND artifact_id = %s AND status = 'pending' AND event_id <> %s
  AND received_at < %s
"""

SET_ATTEMPTS = "UPDATE webhook_events SET attempts = %s WHERE event_id = %s"

MARK_DONE = """
UPDATE webhook_events
SET status = 'done', outcome = %s, last_error = NULL, processed_at = clock_timestamp()
WHERE event_id = %s
"""

MARK_RETRY = """
UPDATE webhook_events
SET attempts = %(attempts)s, last_error = %(error)s,
    next_attempt_at = clock_timestamp() + %(delay)s * interval '1 second'
WHERE event_id = %(event_id)s
"""

MARK_FINISHED_WITH_ERROR = """
UPDATE webhook_events
SET status = %(status)s, attempts = %(attempts)s, last_error = %(error)s,
    processed_at = clock_timestamp()
WHERE event_id = %(event_id)s
"""

PRUNE = """
DELETE FROM webhook_events
WHERE status <> 'pending' AND processed_at < clock_timestamp() - %s * interval '1 second'
"""

QUEUE_STATS = """
SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status = 'dead') AS dead,
       coalesce(extract(epoch FROM clock_timestamp() - min(received_at)
                FILTER (WHERE status = 'pending')), 0)::float8 AS oldest_pending_seconds
FROM webhook_events
"""

# --- metrics: one read of each table, grouped in SQL -------------------------------------

METRIC_EVENTS = """
SELECT source, status, count(*)::float8 AS events, coalesce(sum(duplicates), 0)::float8 AS dups
FROM webhook_events GROUP BY source, status
"""

METRIC_WEBHOOK_OUTCOMES = """
SELECT source, outcome, count(*)::float8 AS n
FROM webhook_events WHERE status = 'done' AND outcome IS NOT NULL GROUP BY source, outcome
"""

METRIC_SYNC_RUNS = """
SELECT source, status, count(*)::float8 AS runs, sum(synced)::float8 AS synced,
       sum(unchanged)::float8 AS unchanged, sum(deleted)::float8 AS deleted,
       sum(skipped)::float8 AS skipped, sum(failed)::float8 AS failed
FROM sync_runs GROUP BY source, status
"""

METRIC_LAST_RUNS = """
SELECT DISTINCT ON (source) source, status,
       extract(epoch FROM coalesce(finished_at, started_at))::float8 AS at
FROM sync_runs ORDER BY source, started_at DESC
"""

METRIC_ARTIFACTS = """
SELECT source, count(*) FILTER (WHERE deleted_at IS NULL)::float8 AS live,
       count(*) FILTER (WHERE deleted_at IS NOT NULL)::float8 AS deleted
FROM artifacts GROUP BY source
"""

METRIC_OUTBOX = """
SELECT kind,
       CASE WHEN sent_at IS NOT NULL THEN 'sent' WHEN dead_at IS NOT NULL THEN 'dead'
            ELSE 'pending' END AS state,
       count(*)::float8 AS n
FROM outbox GROUP BY 1, 2
"""

StoreStatus = Literal["stored", "ignored", "duplicate", "requeued"]


@dataclass(frozen=True)
class Stored:
    """What storing a delivery did: a new row, a re-queued row, or a duplicate counted."""

    event_id: int
    status: StoreStatus


@dataclass(frozen=True)
class PendingEvent:
    event_id: int
    event: str
    kind: str
    version: str | None
    attempts: int
    received_at: datetime


@dataclass(frozen=True)
class QueueStats:
    pending: int
    dead: int
    oldest_pending_seconds: float


def store(
    conn: Connection,
    *,
    source: str,
    delivery_id: str,
    artifact_id: str | None,
    kind: str | None,
    event: str,
    version: str | None,
    requeue_finished: bool,
) -> Stored:
    """Store one delivery once per (source, delivery id); ``artifact_id`` None: ignored.

    ``requeue_finished``: a repeat of a finished delivery is queued again (see REOPEN_EVENT);
    otherwise a repeat is only counted. Every statement is safe on its own, so this works in
    autocommit mode (the listener's: one round trip) as well as inside a transaction.
    """
    ignored = artifact_id is None
    params = {
        "source": source,
        "delivery_id": delivery_id,
        "artifact_id": artifact_id,
        "kind": kind,
        "event": event,
        "version": version,
        "status": "ignored" if ignored else "pending",
        "finished": ignored,
    }
    while True:  # a second round only if a prune removed the row between two statements
        row = conn.execute(INSERT_EVENT, params).fetchone()
        if row is not None:
            return Stored(int(row["event_id"]), "ignored" if ignored else "stored")
        if requeue_finished and not ignored:
            row = conn.execute(REOPEN_EVENT, (source, delivery_id)).fetchone()
            if row is not None:
                return Stored(int(row["event_id"]), "requeued")
        row = conn.execute(COUNT_DUPLICATE, (source, delivery_id)).fetchone()
        if row is not None:
            return Stored(int(row["event_id"]), "duplicate")


def due_artifacts(
    conn: Connection, *, quiet: float, max_wait: float, limit: int
) -> list[tuple[str, str]]:
    rows = conn.execute(
        DUE_ARTIFACTS, {"quiet": quiet, "max_wait": max_wait, "limit": limit}
    ).fetchall()
    return [(r["source"], r["artifact_id"]) for r in rows]


def claim(conn: Connection, source: str, artifact_id: str) -> list[PendingEvent]:
    """Lock an artifact's pending events, oldest first; call inside a transaction."""
    rows = conn.execute(CLAIM_ARTIFACT, (source, artifact_id)).fetchall()
    return [
        PendingEvent(
            int(r["event_id"]),
            r["event"],
            r["kind"],
            r["version"],
            int(r["attempts"]),
            r["received_at"],
        )
        for r in rows
    ]


def db_now(conn: Connection) -> datetime:
    row = conn.execute("SELECT clock_timestamp() AS now").fetchone()
    assert row is not None
    now: datetime = row["now"]
    return now


def supersede(conn: Connection, event_ids: Sequence[int]) -> None:
    if event_ids:
        conn.execute(SUPERSEDE_IDS, (list(event_ids),))


def supersede_covered(
    conn: Connection, source: str, artifact_id: str, keep: int, before: datetime
) -> int:
    return conn.execute(SUPERSEDE_COVERED, (source, artifact_id, keep, before)).rowcount


def set_attempts(conn: Connection, event_id: int, attempts: int) -> None:
    conn.execute(SET_ATTEMPTS, (attempts, event_id))


def mark_done(conn: Connection, event_id: int, outcome: str) -> None:
    conn.execute(MARK_DONE, (outcome, event_id))


def mark_retry(conn: Connection, event_id: int, attempts: int, error: str, delay: float) -> None:
    conn.execute(
        MARK_RETRY, {"event_id": event_id, "attempts": attempts, "error": error, "delay": delay}
    )


def mark_finished_with_error(
    conn: Connection,
    event_id: int,
    status: Literal["dead", "ignored"],
    attempts: int,
    error: str,
) -> None:
    conn.execute(
        MARK_FINISHED_WITH_ERROR,
        {"event_id": event_id, "status": status, "attempts": attempts, "error": error},
    )


def prune(conn: Connection, older_than_seconds: float) -> int:
    """Delete finished rows processed longer ago than that; pending rows are never pruned."""
    return conn.execute(PRUNE, (older_than_seconds,)).rowcount


def queue_stats(conn: Connection) -> QueueStats:
    row = conn.execute(QUEUE_STATS).fetchone()
    assert row is not None
    return QueueStats(int(row["pending"]), int(row["dead"]), float(row["oldest_pending_seconds"]))


def metric_rows(conn: Connection) -> dict[str, list[dict[str, Any]]]:
    """The raw rows behind /metrics, one list per query; one connection, one snapshot each."""
    return {
        name: conn.execute(sql).fetchall()
        for name, sql in (
            ("events", METRIC_EVENTS),
            ("webhook_outcomes", METRIC_WEBHOOK_OUTCOMES),
            ("sync_runs", METRIC_SYNC_RUNS),
            ("last_runs", METRIC_LAST_RUNS),
            ("artifacts", METRIC_ARTIFACTS),
            ("outbox", METRIC_OUTBOX),
            ("queue", QUEUE_STATS),
        )
    }
