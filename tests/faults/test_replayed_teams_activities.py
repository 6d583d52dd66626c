"""Fault class 10 on Teams: a replayed signed activity is acted on once.

A Bot Framework token stays valid for about an hour, so the same bytes with the same token can
arrive twice (a replay, or the connector redelivering). Against the real Teams endpoint with
signed test-key JWTs: the second copy of a question, an admin's ``sync``, a card click or a
thumbs vote does nothing more; distinct activities still each count.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fakes.flow import FakeFlow
from fakes.teams import (
    USER_AAD,
    RunningTeamsBot,
    Sent,
    card_action,
    channel_message,
    feedback_invoke,
    personal_message,
    reset_teams_tables,
    running_teams_bot,
)

from store.db import Database


@pytest.fixture
def flow() -> FakeFlow:
    return FakeFlow()


@pytest.fixture
def db(module_db: Database) -> Database:
    return reset_teams_tables(module_db)


@pytest.fixture
def bot(db: Database, flow: FakeFlow) -> Iterator[RunningTeamsBot]:
    with running_teams_bot(db, flow, KB_TEAMS_ADMINS=USER_AAD) as running:
        yield running


def _twice(bot: RunningTeamsBot, activity: dict[str, Any]) -> tuple[httpx.Response, ...]:
    """The same bytes with the same token, sent twice."""
    body = json.dumps(activity).encode()
    token = bot.login.sign(activity["serviceUrl"])
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    return tuple(bot.http.post("/api/messages", content=body, headers=headers) for _ in range(2))


def _wait(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _settle() -> None:
    """Time for a second answer or update to show up, were one coming."""
    time.sleep(0.4)


def _counter(db: Database, name: str) -> int:
    with db.connection() as conn:
        row = conn.execute("SELECT value FROM bot_counters WHERE name = %s", (name,)).fetchone()
    return int(row["value"]) if row else 0


def _answer(bot: RunningTeamsBot, db: Database, root: str) -> Sent:
    bot.post(channel_message(bot.connector.url, "vpn?", id=root))
    _wait(lambda: _counter(db, "teams_answers_posted") == 1)
    [reply] = bot.connector.wait_messages()
    return reply


def test_a_replayed_teams_question_is_answered_once(
    bot: RunningTeamsBot, flow: FakeFlow, db: Database
) -> None:
    first, again = _twice(bot, personal_message(bot.connector.url, "what is OPS-7?"))
    assert first.status_code == again.status_code == 200
    bot.connector.wait_messages()
    _settle()
    assert len(flow.calls) == 1 and len(bot.connector.messages()) == 1
    assert _counter(db, "teams_redeliveries_ignored") == 1


def test_replayed_teams_sync_command_queues_one_sync(bot: RunningTeamsBot, db: Database) -> None:
    first, again = _twice(bot, channel_message(bot.connector.url, "sync confluence"))
    assert first.status_code == again.status_code == 200
    [reply] = bot.connector.wait_messages()
    assert "Queued a sync" in str(reply.body.get("text"))
    _settle()
    with db.connection() as conn:
        row = conn.execute("SELECT count(*) AS n FROM sync_requests").fetchone()
    assert row is not None and row["n"] == 1
    assert len(bot.connector.messages()) == 1
    # A second, distinct request is still queued.
    bot.post(channel_message(bot.connector.url, "sync confluence"))
    bot.connector.wait_messages(2)
    assert _counter(db, "teams_sync_requests") == 2


def test_a_replayed_teams_thumbs_vote_is_recorded_once(bot: RunningTeamsBot, db: Database) -> None:
    reply = _answer(bot, db, "1700000000600")
    where = {"conversation": reply.conversation, "message_id": reply.activity_id}
    like = feedback_invoke(bot.connector.url, "like", **where)
    first, again = _twice(bot, like)
    assert first.json() == again.json() == {"status": 200}
    assert _counter(db, "teams_votes_helpful") == 1
    # The person changes their mind; replaying the old "like" must not change it back.
    bot.post(feedback_invoke(bot.connector.url, "dislike", **where))
    bot.post(like)
    with db.connection() as conn:
        votes = conn.execute("SELECT vote FROM feedback").fetchall()
    assert votes == [{"vote": "not_helpful"}]
    assert _counter(db, "teams_votes_helpful") == 1
    assert _counter(db, "teams_votes_not_helpful") == 1
    assert _counter(db, "teams_redeliveries_ignored") == 2


def test_a_replayed_teams_old_vote_button_click_is_recorded_once(
    bot: RunningTeamsBot, db: Database
) -> None:
    reply = _answer(bot, db, "1700000000610")
    [refresh] = reply.card["actions"]
    where = {"conversation": reply.conversation, "card_id": reply.activity_id}
    helpful = card_action(bot.connector.url, "kb_helpful", refresh["data"], **where)
    first, again = _twice(bot, helpful)
    assert first.json()["value"] == "Thanks, noted that this answer was helpful."
    assert again.status_code == 200 and "handled once" in again.json()["value"]
    bot.post(card_action(bot.connector.url, "kb_not_helpful", refresh["data"], **where))
    bot.post(helpful)
    with db.connection() as conn:
        votes = conn.execute("SELECT vote FROM feedback").fetchall()
    assert votes == [{"vote": "not_helpful"}]


def test_a_replayed_teams_refresh_regenerates_once(
    bot: RunningTeamsBot, flow: FakeFlow, db: Database
) -> None:
    reply = _answer(bot, db, "1700000000620")
    [refresh] = reply.card["actions"]
    where = {"conversation": reply.conversation, "card_id": reply.activity_id}
    click = card_action(bot.connector.url, "kb_refresh", refresh["data"], **where)
    first, again = _twice(bot, click)
    assert first.json()["value"].startswith("Refreshing")
    assert "handled once" in again.json()["value"]
    bot.connector.wait_messages(2)
    _settle()
    assert [c.fresh for c in flow.calls] == [False, True]
    assert [m.method for m in bot.connector.messages()] == ["POST", "PUT"]


def test_an_invoke_without_an_id_is_deduplicated_on_its_signed_bytes(
    bot: RunningTeamsBot, db: Database
) -> None:
    reply = _answer(bot, db, "1700000000630")
    where = {"conversation": reply.conversation, "message_id": reply.activity_id}
    like = feedback_invoke(bot.connector.url, "like", **where)
    del like["id"]
    _twice(bot, like)
    assert _counter(db, "teams_redeliveries_ignored") == 1
    dislike = feedback_invoke(bot.connector.url, "dislike", **where)
    del dislike["id"]
    bot.post(dislike)  # other bytes: a vote of its own
    assert _counter(db, "teams_votes_helpful") == _counter(db, "teams_votes_not_helpful") == 1


def test_a_token_valid_longer_than_replays_are_remembered_is_refused(
    bot: RunningTeamsBot, flow: FakeFlow
) -> None:
    activity = personal_message(bot.connector.url, "what is OPS-7?")
    long_lived = bot.login.sign(activity["serviceUrl"], exp=int(time.time()) + 3 * 24 * 3600)
    assert bot.post(activity, token=long_lived).status_code == 401
    _settle()
    assert flow.calls == []
