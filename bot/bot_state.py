"""Named queries for the chat bot's own state (migration 0005) and for outbox delivery.

Event dedupe, answered threads, feedback votes, counters, and the claim protocol of the
outbox deliverer (see :mod:`bot.outbox` for why it claims before sending).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from bot.answers import Answer, AnswerFlow
from store.db import Connection, Database

log = logging.getLogger(__name__)

Vote = Literal["helpful", "not_helpful"]

# --- Slack retries ----------------------------------------------------------------------------

MARK_EVENT_SEEN = """
INSERT INTO slack_events_seen (event_id) VALUES (%s) ON CONFLICT (event_id) DO NOTHING
"""

PRUNE_EVENTS_SEEN = """
DELETE FROM slack_events_seen WHERE seen_at < now() - make_interval(secs => %s)
"""

# --- threads, votes, counters -----------------------------------------------------------------

RECORD_THREAD = """
INSERT INTO bot_threads (platform, channel, thread) VALUES (%s, %s, %s)
ON CONFLICT (platform, channel, thread)
DO UPDATE SET answered_at = now(), answers = bot_threads.answers + 1
"""

IS_BOT_THREAD = """
SELECT 1 FROM bot_threads WHERE platform = %s AND channel = %s AND thread = %s
"""

PREVIOUS_VOTE = """
SELECT vote FROM feedback WHERE unit_id = %s AND platform = %s AND user_id = %s FOR UPDATE
"""

UPSERT_VOTE = """
INSERT INTO feedback (unit_id, platform, user_id, vote) VALUES (%s, %s, %s, %s)
ON CONFLICT (unit_id, platform, user_id)
DO UPDATE SET vote = EXCLUDED.vote, updated_at = now()
"""

BUMP_COUNTER = """
INSERT INTO bot_counters (name, value) VALUES (%s, %s)
ON CONFLICT (name) DO UPDATE SET value = bot_counters.value + EXCLUDED.value
"""

INSERT_SYNC_REQUEST = """
INSERT INTO sync_requests (source, scopes, requested_by) VALUES (%s, %s, %s) RETURNING request_id
"""

METRIC_COUNTERS = "SELECT name, value FROM bot_counters"
METRIC_VOTES = "SELECT platform, vote, count(*) AS n FROM feedback GROUP BY platform, vote"
METRIC_THREADS = "SELECT platform, count(*) AS n FROM bot_threads GROUP BY platform"
METRIC_OUTBOX = """
SELECT kind,
       count(*) FILTER (WHERE sent_at IS NOT NULL) AS sent,
       count(*) FILTER (WHERE sent_at IS NULL AND dead_at IS NULL) AS pending,
       count(*) FILTER (WHERE dead_at IS NOT NULL) AS dead
FROM outbox GROUP BY kind
"""
METRIC_IN_FLIGHT = "SELECT count(*) AS n FROM outbox_claims"

# --- outbox claims ----------------------------------------------------------------------------

# One due row, locked so two deliverers never pick the same one, and claimed in the same
# statement. ON CONFLICT covers a deliverer whose snapshot predates another's committed claim.
CLAIM_ONE = """
WITH due AS (
    SELECT o.message_id FROM outbox o
    WHERE o.sent_at IS NULL AND o.dead_at IS NULL AND o.next_attempt_at <= now()
      AND NOT EXISTS (SELECT 1 FROM outbox_claims c WHERE c.message_id = o.message_id)
    ORDER BY o.next_attempt_at, o.message_id
    LIMIT 1
    FOR UPDATE OF o SKIP LOCKED
), claimed AS (
    INSERT INTO outbox_claims (message_id, claimed_by) SELECT message_id, %s FROM due
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id, claimed_at
)
UPDATE outbox o SET attempts = o.attempts + 1
FROM claimed WHERE o.message_id = claimed.message_id
RETURNING o.message_id, o.kind, o.payload, o.attempts, claimed.claimed_at
"""

# Claims older than the lease belong to a deliverer that died (or hung) mid-send; take them
# over (renewing the lease) so exactly one survivor checks what happened to each.
RECLAIM_STALE = """
WITH stale AS (
    SELECT message_id FROM outbox_claims
    WHERE claimed_at < now() - make_interval(secs => %s)
    ORDER BY claimed_at LIMIT %s
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox_claims c SET claimed_by = %s, claimed_at = now()
FROM stale, outbox o
WHERE c.message_id = stale.message_id AND o.message_id = c.message_id
RETURNING c.message_id, o.kind, o.payload, o.attempts, o.created_at
"""

MARK_SENT = """
UPDATE outbox SET sent_at = now(), last_error = NULL WHERE message_id = %s AND sent_at IS NULL
"""

RESCHEDULE = """
UPDATE outbox SET next_attempt_at = now() + make_interval(secs => %s), last_error = %s,
    attempts = greatest(0, attempts - %s)
WHERE message_id = %s
"""

MARK_DEAD = "UPDATE outbox SET dead_at = now(), last_error = %s WHERE message_id = %s"

NOTE_ERROR = "UPDATE outbox SET last_error = %s WHERE message_id = %s"

RELEASE_CLAIM = "DELETE FROM outbox_claims WHERE message_id = %s AND claimed_by = %s"


@dataclass(frozen=True)
class ClaimedMessage:
    message_id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    since: datetime


def first_time_seen(conn: Connection, event_id: str) -> bool:
    """Record an Events API ``event_id``; False when it was already recorded (a retry)."""
    return conn.execute(MARK_EVENT_SEEN, (event_id,)).rowcount > 0


def prune_events_seen(conn: Connection, older_than_seconds: float) -> int:
    return conn.execute(PRUNE_EVENTS_SEEN, (older_than_seconds,)).rowcount


def record_thread(conn: Connection, platform: str, channel: str, thread: str) -> None:
    conn.execute(RECORD_THREAD, (platform, channel, thread))


def is_bot_thread(conn: Connection, platform: str, channel: str, thread: str) -> bool:
    return conn.execute(IS_BOT_THREAD, (platform, channel, thread)).fetchone() is not None


def record_vote(
    conn: Connection, unit_id: str, platform: str, user_id: str, vote: Vote
) -> Vote | None:
    """Store a person's vote on an answer; returns their previous vote, if any."""
    row = conn.execute(PREVIOUS_VOTE, (unit_id, platform, user_id)).fetchone()
    conn.execute(UPSERT_VOTE, (unit_id, platform, user_id, vote))
    if row is None:
        return None
    previous: Vote = row["vote"]
    return previous


def bump(conn: Connection, name: str, by: int = 1) -> None:
    conn.execute(BUMP_COUNTER, (name, by))


def queue_sync_request(
    conn: Connection, source: str, scopes: list[str], requested_by: dict[str, Any]
) -> int:
    row = conn.execute(INSERT_SYNC_REQUEST, (source, scopes, json.dumps(requested_by))).fetchone()
    assert row is not None
    return int(row["request_id"])


def claim_one(conn: Connection, claimed_by: str) -> ClaimedMessage | None:
    row = conn.execute(CLAIM_ONE, (claimed_by,)).fetchone()
    if row is None:
        return None
    return ClaimedMessage(
        row["message_id"], row["kind"], row["payload"], row["attempts"], row["claimed_at"]
    )


def reclaim_stale(
    conn: Connection, claimed_by: str, lease_seconds: float, limit: int
) -> list[ClaimedMessage]:
    rows = conn.execute(RECLAIM_STALE, (lease_seconds, limit, claimed_by)).fetchall()
    return [
        ClaimedMessage(r["message_id"], r["kind"], r["payload"], r["attempts"], r["created_at"])
        for r in rows
    ]


def mark_sent(conn: Connection, message_id: int, claimed_by: str) -> None:
    conn.execute(MARK_SENT, (message_id,))
    conn.execute(RELEASE_CLAIM, (message_id, claimed_by))


def reschedule(
    conn: Connection,
    message_id: int,
    claimed_by: str,
    *,
    delay_seconds: float,
    error: str,
    refund_attempt: bool = False,
) -> None:
    conn.execute(RESCHEDULE, (delay_seconds, error, 1 if refund_attempt else 0, message_id))
    conn.execute(RELEASE_CLAIM, (message_id, claimed_by))


def mark_dead(conn: Connection, message_id: int, claimed_by: str, error: str) -> None:
    conn.execute(MARK_DEAD, (error, message_id))
    conn.execute(RELEASE_CLAIM, (message_id, claimed_by))


def metrics_snapshot(db: Database) -> dict[str, int]:
    """Counts for the daemon's /metrics: monotonic counters (``*_total``) and current gauges."""
    out: dict[str, int] = {}
    with db.connection() as conn:
        for row in conn.execute(METRIC_COUNTERS).fetchall():
            out[f"{row['name']}_total"] = int(row["value"])
        for row in conn.execute(METRIC_VOTES).fetchall():
            out[f"{row['platform']}_feedback_{row['vote']}"] = int(row["n"])
        for row in conn.execute(METRIC_THREADS).fetchall():
            out[f"{row['platform']}_threads_answered"] = int(row["n"])
        for row in conn.execute(METRIC_OUTBOX).fetchall():
            for state in ("sent", "pending", "dead"):
                out[f"outbox_{row['kind']}_{state}"] = int(row[state])
        in_flight = conn.execute(METRIC_IN_FLIGHT).fetchone()
        out["outbox_in_flight"] = int(in_flight["n"]) if in_flight else 0
    return out


def after_post(
    db: Database,
    flow: AnswerFlow,
    platform: str,
    channel: str,
    thread: str,
    answer: Answer,
    counter: str,
) -> None:
    """Count a posted answer and tell the flow where it went (for source-updated notices)."""
    with db.connection() as conn:
        bump(conn, counter)
        if answer.mode == "unavailable":
            bump(conn, f"{platform}_answers_unavailable")
    if answer.unit_id:
        try:
            flow.record_post(answer.unit_id, platform=platform, channel=channel, thread=thread)
        except Exception:
            # The answer is posted; only its source-updated notices are at stake.
            log.exception("could not record where unit %s was posted", answer.unit_id)
