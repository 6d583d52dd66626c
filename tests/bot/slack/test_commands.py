"""/kb-sync and the answer buttons, through the running app."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.flow import FakeFlow
from fakes.slack_api import ADMIN, RunningBot, new_trigger_id, reset_bot_tables, running_bot

from bot.platform import ActionValue
from store.db import Database
from store.metrics import series, store_metrics


@pytest.fixture
def db(module_db: Database) -> Database:
    return reset_bot_tables(module_db)


@pytest.fixture
def bot(db: Database, flow: FakeFlow) -> Iterator[RunningBot]:
    with running_bot(db, flow) as running:
        yield running


def _requests(db: Database) -> list[dict[str, Any]]:
    with db.connection() as conn:
        return conn.execute(
            "SELECT source, scopes, requested_by FROM sync_requests ORDER BY request_id"
        ).fetchall()


def test_admin_queues_a_sync_and_gets_a_quick_ack(bot: RunningBot, db: Database) -> None:
    started = time.monotonic()
    response = bot.command("confluence eng", channel="COPS")
    assert time.monotonic() - started < 3
    assert response.status_code == 200
    assert response.json()["text"] == (
        "Queued a sync of Confluence ENG; I'll tell you here when it's done."
    )
    rows = _requests(db)
    assert len(rows) == 1
    assert rows[0]["source"] == "confluence" and rows[0]["scopes"] == ["ENG"]
    asker = rows[0]["requested_by"]
    assert asker["user"] == ADMIN and asker["channel"] == "COPS"
    assert asker["response_url"] == bot.slack.response_url("cmd")


@pytest.mark.parametrize(
    ("text", "source", "scopes", "ack"),
    [
        ("", "all", [], "all sources"),
        ("all", "all", [], "all sources"),
        ("jira", "jira", [], "Jira"),
        ("OPS", "jira", ["OPS"], "Jira OPS"),  # keys of one source narrow the request
        ("ENG SUP", "all", ["ENG", "SUP"], "ENG, SUP"),
    ],
)
def test_sync_arguments_accepted(
    bot: RunningBot, db: Database, text: str, source: str, scopes: list[str], ack: str
) -> None:
    response = bot.command(text)
    assert response.json()["text"] == f"Queued a sync of {ack}; I'll tell you here when it's done."
    row = _requests(db)[-1]
    assert (row["source"], row["scopes"]) == (source, scopes)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("confluence OPS", "OPS isn't a configured Confluence space (DOCS, ENG)"),
        ("NOPE", "NOPE isn't a configured Confluence space (DOCS, ENG) or a configured Jira"),
        ("help", "Usage: /kb-sync [all|confluence|jira]"),
    ],
)
def test_sync_arguments_refused_helpfully(
    bot: RunningBot, db: Database, text: str, expected: str
) -> None:
    response = bot.command(text)
    assert response.status_code == 200
    assert expected in response.json()["text"]
    assert _requests(db) == []


def test_unconfigured_source_and_jql_refused(db: Database, flow: FakeFlow) -> None:
    env: dict[str, str | None] = {
        "CONFLUENCE_BASE_URL": None,
        "CONFLUENCE_API_TOKEN": None,
        "CONFLUENCE_SPACES": None,
        "JIRA_PROJECTS": None,
        "JIRA_JQL": "project = OPS AND updated > -30d",
    }
    with running_bot(db, flow, **env) as bot:
        text = bot.command("confluence").json()["text"]
        assert "Confluence isn't configured here" in text
        text = bot.command("jira OPS").json()["text"]
        assert "synced by a JQL query (JIRA_JQL)" in text
        assert bot.command("jira").json()["text"].startswith("Queued a sync of Jira;")
    assert [r["source"] for r in _requests(db)] == ["jira"]


def test_non_admin_is_refused_politely(bot: RunningBot, db: Database) -> None:
    response = bot.command("all", user="USOMEONE")
    assert response.status_code == 200
    assert "only the bot's admins" in response.json()["text"]
    assert _requests(db) == []


def _press(
    bot: RunningBot,
    post: dict[str, Any],
    action: dict[str, Any],
    *,
    user: str,
    message_ts: str,
    **extra: Any,
) -> None:
    """Send one block_actions payload for ``action`` under the answer, as Slack sends it."""
    payload = {
        "type": "block_actions",
        "trigger_id": new_trigger_id(),
        "user": {"id": user},
        "team": {"id": "T0KB"},
        "channel": {"id": post["channel"]},
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": post["channel"],
            "is_ephemeral": False,
        },
        "message": {
            "ts": message_ts,
            "thread_ts": post["thread_ts"],
            "blocks": post["blocks"],
            "text": post["text"],
        },
        "actions": [action],
        **extra,
    }
    assert bot.action(payload).status_code == 200


def _click(
    bot: RunningBot, post: dict[str, Any], action_id: str, *, user: str = "UHUMAN", message_ts: str
) -> None:
    button = next(
        e
        for b in post["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == action_id
    )
    action = {
        "action_id": action_id,
        "block_id": "kb_answer_actions",
        "value": button["value"],
        "type": "button",
    }
    response_url = bot.slack.response_url("action")
    _press(bot, post, action, user=user, message_ts=message_ts, response_url=response_url)


def _answered(bot: RunningBot) -> tuple[dict[str, Any], str]:
    bot.mention("how do I rotate the VPN cert?", ts="1700000100.000001")
    call = bot.slack.wait_calls("chat.postMessage")[0]
    message_ts = bot.slack.messages["CGEN"][-1]["ts"]
    return call.args, message_ts


def test_refresh_regenerates_fresh_and_updates_the_message(bot: RunningBot, flow: FakeFlow) -> None:
    post, message_ts = _answered(bot)
    assert bot.slack.wait_for(lambda: len(flow.posts) == 1)
    flow.text = "A fresher answer [1]."
    _click(bot, post, "kb_refresh", message_ts=message_ts)
    updates = bot.slack.wait_calls("chat.update", 2)
    final = updates[-1].args
    assert final["channel"] == "CGEN" and final["ts"] == message_ts
    assert "A fresher answer [1]." in final["text"]
    assert "Refreshing" in json.dumps(updates[0].args["blocks"])
    assert flow.calls[-1].fresh is True
    assert flow.calls[-1].question == "how do I rotate the VPN cert?"
    assert bot.slack.wait_for(lambda: len(flow.posts) == 2)
    assert flow.posts[-1].thread == "1700000100.000001"
    assert flow.posts[-1].unit_id != flow.posts[0].unit_id
    assert bot.slack.calls_to("chat.postMessage")[1:] == []  # updated, not reposted


def _thumb(
    bot: RunningBot, post: dict[str, Any], *, up: bool, user: str = "UHUMAN", message_ts: str
) -> None:
    """Press Slack's native thumbs under the answer, as Slack sends it (block_actions)."""
    [block] = [b for b in post["blocks"] if b["type"] == "context_actions"]
    [element] = block["elements"]
    assert element["type"] == "feedback_buttons"
    pressed = element["positive_button" if up else "negative_button"]
    action = {
        "type": "feedback_buttons",
        "action_id": element["action_id"],
        "block_id": block["block_id"],
        "text": pressed["text"],
        "value": pressed["value"],
    }
    _press(bot, post, action, user=user, message_ts=message_ts)


def test_answers_carry_native_thumbs_and_a_refresh_button(bot: RunningBot) -> None:
    post, _ = _answered(bot)
    types = [b["type"] for b in post["blocks"]]
    assert types[-2:] == ["context_actions", "actions"]
    [refresh] = post["blocks"][-1]["elements"]
    assert refresh["action_id"] == "kb_refresh" and refresh["type"] == "button"
    assert "kb_helpful" not in json.dumps(post["blocks"])


def test_votes_are_stored_once_per_user_and_changeable(
    bot: RunningBot, db: Database, flow: FakeFlow
) -> None:
    post, message_ts = _answered(bot)
    _thumb(bot, post, up=True, message_ts=message_ts)
    bot.slack.wait_calls("chat.postEphemeral", 1)
    _thumb(bot, post, up=True, message_ts=message_ts)
    bot.slack.wait_calls("chat.postEphemeral", 2)
    _thumb(bot, post, up=False, message_ts=message_ts)
    bot.slack.wait_calls("chat.postEphemeral", 3)
    _thumb(bot, post, up=True, user="UOTHER", message_ts=message_ts)
    replies = [c.args["text"] for c in bot.slack.wait_calls("chat.postEphemeral", 4)]
    assert replies[0].startswith("Thanks, noted that this answer was helpful")
    assert replies[1].startswith("You've already marked this answer as helpful")
    assert "now marked not helpful" in replies[2]
    with db.connection() as conn:
        votes = conn.execute(
            "SELECT unit_id, user_id, vote FROM feedback ORDER BY user_id"
        ).fetchall()
    unit = flow.posts[0].unit_id if flow.posts else votes[0]["unit_id"]
    assert [(v["unit_id"], v["user_id"], v["vote"]) for v in votes] == [
        (unit, "UHUMAN", "not_helpful"),
        (unit, "UOTHER", "helpful"),
    ]
    metrics = store_metrics(db)
    helpful = series("kb_feedback_votes", platform="slack", vote="helpful")
    not_helpful = series("kb_feedback_votes", platform="slack", vote="not_helpful")
    assert metrics[helpful] == 1 and metrics[not_helpful] == 1
    assert metrics["kb_slack_answers_posted_total"] == 1


def test_old_answers_helpful_buttons_still_record_votes(
    bot: RunningBot, db: Database, flow: FakeFlow
) -> None:
    """Answers posted before the native thumbs carry kb_helpful / kb_not_helpful buttons."""
    post, message_ts = _answered(bot)
    assert bot.slack.wait_for(lambda: len(flow.posts) == 1)
    unit = flow.posts[0].unit_id
    value = ActionValue(unit, "how do I rotate the VPN cert?").encode()
    old_buttons = {
        "type": "actions",
        "block_id": "kb_answer_actions",
        "elements": [
            {"type": "button", "action_id": a, "value": value, "text": {"type": "plain_text"}}
            for a in ("kb_helpful", "kb_not_helpful", "kb_refresh")
        ],
    }
    old_post = {**post, "blocks": [post["blocks"][0], old_buttons]}
    _click(bot, old_post, "kb_not_helpful", message_ts=message_ts)
    _click(bot, old_post, "kb_helpful", user="UOTHER", message_ts=message_ts)
    replies = [c.args["text"] for c in bot.slack.wait_calls("chat.postEphemeral", 2)]
    assert all(r.startswith("Thanks, noted") for r in replies)
    with db.connection() as conn:
        votes = conn.execute("SELECT unit_id, user_id, vote FROM feedback ORDER BY user_id")
        assert [(v["unit_id"], v["user_id"], v["vote"]) for v in votes.fetchall()] == [
            (unit, "UHUMAN", "not_helpful"),
            (unit, "UOTHER", "helpful"),
        ]


def test_a_thumb_with_a_foreign_value_is_a_stale_button(bot: RunningBot, db: Database) -> None:
    post, message_ts = _answered(bot)
    broken = {**post, "blocks": json.loads(json.dumps(post["blocks"]))}
    thumbs = next(b for b in broken["blocks"] if b["type"] == "context_actions")
    thumbs["elements"][0]["positive_button"]["value"] = "sideways"
    _thumb(bot, broken, up=True, message_ts=message_ts)
    [reply] = bot.slack.wait_calls("chat.postEphemeral")
    assert "no longer works" in reply.args["text"]
    with db.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM feedback").fetchone()["n"] == 0
