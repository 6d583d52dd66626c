"""The Slack app over real HTTP: signatures, mentions, follow-ups, what it ignores, retries."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from fakes.flow import FakeFlow
from fakes.slack_api import (
    BOT_ID,
    BOT_USER,
    FakeSlack,
    RunningBot,
    bot_settings,
    reset_bot_tables,
    running_bot,
    signed_headers,
)

from bot import bot_state
from bot.host import start_http_server
from kb.chat_wiring import build_slack
from store.db import Database
from store.metrics import store_metrics
from store.scope import Scope


@pytest.fixture
def db(module_db: Database) -> Database:
    return reset_bot_tables(module_db)


@pytest.fixture
def bot(db: Database, flow: FakeFlow) -> Iterator[RunningBot]:
    with running_bot(db, flow) as running:
        yield running


def _settle(bot: RunningBot, seconds: float = 0.3) -> None:
    """Give background answer jobs a moment, for tests that expect nothing to happen."""
    time.sleep(seconds)


def test_healthz_and_unknown_paths(bot: RunningBot) -> None:
    response = bot.http.get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"
    assert bot.http.get("/nope").status_code == 404
    assert bot.http.get("/slack/events").status_code == 405


def test_url_verification_challenge(bot: RunningBot) -> None:
    body = json.dumps({"token": "t", "challenge": "abc123", "type": "url_verification"})
    response = bot.post(body.encode(), "application/json")
    assert response.status_code == 200
    assert response.json()["challenge"] == "abc123"


def test_bad_signature_and_stale_timestamp_are_401(bot: RunningBot, flow: FakeFlow) -> None:
    body = json.dumps(
        {
            "type": "event_callback",
            "event_id": "EvX",
            "event": {
                "type": "app_mention",
                "user": "U1",
                "text": f"<@{BOT_USER}> hi",
                "ts": "1.1",
                "channel": "CGEN",
            },
        }
    ).encode()
    forged = signed_headers(body, content_type="application/json", secret="wrong")
    assert bot.http.post("/slack/events", content=body, headers=forged).status_code == 401
    stale = signed_headers(body, content_type="application/json", timestamp=int(time.time()) - 301)
    assert bot.http.post("/slack/events", content=body, headers=stale).status_code == 401
    unsigned = {"Content-Type": "application/json"}
    assert bot.http.post("/slack/events", content=body, headers=unsigned).status_code == 401
    _settle(bot)
    assert flow.calls == []
    assert bot.slack.calls_to("chat.postMessage") == []


def test_mention_at_top_level_is_answered_in_a_new_thread(
    bot: RunningBot, flow: FakeFlow, db: Database
) -> None:
    response = bot.mention(
        "how do I **rotate** the VPN cert?", channel="CENG", ts="1700000000.000100"
    )
    assert response.status_code == 200
    posts = bot.slack.wait_calls("chat.postMessage")
    assert len(posts) == 1
    post = posts[0].args
    assert post["channel"] == "CENG"
    assert post["thread_ts"] == "1700000000.000100"
    # Block Kit: answer section (mrkdwn), sources context, native thumbs, Refresh.
    types = [b["type"] for b in post["blocks"]]
    assert types[0] == "section" and types[-2:] == ["context_actions", "actions"]
    assert "*the VPN portal* [1]" in post["blocks"][0]["text"]["text"]
    sources = next(b for b in post["blocks"] if b["type"] == "context")
    line = sources["elements"][0]["text"]
    assert "<https://wiki.example/pages/101|[1] VPN setup>" in line
    assert "[2] OPS-7 Cert rotation &lt;urgent&gt;" in line
    actions = post["blocks"][-1]["elements"]
    assert [a["action_id"] for a in actions] == ["kb_refresh"]
    [thumbs] = post["blocks"][-2]["elements"]
    assert thumbs["type"] == "feedback_buttons"
    assert thumbs["action_id"] == "kb_feedback"
    # The fallback text carries the answer and the links.
    assert "https://wiki.example/pages/101" in post["text"]
    assert "https://jira.example/browse/OPS-7" in post["text"]
    # Working reaction on the question, removed once answered.
    assert bot.slack.wait_calls("reactions.remove")
    added = bot.slack.calls_to("reactions.add")[0].args
    assert (added["channel"], added["timestamp"], added["name"]) == (
        "CENG",
        "1700000000.000100",
        "hourglass_flowing_sand",
    )
    assert added["timestamp"] == bot.slack.calls_to("reactions.remove")[0].args["timestamp"]
    # The mention is stripped, the channel's scope is used, the post is recorded.
    assert flow.calls[0].question == "how do I **rotate** the VPN cert?"
    assert flow.calls[0].scope == Scope.parse("confluence:ENG")
    assert flow.calls[0].history == ()
    assert bot.slack.wait_for(lambda: len(flow.posts) == 1)
    assert flow.posts[0].channel == "CENG" and flow.posts[0].thread == "1700000000.000100"
    assert thumbs["positive_button"]["value"] == "up:" + flow.posts[0].unit_id
    assert thumbs["negative_button"]["value"] == "down:" + flow.posts[0].unit_id
    with db.connection() as conn:
        assert bot_state.is_bot_thread(conn, "slack", "CENG", "1700000000.000100")


def test_mention_inside_a_thread_replies_in_that_thread_with_history(
    bot: RunningBot, flow: FakeFlow
) -> None:
    bot.slack.add_message("CGEN", "1700000000.000001", "our deploy keeps failing")
    bot.slack.add_message(
        "CGEN",
        "1700000000.000002",
        "error says cert expired",
        thread_ts="1700000000.000001",
        user="UOTHER",
    )
    bot.mention("what does this mean?", ts="1700000000.000003", thread_ts="1700000000.000001")
    post = bot.slack.wait_calls("chat.postMessage")[0].args
    assert post["thread_ts"] == "1700000000.000001"
    assert [t.text for t in flow.calls[0].history] == [
        "our deploy keeps failing",
        "error says cert expired",
    ]
    assert flow.calls[0].scope == Scope.parse("confluence:*,jira:*")  # KB_DEFAULT_SCOPE


def test_follow_up_in_an_answered_thread_needs_no_mention(bot: RunningBot, flow: FakeFlow) -> None:
    bot.slack.add_message("CGEN", "1700000001.000001", f"<@{BOT_USER}> how do I get VPN access?")
    bot.mention("how do I get VPN access?", ts="1700000001.000001")
    bot.slack.wait_calls("chat.postMessage")
    bot.slack.add_message(
        "CGEN", "1700000001.500000", "and on Linux?", thread_ts="1700000001.000001"
    )
    response = bot.event(
        {
            "type": "message",
            "user": "UHUMAN",
            "text": "and on Linux?",
            "ts": "1700000001.500000",
            "thread_ts": "1700000001.000001",
            "channel": "CGEN",
            "channel_type": "channel",
        }
    )
    assert response.status_code == 200
    posts = bot.slack.wait_calls("chat.postMessage", 2)
    assert len(posts) == 2
    assert posts[1].args["thread_ts"] == "1700000001.000001"
    follow_up = flow.calls[1]
    assert follow_up.question == "and on Linux?"
    roles = [t.role for t in follow_up.history]
    assert roles == ["user", "bot"]
    assert follow_up.history[0].text == "how do I get VPN access?"
    assert "VPN portal" in follow_up.history[1].text


def test_mention_in_an_answered_thread_is_answered_once(bot: RunningBot, flow: FakeFlow) -> None:
    bot.mention("first question", ts="1700000002.000001")
    bot.slack.wait_calls("chat.postMessage")
    text = f"<@{BOT_USER}> second question"
    # Slack sends both an app_mention and a message event for one mention in a thread.
    bot.event(
        {
            "type": "app_mention",
            "user": "UHUMAN",
            "text": text,
            "ts": "1700000002.000005",
            "thread_ts": "1700000002.000001",
            "channel": "CGEN",
        }
    )
    bot.event(
        {
            "type": "message",
            "user": "UHUMAN",
            "text": text,
            "ts": "1700000002.000005",
            "thread_ts": "1700000002.000001",
            "channel": "CGEN",
        }
    )
    bot.slack.wait_calls("chat.postMessage", 2)
    _settle(bot, 0.5)
    assert len(bot.slack.calls_to("chat.postMessage")) == 2
    assert [c.question for c in flow.calls] == ["first question", "second question"]


def test_bots_edits_deletions_and_strangers_threads_are_ignored(
    bot: RunningBot, flow: FakeFlow
) -> None:
    bot.mention("seed", ts="1700000003.000001")
    bot.slack.wait_calls("chat.postMessage")
    thread = "1700000003.000001"
    ignored = [
        {
            "type": "message",
            "subtype": "bot_message",
            "bot_id": "BOTHER",
            "text": "beep",
            "ts": "1700000003.000002",
            "thread_ts": thread,
            "channel": "CGEN",
        },
        {
            "type": "message",
            "user": "UOTHERBOT",
            "bot_id": "BOTHER",
            "text": "beep",
            "ts": "1700000003.000003",
            "thread_ts": thread,
            "channel": "CGEN",
        },
        {
            "type": "message",
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "text": "my own",
            "ts": "1700000003.000004",
            "thread_ts": thread,
            "channel": "CGEN",
        },
        {
            "type": "message",
            "subtype": "message_changed",
            "channel": "CGEN",
            "ts": "1700000003.000005",
            "message": {
                "user": "UHUMAN",
                "text": "edited",
                "ts": "1700000003.000001",
                "thread_ts": thread,
            },
        },
        {
            "type": "message",
            "subtype": "message_deleted",
            "channel": "CGEN",
            "hidden": True,
            "ts": "1700000003.000006",
            "deleted_ts": "1700000003.000001",
        },
        {
            "type": "message",
            "user": "UHUMAN",
            "text": "unrelated thread",
            "ts": "1700000003.000007",
            "thread_ts": "1600000000.000001",
            "channel": "CGEN",
        },
        {
            "type": "message",
            "user": "UHUMAN",
            "text": "top-level chatter",
            "ts": "1700000003.000008",
            "channel": "CGEN",
        },
        {
            "type": "app_mention",
            "user": "UOTHERBOT",
            "bot_id": "BOTHER",
            "text": f"<@{BOT_USER}> loop?",
            "ts": "1700000003.000009",
            "channel": "CGEN",
        },
    ]
    for event in ignored:
        assert bot.event(event).status_code == 200
    _settle(bot, 0.5)
    assert len(bot.slack.calls_to("chat.postMessage")) == 1
    assert len(flow.calls) == 1


def test_slack_retries_are_never_answered_twice(
    bot: RunningBot, flow: FakeFlow, db: Database
) -> None:
    event = {
        "type": "app_mention",
        "user": "UHUMAN",
        "text": f"<@{BOT_USER}> retry me",
        "ts": "1700000004.000001",
        "channel": "CGEN",
    }
    assert bot.event(event, event_id="EvRETRY1").status_code == 200
    for retry in (1, 2):
        assert bot.event(event, event_id="EvRETRY1", retry_num=retry).status_code == 200
    bot.slack.wait_calls("chat.postMessage")
    _settle(bot, 0.5)
    assert len(bot.slack.calls_to("chat.postMessage")) == 1
    assert len(flow.calls) == 1
    assert store_metrics(db)["kb_slack_retries_ignored_total"] == 2


def test_empty_mention_gets_a_hint(bot: RunningBot, flow: FakeFlow) -> None:
    bot.mention("", ts="1700000005.000001")
    post = bot.slack.wait_calls("chat.postMessage")[0].args
    assert "Ask me a question" in post["text"]
    assert flow.calls == []


def test_flow_failure_posts_a_short_message_without_details(db: Database) -> None:
    flow = FakeFlow(fail=RuntimeError("db password=hunter2 exploded"))
    with running_bot(db, flow) as bot:
        bot.mention("anything", ts="1700000006.000001")
        post = bot.slack.wait_calls("chat.postMessage")[0].args
        assert (
            post["text"] == "Something went wrong on my side; the team has the details in the logs."
        )
        assert "hunter2" not in json.dumps(post)
        assert bot.slack.wait_calls("reactions.remove")


def test_an_operator_fault_is_not_told_to_press_refresh(db: Database) -> None:
    text = "I can't answer right now. The people who run kb-bot have been told."
    flow = FakeFlow(mode="unavailable", text=text, sources=())
    with running_bot(db, flow) as bot:
        bot.mention("anything", ts="1700000007.000002")
        post = bot.slack.wait_calls("chat.postMessage")[0].args
        assert post["text"] == text
        shown = json.dumps(post["blocks"], ensure_ascii=False)
        assert "Refresh to try again" not in shown and text in shown


def test_unavailable_answer_says_so_and_offers_refresh(db: Database) -> None:
    flow = FakeFlow(mode="unavailable", text="", sources=())
    with running_bot(db, flow) as bot:
        bot.mention("anything", ts="1700000007.000001")
        post = bot.slack.wait_calls("chat.postMessage")[0].args
        assert "couldn't reach Claude just now — press Refresh" in post["text"]
        buttons = [e["action_id"] for e in post["blocks"][-1]["elements"]]
        assert buttons == ["kb_refresh"]


def test_socket_mode_needs_no_signing_secret_and_serves_only_healthz(
    db: Database, flow: FakeFlow
) -> None:
    with FakeSlack() as slack:
        settings = bot_settings(slack, SLACK_SIGNING_SECRET=None, SLACK_APP_TOKEN="xapp-1-test")
        mount = build_slack(settings, flow, db)
        assert mount.connect is not None and mount.path is None
        server = start_http_server([mount], db, mode="socket")
        try:
            with httpx.Client(base_url=server.url) as http:
                assert http.get("/healthz").json()["mode"] == "socket"
                assert http.post("/slack/events", content=b"{}").status_code == 404
        finally:
            server.close()
            mount.close()
