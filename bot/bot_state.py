"""Named queries for the chat bot's own state (migration 0005).

Event dedupe, answered threads, feedback votes and counters. The outbox's claim protocol is in
:mod:`store.outbox`; the figures for /metrics in :mod:`store.metrics`.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from bot.answers import Answer, AnswerFlow
from store import answer_stats
from store.db import Connection, Database
from store.scope import Scope

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


def after_post(
    db: Database,
    flow: AnswerFlow,
    platform: str,
    channel: str,
    thread: str,
    answer: Answer,
    counter: str,
    scope: Scope | None = None,
) -> None:
    """Count a posted answer and tell the flow where it went (for source-updated notices);
    with its ``scope``, also record it as served (the App Home's figures, the pane's prompts)."""
    with db.connection() as conn:
        bump(conn, counter)
        if answer.mode == "unavailable":
            bump(conn, f"{platform}_answers_unavailable")
        elif scope is not None and answer.standalone_question.strip():
            served = answer_stats.Served(
                platform,
                channel,
                thread,
                scope.key(),
                answer.unit_id,
                answer.standalone_question.strip(),
                answer.cached,
            )
            answer_stats.record_served(conn, served)
    if answer.unit_id:
        try:
            flow.record_post(answer.unit_id, platform=platform, channel=channel, thread=thread)
        except Exception:
            # The answer is posted; only its source-updated notices are at stake.
            log.exception("could not record where unit %s was posted", answer.unit_id)
