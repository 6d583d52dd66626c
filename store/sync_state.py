"""Named queries for sync bookkeeping: cursors, runs, /kb-sync requests and the ops-alert state.

Messages these cause (alerts, recoveries, sync results) go through :mod:`store.outbox`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from store import outbox
from store.db import Connection

GET_CURSOR = "SELECT cursor FROM sync_cursors WHERE source = %s AND scope_key = %s"

SET_CURSOR = """
INSERT INTO sync_cursors (source, scope_key, cursor, updated_at) VALUES (%s, %s, %s, now())
ON CONFLICT (source, scope_key) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()
WHERE sync_cursors.cursor < EXCLUDED.cursor
"""

START_RUN = """
INSERT INTO sync_runs (source, scopes, mode, trigger) VALUES (%s, %s, %s, %s) RETURNING run_id
"""

FINISH_RUN = """
UPDATE sync_runs SET finished_at = now(), status = %(status)s, synced = %(synced)s,
    unchanged = %(unchanged)s, deleted = %(deleted)s, skipped = %(skipped)s,
    failed = %(failed)s, errors = %(errors)s
WHERE run_id = %(run_id)s
"""

INTERRUPT_STALE_RUNS = """
UPDATE sync_runs SET finished_at = now(), status = 'failed',
    errors = errors || '["interrupted: the process running it stopped"]'::jsonb
WHERE source = %s AND status = 'running'
"""

LATEST_RUNS = """
SELECT DISTINCT ON (source) source, run_id, status, started_at, finished_at,
       synced, unchanged, deleted, skipped, failed, errors
FROM sync_runs ORDER BY source, started_at DESC
"""

ALERT_STATE = (
    "SELECT last_alert_at, now() - last_alert_at >= interval '1 hour' AS due "
    "FROM ops_alert_state WHERE source = %s FOR UPDATE"
)


def get_cursor(conn: Connection, source: str, scope_key: str) -> datetime | None:
    row = conn.execute(GET_CURSOR, (source, scope_key)).fetchone()
    return None if row is None else datetime.fromisoformat(row["cursor"])


def advance_cursor(conn: Connection, source: str, scope_key: str, at: datetime) -> None:
    """Move the cursor forward (never back); ISO-8601 UTC text sorts like the times it holds."""
    conn.execute(SET_CURSOR, (source, scope_key, at.isoformat(timespec="microseconds")))


def start_run(conn: Connection, source: str, scopes: list[str], mode: str, trigger: str) -> int:
    conn.execute(INTERRUPT_STALE_RUNS, (source,))
    row = conn.execute(START_RUN, (source, scopes, mode, trigger)).fetchone()
    assert row is not None
    return int(row["run_id"])


@dataclass(frozen=True)
class RunCounts:
    synced: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: int = 0
    failed: int = 0


def finish_run(
    conn: Connection, run_id: int, status: str, counts: RunCounts, errors: list[str]
) -> None:
    conn.execute(
        FINISH_RUN,
        {
            "run_id": run_id,
            "status": status,
            **counts.__dict__,
            "errors": json.dumps(errors[:20]),
        },
    )


def latest_runs(conn: Connection) -> list[dict[str, Any]]:
    return conn.execute(LATEST_RUNS).fetchall()


def record_failure(conn: Connection, source: str, error: str, run_id: int) -> None:
    """Alert on a failing source, at most once an hour while it keeps failing."""
    row = conn.execute(ALERT_STATE, (source,)).fetchone()
    if row is not None and not row["due"]:
        conn.execute(
            "UPDATE ops_alert_state SET last_error = %s WHERE source = %s", (error, source)
        )
        return
    conn.execute(
        "INSERT INTO ops_alert_state (source, last_error) VALUES (%s, %s) "
        "ON CONFLICT (source) DO UPDATE SET last_alert_at = now(),"
        " last_error = EXCLUDED.last_error",
        (source, error),
    )
    outbox.enqueue(
        conn, outbox.OpsAlert(source, error, run_id, ongoing=row is not None, key=f"run:{run_id}")
    )


def record_success(conn: Connection, source: str, run_id: int) -> None:
    """Announce recovery once when a source that was failing syncs cleanly again."""
    row = conn.execute(
        "DELETE FROM ops_alert_state WHERE source = %s RETURNING failing_since, last_error",
        (source,),
    ).fetchone()
    if row is not None:
        outbox.enqueue(
            conn,
            outbox.OpsRecovery(source, run_id, row["failing_since"].isoformat(), row["last_error"]),
        )


CLAIM_REQUEST = """
UPDATE sync_requests SET claimed_at = now()
WHERE request_id = (
    SELECT request_id FROM sync_requests WHERE claimed_at IS NULL
    ORDER BY requested_at LIMIT 1 FOR UPDATE SKIP LOCKED
)
RETURNING request_id, source, scopes, full_sync, requested_by
"""

FINISH_REQUEST = "UPDATE sync_requests SET finished_at = now(), result = %s WHERE request_id = %s"

RELEASE_ABANDONED_REQUESTS = """
UPDATE sync_requests SET claimed_at = NULL
WHERE finished_at IS NULL AND claimed_at < now() - interval '2 hours'
"""


def claim_request(conn: Connection) -> dict[str, Any] | None:
    """The oldest unclaimed sync request, now claimed by the caller."""
    row: dict[str, Any] | None = conn.execute(CLAIM_REQUEST).fetchone()
    return row


def finish_request(
    conn: Connection, request_id: int, requested_by: dict[str, Any], reports: list[dict[str, Any]]
) -> None:
    """Record a request's outcome and queue it for the person who asked."""
    conn.execute(FINISH_REQUEST, (json.dumps({"reports": reports}), request_id))
    outbox.enqueue(conn, outbox.SyncResult(request_id, requested_by, tuple(reports)))


def release_abandoned_requests(conn: Connection) -> int:
    """Requests claimed by a daemon that died long ago become claimable again."""
    return int(conn.execute(RELEASE_ABANDONED_REQUESTS).rowcount)
