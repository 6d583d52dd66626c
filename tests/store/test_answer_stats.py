"""Answers served (store/answer_stats.py and its migration): the pane's prompts read one scope
only, the App Home's 7-day figures and least helpful answers, and the table's own pruning."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from bot import bot_state
from store import answer_stats
from store.answer_stats import Served
from store.db import Database
from store.migrate import available, migrate

ENG, OPS = "confluence:ENG", "jira:OPS"


@pytest.fixture
def db(module_db: Database) -> Iterator[Database]:
    with module_db.connection() as conn:
        conn.execute("TRUNCATE answers_served, feedback")
    yield module_db


def _serve(
    db: Database,
    question: str,
    *,
    scope: str = ENG,
    cached: bool = True,
    times: int = 1,
    days_ago: float = 0,
    unit: str | None = None,
    channel: str = "CENG",
    thread: str = "1700000000.000100",
) -> None:
    with db.connection() as conn:
        for _ in range(times):
            served = Served("slack", channel, thread, scope, unit, question, cached)
            answer_stats.record_served(conn, served)
        if days_ago:
            conn.execute(
                "UPDATE answers_served SET served_at = now() - make_interval(secs => %s)"
                " WHERE question = %s",
                (days_ago * 86400, question),
            )


def _popular(db: Database, scope: str) -> tuple[str, ...]:
    with db.connection() as conn:
        return answer_stats.popular_cached_questions(conn, scope, limit=4)


def test_the_migration_creates_the_table_and_refuses_a_row_without_a_scope(
    fresh_schema: Database,
) -> None:
    [migration] = [m for m in available() if m.name == "answers_served"]
    migrate(fresh_schema, upto=migration.number - 1)
    with fresh_schema.connection() as conn:
        assert conn.execute("SELECT to_regclass('answers_served') AS t").fetchone()["t"] is None
    migrate(fresh_schema, upto=migration.number)
    with pytest.raises(psycopg.errors.CheckViolation), fresh_schema.connection() as conn:
        answer_stats.record_served(conn, Served("slack", "C", "1.1", "", None, "q?", True))


def test_popular_questions_are_the_most_asked_cached_ones_of_exactly_that_scope(
    db: Database,
) -> None:
    _serve(db, "How do I deploy?", cached=False)
    _serve(db, "how do I deploy", times=3)  # the same question, normalised
    _serve(db, "Where is the VPN guide?", times=2)
    _serve(db, "Asked once, generated, never served from cache?", cached=False)
    _serve(db, "What is the ops secret?", scope=OPS, times=9)
    _serve(db, "What does everything say?", scope="*", times=9)
    _serve(db, "An old favourite?", times=9, days_ago=31)
    # Shown as last worded, most asked first; nothing from another scope, nothing stale.
    assert _popular(db, ENG) == ("how do I deploy", "Where is the VPN guide?")
    assert _popular(db, OPS) == ("What is the ops secret?",)
    assert _popular(db, "*") == ("What does everything say?",)
    assert _popular(db, "confluence:DOCS") == ()


def test_seven_day_figures_count_answers_and_those_from_the_cache(db: Database) -> None:
    _serve(db, "a?", times=3)
    _serve(db, "b?", cached=False)
    _serve(db, "c?", times=5, days_ago=8)
    with db.connection() as conn:
        figures = answer_stats.served_7d(conn, "slack")
        assert answer_stats.served_7d(conn, "teams").served == 0
    assert (figures.served, figures.from_cache, figures.hit_rate) == (4, 3, 0.75)


def test_least_helpful_answers_are_worst_first_with_the_thread_a_person_can_open(
    db: Database,
) -> None:
    _serve(db, "Mostly bad?", unit="u-bad", channel="CENG", thread="1700000001.000100")
    _serve(db, "Mostly bad (in a DM)?", unit="u-bad", channel="D0DM", thread="1700000009.0001")
    _serve(db, "Split?", unit="u-split", channel="COPS", thread="1700000002.000100")
    _serve(db, "Fine?", unit="u-fine")
    with db.connection() as conn:
        for user in ("U1", "U2", "U3"):
            bot_state.record_vote(conn, "u-bad", "slack", user, "not_helpful")
        bot_state.record_vote(conn, "u-split", "slack", "U1", "not_helpful")
        bot_state.record_vote(conn, "u-split", "slack", "U2", "helpful")
        bot_state.record_vote(conn, "u-fine", "slack", "U1", "helpful")
        bot_state.record_vote(conn, "u-unknown", "slack", "U1", "not_helpful")
        bot_state.record_vote(conn, "u-old", "slack", "U1", "not_helpful")
        conn.execute(
            "UPDATE feedback SET updated_at = now() - interval '8 days' WHERE unit_id = 'u-old'"
        )
        worst, total = answer_stats.least_helpful_7d(conn, "slack", limit=2)
        everything, _ = answer_stats.least_helpful_7d(conn, "slack", limit=10)
    assert total == 3
    assert [(a.unit_id, a.not_helpful, a.helpful) for a in worst] == [
        ("u-bad", 3, 0),
        ("u-unknown", 1, 0),
    ]
    # The channel thread, not the later DM one: an admin cannot open someone else's DM.
    assert (worst[0].question, worst[0].channel, worst[0].thread) == (
        "Mostly bad?",
        "CENG",
        "1700000001.000100",
    )
    assert worst[1].question is None and worst[1].channel is None
    assert [a.unit_id for a in everything] == ["u-bad", "u-unknown", "u-split"]


def test_recording_prunes_rows_older_than_the_retention(db: Database) -> None:
    _serve(db, "ancient?", times=3, days_ago=answer_stats.KEEP_DAYS + 1)
    _serve(db, "recent?", days_ago=answer_stats.KEEP_DAYS - 1)
    _serve(db, "now?")
    with db.connection() as conn:
        rows = conn.execute("SELECT question FROM answers_served ORDER BY served_id").fetchall()
    assert [r["question"] for r in rows] == ["recent?", "now?"]
