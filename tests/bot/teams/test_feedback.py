"""Teams' native feedback over real HTTP: the thumbs Teams draws under an answer sent with
``channelData.feedbackLoopEnabled`` arrive as signed ``message/submitAction`` invokes and are
recorded exactly as the old Helpful / Not helpful buttons were."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fakes.flow import FakeFlow
from fakes.teams import (
    PERSONAL,
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

from bot.platform import ActionValue
from bot.teams import state
from store.db import Database

OK = {"status": 200}


@pytest.fixture
def db(module_db: Database) -> Database:
    return reset_teams_tables(module_db)


@pytest.fixture
def bot(db: Database, flow: FakeFlow) -> Iterator[RunningTeamsBot]:
    with running_teams_bot(db, flow) as running:
        yield running


def _votes(db: Database) -> list[dict[str, Any]]:
    with db.connection() as conn:
        return conn.execute(
            "SELECT unit_id, platform, user_id, vote FROM feedback ORDER BY unit_id"
        ).fetchall()


def _counters(db: Database) -> dict[str, int]:
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT name, value FROM bot_counters WHERE name LIKE 'teams_votes_%'"
        ).fetchall()
    return {r["name"]: r["value"] for r in rows}


def _wait(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _answered(bot: RunningTeamsBot, posts: int = 1) -> Sent:
    """The ``posts``-th answer message, once the bot has finished with it (counted as posted
    or refreshed): a person needs seconds to click, a test does not."""

    def finished() -> int:
        with bot.db.connection() as conn:
            row = conn.execute(
                "SELECT coalesce(sum(value), 0) AS n FROM bot_counters"
                " WHERE name IN ('teams_answers_posted', 'teams_refreshes')"
            ).fetchone()
        assert row is not None
        return int(row["n"])

    _wait(lambda: finished() >= posts)
    return bot.connector.wait_messages(posts)[posts - 1]


def _ask_in_channel(bot: RunningTeamsBot, root: str) -> Sent:
    bot.post(channel_message(bot.connector.url, "vpn?", id=root))
    return _answered(bot)


def _thumbs(bot: RunningTeamsBot, reply: Sent, reaction: str, **extra: str) -> Any:
    activity = feedback_invoke(
        bot.connector.url,
        reaction,
        conversation=reply.conversation,
        message_id=reply.activity_id,
        **extra,
    )
    response = bot.post(activity)
    assert response.status_code == 200
    return response.json()


def test_teams_answers_ask_for_teams_own_thumbs(bot: RunningTeamsBot) -> None:
    reply = _ask_in_channel(bot, "1700000000500")
    assert reply.body["channelData"] == {"feedbackLoopEnabled": True}
    assert [a["verb"] for a in reply.card["actions"]] == ["kb_refresh"]


def test_teams_thumbs_up_is_recorded_as_helpful(
    bot: RunningTeamsBot, flow: FakeFlow, db: Database
) -> None:
    bot.post(personal_message(bot.connector.url, "how do I get VPN access?", id="p1"))
    reply = _answered(bot)
    assert reply.conversation == PERSONAL
    assert _thumbs(bot, reply, "like") == OK
    assert _votes(db) == [
        {"unit_id": "unit-1", "platform": "teams", "user_id": USER_AAD, "vote": "helpful"}
    ]
    assert _counters(db) == {"teams_votes_helpful": 1}


def test_teams_thumbs_down_is_recorded_as_not_helpful(
    bot: RunningTeamsBot, flow: FakeFlow, db: Database
) -> None:
    reply = _ask_in_channel(bot, "1700000000510")
    # The comment typed into Teams' form comes along; the vote is what is recorded.
    comment = '{"feedbackText":"It named the wrong portal"}'
    assert _thumbs(bot, reply, "dislike", feedback=comment) == OK
    assert _votes(db) == [
        {"unit_id": "unit-1", "platform": "teams", "user_id": USER_AAD, "vote": "not_helpful"}
    ]
    assert _counters(db) == {"teams_votes_not_helpful": 1}


def test_thumbs_and_old_buttons_are_one_changeable_vote(bot: RunningTeamsBot, db: Database) -> None:
    reply = _ask_in_channel(bot, "1700000000520")
    [refresh] = reply.card["actions"]
    where = {"conversation": reply.conversation, "card_id": reply.activity_id}
    old = bot.post(card_action(bot.connector.url, "kb_helpful", refresh["data"], **where))
    assert old.json()["value"] == "Thanks, noted that this answer was helpful."
    _thumbs(bot, reply, "like")  # the same vote again: no second count
    _thumbs(bot, reply, "dislike")  # changed
    assert [v["vote"] for v in _votes(db)] == ["not_helpful"]
    assert _counters(db) == {"teams_votes_helpful": 1, "teams_votes_not_helpful": 1}


def test_thumbs_on_a_refreshed_card_rate_the_new_answer(
    bot: RunningTeamsBot, flow: FakeFlow, db: Database
) -> None:
    reply = _ask_in_channel(bot, "1700000000530")
    [refresh] = reply.card["actions"]
    where = {"conversation": reply.conversation, "card_id": reply.activity_id}
    bot.post(card_action(bot.connector.url, "kb_refresh", refresh["data"], **where))
    update = _answered(bot, posts=2)
    assert update.method == "PUT" and update.body["channelData"] == {"feedbackLoopEnabled": True}
    _thumbs(bot, reply, "like")
    assert [v["unit_id"] for v in _votes(db)] == ["unit-2"]  # the regenerated unit


def test_thumbs_on_a_card_refreshed_into_a_failure_record_nothing(
    bot: RunningTeamsBot, flow: FakeFlow, db: Database
) -> None:
    reply = _ask_in_channel(bot, "1700000000535")
    [refresh] = reply.card["actions"]
    where = {"conversation": reply.conversation, "card_id": reply.activity_id}
    flow.fail = RuntimeError("the model is down")
    bot.post(card_action(bot.connector.url, "kb_refresh", refresh["data"], **where))
    update = bot.connector.wait_messages(2)[1]
    assert update.method == "PUT" and "channelData" not in update.body
    _wait(lambda: not _recorded(db))  # the card no longer rates unit-1
    _thumbs(bot, reply, "like")
    assert _votes(db) == []


def _recorded(db: Database) -> list[dict[str, Any]]:
    with db.connection() as conn:
        return conn.execute("SELECT unit_id FROM teams_answer_messages").fetchall()


def test_thumbs_on_an_answer_that_cannot_be_rated_record_nothing(
    db: Database, flow: FakeFlow
) -> None:
    flow.mode = "unavailable"  # no cached unit: nothing a vote could be recorded on
    with running_teams_bot(db, flow) as bot:
        reply = _ask_in_channel(bot, "1700000000540")
        assert "channelData" not in reply.body
        assert _thumbs(bot, reply, "like") == OK
    assert _votes(db) == [] and _counters(db) == {}


@pytest.mark.parametrize(
    "value",
    [
        "x",
        None,
        {"actionName": "feedback", "actionValue": "like"},
        {"actionName": "feedback", "actionValue": {"reaction": "love"}},
        {"actionName": "feedback", "actionValue": {"reaction": ["like"]}},
        {"actionName": "somethingElse", "actionValue": {"reaction": "like"}},
    ],
    ids=["string", "null", "value-string", "unknown-reaction", "reaction-list", "other-action"],
)
def test_a_signed_feedback_invoke_of_odd_shape_is_acked_and_records_nothing(
    bot: RunningTeamsBot, db: Database, value: object, caplog: pytest.LogCaptureFixture
) -> None:
    reply = _ask_in_channel(bot, "1700000000550")
    activity = feedback_invoke(
        bot.connector.url, "like", conversation=reply.conversation, message_id=reply.activity_id
    )
    activity["value"] = value
    with caplog.at_level(logging.INFO):
        response = bot.post(activity)
    assert (response.status_code, response.json()) == (200, OK)
    assert _votes(db) == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_thumbs_on_a_message_that_is_not_a_recorded_answer_record_nothing(
    bot: RunningTeamsBot, db: Database
) -> None:
    reply = _ask_in_channel(bot, "1700000000560")
    activity = feedback_invoke(
        bot.connector.url, "like", conversation=reply.conversation, message_id="1699999999999"
    )
    assert bot.post(activity).json() == OK
    # Nor does a known message id in another conversation count.
    elsewhere = feedback_invoke(
        bot.connector.url, "like", conversation=PERSONAL, message_id=reply.activity_id
    )
    assert bot.post(elsewhere).json() == OK
    assert _votes(db) == []


def test_unsigned_or_forged_feedback_is_refused_and_records_nothing(
    bot: RunningTeamsBot, db: Database
) -> None:
    reply = _ask_in_channel(bot, "1700000000570")
    activity = feedback_invoke(
        bot.connector.url, "like", conversation=reply.conversation, message_id=reply.activity_id
    )
    assert bot.post(activity, token=None).status_code == 401
    other_app = bot.login.sign(activity["serviceUrl"], aud="someone-elses-app")
    assert bot.post(activity, token=other_app).status_code == 401
    # Signed by a key the Bot Framework never published.
    unknown_key = bot.login.sign(activity["serviceUrl"], kid="key-unpublished")
    assert bot.post(activity, token=unknown_key).status_code == 401
    # A genuine token for another service URL does not vouch for this activity.
    elsewhere = bot.login.sign("https://smba.attacker.example/")
    assert bot.post(activity, token=elsewhere).status_code == 401
    assert _votes(db) == [] and _counters(db) == {}


def test_answer_messages_older_than_the_feedback_window_are_pruned(db: Database) -> None:
    with db.connection() as conn:
        state.remember_answer_message(conn, PERSONAL, "old", "unit-old", "q?")
        state.remember_answer_message(conn, PERSONAL, "new", "unit-new", "q?")
        conn.execute(
            "UPDATE teams_answer_messages SET posted_at = now() - interval '91 days'"
            " WHERE activity_id = 'old'"
        )
        state.prune(conn, seen_seconds=86400, turns_seconds=86400, answers_seconds=90 * 86400)
        assert state.answer_message(conn, PERSONAL, "old") is None
        assert state.answer_message(conn, PERSONAL, "new") == ActionValue("unit-new", "q?")
