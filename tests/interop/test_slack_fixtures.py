"""Every captured Slack payload in ../shared/fixtures/slack, signed and sent through the app.

No file may produce a 5xx or a crash, and the bot may only speak where a person asked it to:
an app_mention or a direct message from a human gets exactly one threaded answer; bot messages,
edits, deletions, top-level chatter, unknown commands and foreign buttons get none.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from fakes.flow import FakeFlow
from fakes.slack_api import (
    BOT_USER,
    RunningBot,
    new_trigger_id,
    reset_bot_tables,
    running_bot,
    sign,
)
from slack_sdk.signature import SignatureVerifier

from bot import bot_state
from store.db import Database


@pytest.fixture
def db(module_db: Database) -> Database:
    return reset_bot_tables(module_db)


FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
SLACK = FIXTURES / "slack"
if not SLACK.is_dir():
    pytest.skip(
        f"shared Slack fixtures not found at {SLACK} (clone without ../shared)",
        allow_module_level=True,
    )

VECTOR = json.loads((SLACK / "signing_test_vector.json").read_text())
FILES = sorted(p for p in SLACK.rglob("*") if p.is_file() and p.name != "signing_test_vector.json")
HUMAN_SUBTYPES = (None, "thread_broadcast", "file_share")
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)")


def test_signing_matches_slacks_own_example() -> None:
    body = (SLACK / VECTOR["body_file"]).read_bytes()
    timestamp = VECTOR["x_slack_request_timestamp"]
    assert sign(VECTOR["signing_secret"], timestamp, body) == VECTOR["expected_x_slack_signature"]
    verifier = SignatureVerifier(
        VECTOR["signing_secret"], clock=_FixedClock(VECTOR["clock_now_for_valid"])
    )
    headers = {
        "x-slack-request-timestamp": timestamp,
        "x-slack-signature": VECTOR["expected_x_slack_signature"],
    }
    assert verifier.is_valid_request(body, headers)
    late = SignatureVerifier(
        VECTOR["signing_secret"],
        clock=_FixedClock(VECTOR["clock_now_for_valid"] + VECTOR["max_skew_seconds"] + 1),
    )
    assert not late.is_valid_request(body, headers)


class _FixedClock:
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def test_the_vector_itself_is_refused_as_stale(db: Database) -> None:
    """Slack's example is correctly signed but from 2018: the 5-minute window refuses it."""
    body = (SLACK / VECTOR["body_file"]).read_bytes()
    with running_bot(db, FakeFlow(), SLACK_SIGNING_SECRET=VECTOR["signing_secret"]) as bot:
        response = bot.http.post(
            "/slack/events",
            content=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": VECTOR["x_slack_request_timestamp"],
                "X-Slack-Signature": VECTOR["expected_x_slack_signature"],
            },
        )
    assert response.status_code == 401


def _load(path: Path) -> tuple[str, Any]:
    """(kind, parsed body): envelope, inner event, action, command or url_verification."""
    if path.suffix == ".txt":
        return "command", dict(parse_qsl(path.read_text().strip(), keep_blank_values=True))
    data = json.loads(path.read_text())
    kind = data.get("type")
    if kind == "url_verification":
        return "url_verification", data
    if kind == "block_actions" or "actions" in data:
        return "action", data
    if "command" in data and "response_url" in data:
        return "command", {k: str(v) for k, v in data.items()}
    if "event" in data:
        return "envelope", data
    return "event", data  # an inner event captured without its envelope


def _bot_user(envelope: dict[str, Any]) -> str:
    """The bot this payload was delivered to, so the app runs as that workspace's bot."""
    for auth in envelope.get("authorizations") or []:
        if auth.get("is_bot") and auth.get("user_id"):
            return str(auth["user_id"])
    authed = envelope.get("authed_users") or []
    if authed and authed[0]:
        return str(authed[0])
    found = _MENTION.search(str((envelope.get("event") or {}).get("text") or ""))
    return found[1] if found else BOT_USER


def _expected_answers(event: dict[str, Any], bot_user: str, *, answered_thread: bool) -> int:
    is_human = (
        bool(event.get("user"))
        and event.get("user") != bot_user
        and not event.get("bot_id")
        and event.get("subtype") in HUMAN_SUBTYPES
    )
    if event.get("type") == "app_mention":
        return 1 if is_human and event.get("ts") and event.get("channel") else 0
    if event.get("type") != "message" or not is_human:
        return 0
    thread = event.get("thread_ts")
    top_level = not thread or thread == event.get("ts")
    if event.get("channel_type") == "im":
        # A direct message is a question, and so is every message in a DM thread (Slack's
        # assistant pane is one); Slack sends no app_mention in DMs.
        return 1
    mentions_bot = f"<@{bot_user}" in str(event.get("text") or "")
    return 1 if answered_thread and not top_level and not mentions_bot else 0


def _send(bot: RunningBot, kind: str, data: Any) -> Any:
    if kind == "command":
        return bot.post(urlencode(data).encode(), "application/x-www-form-urlencoded")
    if kind == "action":
        return bot.action(data)
    return bot.post(json.dumps(data).encode(), "application/json")


def _settled(bot: RunningBot, flow: FakeFlow, answers: int) -> None:
    if answers:
        bot.slack.wait_for(lambda: len(bot.slack.calls_to("chat.postMessage")) >= answers)
    time.sleep(0.15)  # long enough for an unwanted reply to show up


@pytest.mark.parametrize("answered_thread", [False, True], ids=["fresh", "answered-thread"])
@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SLACK)))
def test_fixture_through_the_app(db: Database, path: Path, answered_thread: bool) -> None:
    kind, data = _load(path)
    inner = data.get("event", data) if kind in ("envelope", "event") else {}
    if answered_thread and not (isinstance(inner, dict) and inner.get("thread_ts")):
        pytest.skip("only events in a thread depend on the thread having been answered")
    envelope = data
    if kind == "event":
        envelope = {
            "type": "event_callback",
            "team_id": "T0KB",
            "event_id": f"Ev{path.stem[:20]}",
            "event_time": int(time.time()),
            "event": data,
        }
    bot_user = _bot_user(envelope) if kind in ("envelope", "event") else BOT_USER
    flow = FakeFlow()
    with running_bot(db, flow, bot_user=bot_user) as bot:
        event = envelope.get("event") if isinstance(envelope, dict) else None
        event = event if isinstance(event, dict) else {}
        if answered_thread and event.get("thread_ts") and event.get("channel"):
            with db.connection() as conn:
                bot_state.record_thread(conn, "slack", event["channel"], event["thread_ts"])
        response = _send(bot, "envelope" if kind == "event" else kind, envelope)
        assert response.status_code < 500, response.text
        expected = 0
        if kind in ("envelope", "event") and envelope.get("type") == "event_callback":
            expected = _expected_answers(event, bot_user, answered_thread=answered_thread)
        _settled(bot, flow, expected)
        posts = bot.slack.calls_to("chat.postMessage")
        assert len(posts) == expected, [p.args.get("text") for p in posts]
        if expected:
            assert posts[0].args["channel"] == event["channel"]
            assert posts[0].args["thread_ts"] == (event.get("thread_ts") or event["ts"])
            assert f"<@{bot_user}" not in flow.calls[0].question
        if kind == "url_verification":
            assert response.json()["challenge"] == data["challenge"]


@pytest.mark.parametrize(
    "path", sorted(SLACK.glob("slash_command_body__*.txt")), ids=lambda p: p.name
)
def test_slash_command_fixtures_as_kb_sync(db: Database, path: Path) -> None:
    form = dict(parse_qsl(path.read_text().strip(), keep_blank_values=True))
    form["command"] = "/kb-sync"
    with running_bot(db, FakeFlow(), KB_ADMINS=form["user_id"]) as bot:
        admin = bot.post(urlencode(form).encode(), "application/x-www-form-urlencoded")
        # Another person's invocation: Slack gives every invocation its own trigger_id.
        form["user_id"] = "UNOTADMIN"
        form["trigger_id"] = new_trigger_id()
        other = bot.post(urlencode(form).encode(), "application/x-www-form-urlencoded")
    assert admin.status_code == 200 and other.status_code == 200
    assert "Queued a sync" in admin.text or "isn't a configured" in admin.text
    assert "only the bot's admins" in other.text
    with db.connection() as conn:
        rows = conn.execute("SELECT requested_by FROM sync_requests").fetchall()
    assert len(rows) == ("Queued a sync" in admin.text)


@pytest.mark.parametrize("path", sorted(SLACK.glob("block_actions*.json")), ids=lambda p: p.name)
@pytest.mark.parametrize("action_id", ["kb_helpful", "kb_refresh"])
def test_block_actions_fixtures_on_our_buttons(db: Database, path: Path, action_id: str) -> None:
    payload = json.loads(path.read_text())
    payload["actions"][0]["action_id"] = action_id  # a foreign value: the button is stale
    flow = FakeFlow()
    with running_bot(db, flow) as bot:
        response = bot.action(payload)
        assert response.status_code == 200
        bot.slack.wait_calls("chat.postEphemeral")
        time.sleep(0.2)
        assert bot.slack.calls_to("chat.postMessage") == []
        assert bot.slack.calls_to("chat.update") == []
        assert "no longer works" in bot.slack.calls_to("chat.postEphemeral")[0].args["text"]
    assert flow.calls == []


AI_APPS = SLACK / "ai_apps"


def test_native_feedback_fixture_records_the_vote_it_names(db: Database) -> None:
    """Slack's feedback_buttons payload: the pressed button's value names the answer rated."""
    payload = json.loads((AI_APPS / "block_actions_feedback_buttons.json").read_text())
    pressed = payload["actions"][0]
    assert pressed["type"] == "feedback_buttons"
    unit = pressed["value"].split(":", 1)[1]
    with running_bot(db, FakeFlow()) as bot:
        assert bot.action(payload).status_code == 200
        [reply] = bot.slack.wait_calls("chat.postEphemeral")
    assert reply.args["user"] == payload["user"]["id"]
    assert reply.args["thread_ts"] == payload["container"]["thread_ts"]
    assert reply.args["text"].startswith("Thanks, noted that this answer was helpful")
    with db.connection() as conn:
        rows = conn.execute("SELECT unit_id, platform, user_id, vote FROM feedback").fetchall()
    assert [tuple(r.values()) for r in rows] == [(unit, "slack", payload["user"]["id"], "helpful")]


def _envelope(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((AI_APPS / name).read_text())
    data["event_time"] = int(time.time())
    return data


@pytest.mark.parametrize("member", [True, False], ids=["bot-in-channel", "bot-not-in-channel"])
def test_assistant_pane_fixtures_follow_the_channel_in_view(db: Database, member: bool) -> None:
    """Pane opened beside #eng, moved to #ops, then asked: #ops's scope if the bot is in #ops,
    else the DM scope (looking at a channel must not widen what a person may read)."""
    started = _envelope("assistant_thread_started.json")
    moved = _envelope("assistant_thread_context_changed.json")
    asked = _envelope("assistant_thread_message_im.json")
    ops = moved["event"]["assistant_thread"]["context"]["channel_id"]
    flow = FakeFlow()
    env = {"KB_CHANNEL_SCOPES": f"{ops}=jira:OPS", "KB_DM_SCOPE": "confluence:DOCS"}
    env["KB_SUGGESTED_PROMPTS"] = "How do I roll back?|Who is on call?"
    with running_bot(db, flow, bot_user=_bot_user(asked), **env) as bot:
        if member:
            bot.slack.member_of.add(ops)
        for envelope in (started, moved):
            assert _send(bot, "envelope", envelope).status_code == 200
        # Set when the pane opened, and again for the channel it moved to.
        prompts = bot.slack.wait_calls("assistant.threads.setSuggestedPrompts", 2)[-1]
        assert [p["message"] for p in prompts.args["prompts"]] == [
            "How do I roll back?",
            "Who is on call?",
        ]
        assert _send(bot, "envelope", asked).status_code == 200
        [post] = bot.slack.wait_calls("chat.postMessage")
        bot.slack.wait_calls("assistant.threads.setStatus", 2)
    event = asked["event"]
    assert post.args["channel"] == event["channel"]
    assert post.args["thread_ts"] == event["thread_ts"]
    assert flow.calls[0].question == event["text"]
    assert str(flow.calls[0].scope) == ("jira:OPS" if member else "confluence:DOCS")
    [title] = bot.slack.calls_to("assistant.threads.setTitle")
    assert title.args["title"] == event["text"]


@pytest.mark.parametrize("admin", [True, False], ids=["admin", "plain-user"])
def test_app_home_fixture_publishes_the_home_view(db: Database, admin: bool) -> None:
    opened = _envelope("app_home_opened.json")
    user = opened["event"]["user"]
    with running_bot(db, FakeFlow(), KB_ADMINS=user if admin else "USOMEONEELSE") as bot:
        assert _send(bot, "envelope", opened).status_code == 200
        [publish] = bot.slack.wait_calls("views.publish")
    assert publish.args["user_id"] == user
    view = publish.args["view"]
    assert view["type"] == "home" and 0 < len(view["blocks"]) <= 100
    text = json.dumps(view["blocks"])
    assert "How to ask" in text
    assert ("For admins" in text) is admin
    assert ("Sync now" in text) is admin
