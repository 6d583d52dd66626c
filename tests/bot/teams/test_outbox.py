"""Outbox delivery into Teams: "source updated" notices posted proactively into the thread
an answer lives in (stored service URL), 429s, unknown conversations, ops alerts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes.flow import FakeFlow
from fakes.teams import (
    CHANNEL,
    PERSONAL,
    RunningTeamsBot,
    card_action,
    channel_message,
    personal_message,
    reset_teams_tables,
    running_teams_bot,
)

from bot.outbox import OutboxDeliverer, OutboxPolicy
from bot.platform import ActionValue
from bot.teams.platform import TeamsPlatform, build_teams_platform
from store import outbox, sync_state
from store.db import Database

FAST = OutboxPolicy(base_delay=0.05, max_delay=0.2, max_attempts=3, lease_seconds=60)


@pytest.fixture
def db(module_db: Database) -> Database:
    return reset_teams_tables(module_db)


@pytest.fixture
def bot(db: Database, flow: FakeFlow) -> Iterator[RunningTeamsBot]:
    with running_teams_bot(db, flow) as running:
        yield running


@pytest.fixture
def platform(bot: RunningTeamsBot, db: Database) -> Iterator[TeamsPlatform]:
    # What the daemon builds: its own connector client, reading stored conversations.
    teams = build_teams_platform(bot.settings.require_teams(), db)
    try:
        yield teams
    finally:
        teams.close()


def _deliverer(db: Database, platform: TeamsPlatform, **kwargs: Any) -> OutboxDeliverer:
    return OutboxDeliverer(db, {"teams": platform}, kwargs.pop("ops", None), policy=FAST, **kwargs)


def _notice_from_post(flow: FakeFlow, **changes: Any) -> dict[str, Any]:
    """The payload sync.freshness queues for a recorded post, as it would after a change."""
    post = flow.posts[-1]
    payload = {
        "platform": post.platform,
        "channel": post.channel,
        "thread": post.thread,
        "artifact_id": "confluence:101",
        "title": "VPN setup [draft]",
        "url": "https://wiki.example/pages/101",
        "change": "updated",
        "old_version": "3",
        "new_version": "4",
        "question": "how do I get VPN access?",
        "unit_id": post.unit_id,
    }
    payload.update(changes)
    return payload


def _enqueue(db: Database, kind: str, payload: dict[str, Any]) -> None:
    with db.connection() as conn:
        outbox.enqueue_json(conn, kind, f"{kind}:{json.dumps(payload, sort_keys=True)}", payload)


def _row(db: Database) -> dict[str, Any]:
    with db.connection() as conn:
        row = conn.execute("SELECT * FROM outbox ORDER BY message_id LIMIT 1").fetchone()
    assert row is not None
    return row


def _answer_in_channel(bot: RunningTeamsBot, flow: FakeFlow, root: str) -> None:
    bot.post(channel_message(bot.connector.url, "how do I get VPN access?", id=root))
    bot.connector.wait_messages()
    assert _wait_posts(flow, 1)


def _wait_posts(flow: FakeFlow, count: int) -> bool:
    import time

    deadline = time.monotonic() + 5
    while len(flow.posts) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return len(flow.posts) >= count


def test_source_change_notice_lands_in_the_answers_thread(
    bot: RunningTeamsBot, flow: FakeFlow, db: Database, platform: TeamsPlatform
) -> None:
    root = "1700000000500"
    _answer_in_channel(bot, flow, root)
    _enqueue(db, "notice", _notice_from_post(flow))
    assert _deliverer(db, platform).deliver_due(10) == 1
    notice = bot.connector.messages()[-1]
    assert notice.method == "POST"
    assert notice.conversation == f"{CHANNEL};messageid={root}"
    text = notice.card_text
    assert text.startswith("🔄 **Source updated:**")
    assert "[VPN setup (draft)](https://wiki.example/pages/101)" in text
    assert "changed (version 3 → 4)" in text
    [refresh] = notice.card["actions"]
    assert refresh["verb"] == "kb_refresh"
    assert ActionValue.decode(refresh["data"]["kb"]) == ActionValue(
        "unit-1", "how do I get VPN access?"
    )
    assert "https://wiki.example/pages/101" in notice.card["fallbackText"]
    assert _row(db)["sent_at"] is not None
    assert _deliverer(db, platform).deliver_due(10) == 0  # sent once

    # Refresh on the notice turns it into a fresh answer, in place.
    flow.text = "Fresh steps [1]."
    response = bot.post(
        card_action(
            bot.connector.url,
            "kb_refresh",
            refresh["data"],
            conversation=notice.conversation,
            card_id=notice.activity_id,
        )
    )
    assert response.status_code == 200
    update = bot.connector.wait_messages(3)[-1]
    assert update.method == "PUT" and update.activity_id == notice.activity_id
    assert update.card["body"][0]["text"] == "Fresh steps [1]."
    assert flow.calls[-1].fresh and flow.calls[-1].question == "how do I get VPN access?"


def test_deleted_source_notice_in_a_personal_chat(
    bot: RunningTeamsBot, flow: FakeFlow, db: Database, platform: TeamsPlatform
) -> None:
    bot.post(personal_message(bot.connector.url, "how do I get VPN access?"))
    bot.connector.wait_messages()
    assert _wait_posts(flow, 1)
    _enqueue(db, "notice", _notice_from_post(flow, change="deleted", new_version=None))
    assert _deliverer(db, platform).deliver_due(10) == 1
    notice = bot.connector.messages()[-1]
    assert notice.conversation == PERSONAL  # a chat has no threads
    assert "🗑️ **Source deleted:**" in notice.card_text and "no longer exists" in notice.card_text


def test_throttled_notice_waits_for_retry_after_without_spending_an_attempt(
    bot: RunningTeamsBot, flow: FakeFlow, db: Database, platform: TeamsPlatform
) -> None:
    _answer_in_channel(bot, flow, "1700000000600")
    _enqueue(db, "notice", _notice_from_post(flow))
    bot.connector.fail(status=429, retry_after=7)
    deliverer = _deliverer(db, platform)
    assert deliverer.deliver_due(10) == 0
    row = _row(db)
    assert row["sent_at"] is None and row["dead_at"] is None
    assert row["attempts"] == 0  # refunded: a 429 is not the message's fault
    assert "429" in row["last_error"]
    assert row["next_attempt_at"] > datetime.now(UTC) + timedelta(seconds=5)
    # Due again (as if 7 s had passed), but this deliverer still honours the pause.
    with db.connection() as conn:
        conn.execute("UPDATE outbox SET next_attempt_at = now()")
    assert deliverer.deliver_due(10) == 0
    assert [s.status for s in bot.connector.sent if s.body.get("type") != "typing"][-1] == 429
    # A fresh deliverer (say, after a restart and the wait) sends it.
    with db.connection() as conn:
        conn.execute("UPDATE outbox SET next_attempt_at = now()")
    assert _deliverer(db, platform).deliver_due(10) == 1
    assert bot.connector.messages()[-1].conversation == f"{CHANNEL};messageid=1700000000600"


def test_notice_for_an_unknown_conversation_is_dead_not_retried(
    bot: RunningTeamsBot, db: Database, platform: TeamsPlatform
) -> None:
    payload = {
        "platform": "teams",
        "channel": "19:never-seen@thread.tacv2",
        "thread": "1",
        "artifact_id": "jira:OPS-7",
        "change": "updated",
    }
    _enqueue(db, "notice", payload)
    assert _deliverer(db, platform).deliver_due(10) == 0
    row = _row(db)
    assert row["dead_at"] is not None and "no Teams conversation" in row["last_error"]
    assert bot.connector.sent == []


def test_bot_removed_from_the_team_is_permanent(
    bot: RunningTeamsBot, flow: FakeFlow, db: Database, platform: TeamsPlatform
) -> None:
    _answer_in_channel(bot, flow, "1700000000700")
    _enqueue(db, "notice", _notice_from_post(flow))
    bot.connector.fail(status=403)
    assert _deliverer(db, platform).deliver_due(10) == 0
    assert _row(db)["dead_at"] is not None


def test_ops_alert_starts_a_new_post_in_a_teams_channel(
    bot: RunningTeamsBot, flow: FakeFlow, db: Database, platform: TeamsPlatform
) -> None:
    _answer_in_channel(bot, flow, "1700000000800")  # the bot knows the channel from here
    deliverer = _deliverer(db, platform, ops=CHANNEL, ops_platform="teams")
    with db.connection() as conn:
        sync_state.record_failure(conn, "confluence", "HTTP 503 from wiki.example <html>", 41)
    assert deliverer.deliver_due(10) == 1
    alert = bot.connector.messages()[-1]
    assert alert.conversation == CHANNEL  # no ;messageid=: a new post
    assert alert.body["text"].startswith("🚨 **Sync of confluence failed** (run 41)")
    assert alert.body["textFormat"] == "markdown"
