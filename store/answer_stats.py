"""Answers served, as Postgres rows whichever answer-cache backend served them (migration
``answers_served``; docs/ARCHITECTURE.md, "Slack AI surface").

One row per answer posted: where, in which scope, to which question, and whether the cache
served it. The App Home reads the 7-day figures and the least helpful answers from it; Slack's
assistant pane reads the questions people ask most in one scope. Scopes are compared in SQL,
by their canonical key: a scope's questions are never read for another scope.
"""

from __future__ import annotations

from dataclasses import dataclass

from store.cache import normalise
from store.db import Connection

KEEP_DAYS = 90
PROMPT_WINDOW_DAYS = 30
_PRUNE_BATCH = 50  # rows past KEEP_DAYS removed by each insert: bounded work, no backlog

RECORD_SERVED = f"""
WITH pruned AS (
    DELETE FROM answers_served WHERE served_id IN (
        SELECT served_id FROM answers_served
        WHERE served_at < now() - interval '{KEEP_DAYS} days'
        ORDER BY served_at LIMIT {_PRUNE_BATCH} FOR UPDATE SKIP LOCKED
    )
)
INSERT INTO answers_served
    (platform, channel, thread, scope_key, unit_id, question, question_norm, from_cache)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
"""

# Questions asked in one scope at least once answered from the cache (so asked at least twice:
# the first ask generates), most asked first; each shown as it was last worded (looked up for
# the few shown only).
POPULAR_CACHED_QUESTIONS = """
WITH asked AS (
    SELECT question_norm, count(*) AS times, max(served_at) AS last
    FROM answers_served
    WHERE scope_key = %(scope)s AND served_at > now() - make_interval(days => %(days)s)
    GROUP BY question_norm
    HAVING bool_or(from_cache)
    ORDER BY times DESC, last DESC, question_norm
    LIMIT %(limit)s
)
SELECT (SELECT s.question FROM answers_served s
        WHERE s.scope_key = %(scope)s AND s.question_norm = a.question_norm
        ORDER BY s.served_at DESC LIMIT 1) AS question
FROM asked a
ORDER BY a.times DESC, a.last DESC, a.question_norm
"""

SERVED_7D = """
SELECT count(*) AS served, count(*) FILTER (WHERE from_cache) AS from_cache
FROM answers_served WHERE platform = %s AND served_at > now() - interval '7 days'
"""

# Answers voted Not helpful in the last 7 days, worst first (most net Not helpful votes),
# with the question and the thread they were last posted in (a channel's before a DM's, so
# an admin can open it).
LEAST_HELPFUL_7D = """
WITH rated AS (
    SELECT unit_id,
           count(*) FILTER (WHERE vote = 'helpful') AS helpful,
           count(*) FILTER (WHERE vote = 'not_helpful') AS not_helpful,
           max(updated_at) AS last_vote
    FROM feedback
    WHERE platform = %(platform)s AND updated_at > now() - interval '7 days'
    GROUP BY unit_id
    HAVING count(*) FILTER (WHERE vote = 'not_helpful') > 0
),
worst AS (  -- cut before looking up where each was posted
    SELECT *, count(*) OVER () AS total FROM rated
    ORDER BY not_helpful - helpful DESC, not_helpful DESC, last_vote DESC, unit_id
    LIMIT %(limit)s
)
SELECT w.unit_id, w.helpful, w.not_helpful, w.total, p.question, p.channel, p.thread
FROM worst w
LEFT JOIN LATERAL (
    SELECT s.question, s.channel, s.thread FROM answers_served s
    WHERE s.unit_id = w.unit_id AND s.platform = %(platform)s
    ORDER BY s.channel LIKE 'D%%', s.served_at DESC LIMIT 1
) p ON true
ORDER BY w.not_helpful - w.helpful DESC, w.not_helpful DESC, w.last_vote DESC, w.unit_id
"""


@dataclass(frozen=True)
class Served:
    """One answer posted: ``question`` is the standalone question the flow answered."""

    platform: str
    channel: str
    thread: str
    scope_key: str
    unit_id: str | None
    question: str
    from_cache: bool


@dataclass(frozen=True)
class ServedFigures:
    served: int
    from_cache: int

    @property
    def hit_rate(self) -> float | None:
        return self.from_cache / self.served if self.served else None


@dataclass(frozen=True)
class RatedAnswer:
    """An answer voted Not helpful; where and to what it was posted, when that is known."""

    unit_id: str
    helpful: int
    not_helpful: int
    question: str | None
    channel: str | None
    thread: str | None


def record_served(conn: Connection, served: Served) -> None:
    conn.execute(
        RECORD_SERVED,
        (
            served.platform,
            served.channel,
            served.thread,
            served.scope_key,
            served.unit_id,
            served.question,
            normalise(served.question),
            served.from_cache,
        ),
    )


def popular_cached_questions(
    conn: Connection, scope_key: str, *, limit: int, days: int = PROMPT_WINDOW_DAYS
) -> tuple[str, ...]:
    """The questions most asked in exactly this scope and answered from the cache."""
    rows = conn.execute(
        POPULAR_CACHED_QUESTIONS, {"scope": scope_key, "days": days, "limit": limit}
    ).fetchall()
    return tuple(r["question"] for r in rows)


def served_7d(conn: Connection, platform: str) -> ServedFigures:
    row = conn.execute(SERVED_7D, (platform,)).fetchone()
    assert row is not None  # an aggregate always returns a row
    return ServedFigures(int(row["served"]), int(row["from_cache"]))


def least_helpful_7d(
    conn: Connection, platform: str, *, limit: int
) -> tuple[tuple[RatedAnswer, ...], int]:
    """Up to ``limit`` least helpful answers, and how many there are in all."""
    rows = conn.execute(LEAST_HELPFUL_7D, {"platform": platform, "limit": limit}).fetchall()
    answers = tuple(
        RatedAnswer(
            r["unit_id"],
            int(r["helpful"]),
            int(r["not_helpful"]),
            r["question"],
            r["channel"],
            r["thread"],
        )
        for r in rows
    )
    return answers, int(rows[0]["total"]) if rows else 0
