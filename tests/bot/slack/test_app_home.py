"""The App Home through the real Bolt app: what everyone sees, what admins see, Sync now."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.flow import FakeFlow
from fakes.slack_api import ADMIN, RunningBot, new_trigger_id, reset_bot_tables, running_bot

from bot import bot_state
from store.db import Database


@pytest.fixture
def db(module_db: Database) -> Database:
    reset_bot_tables(module_db)
    with module_db.connection() as conn:
        conn.execute("TRUNCATE artifacts, sync_runs, webhook_events RESTART IDENTITY CASCADE")
    return module_db


@pytest.fixture
def bot(db: Database) -> Iterator[RunningBot]:
    with running_bot(db, FakeFlow()) as running:
        yield running


def _artifact(db: Database, source: str, key: str, n: int) -> None:
    with db.connection() as conn:
        conn.execute(
            "INSERT INTO artifacts (artifact_id, source, scope_key, title, url, version,"
            " content_hash, body) VALUES (%s, %s, %s, 't', 'https://x', '1', 'h', 'b')",
            (f"{source}:{key}-{n}", source, key),
        )


def _open_home(bot: RunningBot, user: str) -> dict[str, Any]:
    before = len(bot.slack.calls_to("views.publish"))
    event = {"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": "home"}
    assert bot.event(event).status_code == 200
    call = bot.slack.wait_calls("views.publish", before + 1)[-1]
    assert call.args["user_id"] == user
    view: dict[str, Any] = call.args["view"]
    assert view["type"] == "home"
    return view


def _texts(view: dict[str, Any]) -> str:
    return json.dumps(view["blocks"])


def test_everyone_sees_what_kb_bot_knows_and_how_to_ask(bot: RunningBot, db: Database) -> None:
    for n in range(3):
        _artifact(db, "confluence", "ENG", n)
    _artifact(db, "jira", "OPS", 1)
    with db.connection() as conn:
        bot_state.record_thread(conn, "slack", "CENG", "1.1")
    view = _open_home(bot, "UPLAIN")
    text = _texts(view)
    assert "*confluence* `ENG`: 3 items, last synced" in text
    assert "*jira* `OPS`: 1 items" in text
    assert "How to ask" in text and "<#CENG>" in text
    assert "For admins" not in text and "Last 7 days" not in text
    assert all(b["type"] != "actions" for b in view["blocks"])


def test_admins_see_sync_health_votes_and_sync_now(bot: RunningBot, db: Database) -> None:
    with db.connection() as conn:
        conn.execute(
            "INSERT INTO sync_runs (source, scopes, mode, status, finished_at)"
            " VALUES ('confluence', '{ENG}', 'incremental', 'failed', now()),"
            " ('confluence', '{ENG}', 'incremental', 'ok', now())"
        )
        conn.execute(
            "INSERT INTO webhook_events (source, delivery_id, artifact_id, kind, event, status)"
            " VALUES ('jira', 'd1', 'jira:OPS-1', 'changed', 'x', 'dead')"
        )
        bot_state.record_vote(conn, "u1", "slack", "UA", "helpful")
        bot_state.record_vote(conn, "u1", "slack", "UB", "helpful")
        bot_state.record_vote(conn, "u2", "slack", "UA", "not_helpful")
    view = _open_home(bot, ADMIN)
    text = _texts(view)
    assert "For admins" in text
    assert "*confluence*: 2 sync runs in 7 days, 1 failed" in text
    assert "*jira*: 0 sync runs in 7 days, 0 failed" in text and "1 dead webhook events" in text
    assert "Votes: 2 helpful, 1 not helpful (66% helpful)" in text
    [actions] = [b for b in view["blocks"] if b["type"] == "actions"]
    labels = [e["text"]["text"] for e in actions["elements"]]
    assert labels == ["Sync now: Confluence", "Sync now: Jira"]

    button = actions["elements"][0]
    payload = {
        "type": "block_actions",
        "trigger_id": new_trigger_id(),
        "user": {"id": ADMIN},
        "view": {"type": "home", "id": "V1"},
        "container": {"type": "view", "view_id": "V1"},
        "actions": [{**button, "block_id": "b"}],
    }
    assert bot.action(payload).status_code == 200
    [reply] = bot.slack.wait_calls("chat.postEphemeral")
    assert reply.args["channel"] == "D0HOME" and reply.args["user"] == ADMIN
    assert reply.args["text"].startswith("Queued a sync of Confluence")
    with db.connection() as conn:
        rows = conn.execute("SELECT source, requested_by FROM sync_requests").fetchall()
    assert [r["source"] for r in rows] == ["confluence"]
    assert rows[0]["requested_by"]["channel"] == "D0HOME"

    # Someone else pressing a copied button is refused like /kb-sync.
    payload = {**payload, "user": {"id": "UPLAIN"}, "trigger_id": new_trigger_id()}
    bot.action(payload)
    replies = bot.slack.wait_calls("chat.postEphemeral", 2)
    assert "only the bot's admins" in replies[-1].args["text"]
    with db.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM sync_requests").fetchone()["n"] == 1


def test_the_messages_tab_publishes_nothing(bot: RunningBot) -> None:
    event = {"type": "app_home_opened", "user": "UPLAIN", "channel": "D0HOME", "tab": "messages"}
    assert bot.event(event).status_code == 200
    time.sleep(0.3)
    assert bot.slack.calls_to("views.publish") == []
