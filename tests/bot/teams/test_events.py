"""The Teams front end over real HTTP: mentions, threads, chats, follow-ups, buttons, 429s."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from fakes.flow import FakeFlow
from fakes.slack_api import BASE_ENV, FakeSlack, signed_headers
from fakes.teams import (
    BOT,
    CHANNEL,
    PERSONAL,
    SCOPED_CHANNEL,
    USER_AAD,
    FakeConnector,
    FakeLogin,
    RunningTeamsBot,
    card_action,
    channel_message,
    personal_message,
    reset_teams_tables,
    running_teams_bot,
    teams_settings,
)

from bot import bot_state
from bot.host import start_http_server
from bot.platform import ActionValue
from kb.chat_wiring import build_chat
from store.db import Database
from store.scope import Scope


@pytest.fixture
def db(module_db: Database) -> Database:
    return reset_teams_tables(module_db)


@pytest.fixture
def bot(db: Database, flow: FakeFlow) -> Iterator[RunningTeamsBot]:
    with running_teams_bot(db, flow) as running:
        yield running


def _settle(seconds: float = 0.3) -> None:
    """Give background answer jobs a moment, for tests that expect nothing to happen."""
    time.sleep(seconds)


def test_channel_mention_is_answered_in_its_thread_with_a_card(
    bot: RunningTeamsBot, flow: FakeFlow, db: Database
) -> None:
    activity = channel_message(
        bot.connector.url, "how do I **rotate** the VPN cert?", id="1700000000001"
    )
    response = bot.post(activity)
    assert response.status_code == 200
    [reply] = bot.connector.wait_messages()
    # In the thread of the post: the channel's conversation id with ;messageid=<root>.
    assert reply.method == "POST"
    assert reply.conversation == f"{CHANNEL};messageid=1700000000001"
    assert reply.body["conversation"]["id"] == f"{CHANNEL};messageid=1700000000001"
    card = reply.card
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.5"
    assert card["body"][0]["text"] == flow.text
    text = reply.card_text
    assert "[1] [VPN setup](https://wiki.example/pages/101)" in text
    assert "[2] [OPS-7 Cert rotation <urgent>](https://jira.example/browse/OPS-7)" in text
    # Votes are Teams' own thumbs (the feedback loop), so Refresh is the card's only button.
    assert reply.body["channelData"] == {"feedbackLoopEnabled": True}
    verbs = [a["verb"] for a in card["actions"]]
    assert verbs == ["kb_refresh"]
    assert all(a["type"] == "Action.Execute" for a in card["actions"])
    value = ActionValue.decode(card["actions"][0]["data"]["kb"])
    assert value == ActionValue("unit-1", "how do I **rotate** the VPN cert?")
    # The text fallback holds the answer and the links.
    assert "https://wiki.example/pages/101" in card["fallbackText"]
    assert "VPN portal" in reply.body["summary"]
    # A typing indicator went first, into the same thread.
    typing = [s for s in bot.connector.sent if s.body.get("type") == "typing"]
    assert typing and typing[0].conversation == reply.conversation
    # The mention is stripped; unlisted conversations get the default scope.
    assert flow.calls[0].question == "how do I **rotate** the VPN cert?"
    assert flow.calls[0].scope == Scope.parse("confluence:*,jira:*")
    assert flow.calls[0].history == ()
    assert bot.connector.wait_messages() and _wait(lambda: len(flow.posts) == 1)
    post = flow.posts[0]
    assert (post.platform, post.channel, post.thread) == ("teams", CHANNEL, "1700000000001")
    with db.connection() as conn:
        assert bot_state.is_bot_thread(conn, "teams", CHANNEL, "1700000000001")


def _wait(predicate: object, timeout: float = 5.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_scope_comes_from_the_conversation_id(bot: RunningTeamsBot, flow: FakeFlow) -> None:
    bot.post(channel_message(bot.connector.url, "deploy steps?", channel=SCOPED_CHANNEL))
    bot.connector.wait_messages()
    assert flow.calls[0].scope == Scope.parse("confluence:ENG,jira:OPS")


def test_mention_is_found_by_entity_not_by_text(bot: RunningTeamsBot, flow: FakeFlow) -> None:
    # "@kb" typed as text, and a mention of someone else: neither is a mention of the bot.
    typed = channel_message(bot.connector.url, "<at>kb</at> hello?", mention=False)
    other = channel_message(bot.connector.url, "<at>Bob</at> what about it?", mention=False)
    other["entities"] = [
        {"type": "mention", "text": "<at>Bob</at>", "mentioned": {"id": "29:1bob", "name": "Bob"}}
    ]
    assert bot.post(typed).status_code == 200
    assert bot.post(other).status_code == 200
    _settle()
    assert flow.calls == [] and bot.connector.sent == []
    # Named differently in this team, still the bot: the entity's id decides.
    renamed = channel_message(bot.connector.url, "ask <at>Bob</at> about VPN?", mention=False)
    renamed["text"] = "<p><at>Knowledge</at>&nbsp;ask <at>Bob</at> about VPN?</p>"
    renamed["entities"] = [
        {"type": "mention", "text": "<at>Knowledge</at>", "mentioned": {"id": BOT, "name": "x"}},
        {"type": "mention", "text": "<at>Bob</at>", "mentioned": {"id": "29:1bob", "name": "Bob"}},
    ]
    bot.post(renamed)
    bot.connector.wait_messages()
    assert flow.calls[0].question == "ask @Bob about VPN?"


def test_follow_up_in_an_answered_thread_gets_the_history(
    bot: RunningTeamsBot, flow: FakeFlow
) -> None:
    root = "1700000000100"
    bot.post(channel_message(bot.connector.url, "how do I get VPN access?", id=root))
    bot.connector.wait_messages()
    # With the RSC permission Teams delivers thread replies without a mention.
    follow = channel_message(bot.connector.url, "and on Linux?", mention=False, root=root)
    assert bot.post(follow).status_code == 200
    replies = bot.connector.wait_messages(2)
    assert len(replies) == 2
    assert replies[1].conversation == f"{CHANNEL};messageid={root}"
    call = flow.calls[1]
    assert call.question == "and on Linux?"
    assert [t.role for t in call.history] == ["user", "bot"]
    assert call.history[0].text == "how do I get VPN access?"
    assert "VPN portal" in call.history[1].text
    # A reply in a thread the bot never answered in is not for it.
    stranger = channel_message(bot.connector.url, "lunch?", mention=False, root="1700000000999")
    bot.post(stranger)
    _settle()
    assert len(flow.calls) == 2


def test_personal_chat_needs_no_mention_and_keeps_context(
    bot: RunningTeamsBot, flow: FakeFlow
) -> None:
    first = personal_message(bot.connector.url, "how do I get VPN access?", id="p1")
    bot.post(first)
    [reply] = bot.connector.wait_messages()
    assert reply.conversation == PERSONAL and reply.reply_to == "p1"
    bot.post(personal_message(bot.connector.url, "and on Linux?", id="p2"))
    bot.connector.wait_messages(2)
    assert flow.calls[1].history[0].text == "how do I get VPN access?"
    assert _wait(lambda: len(flow.posts) == 2)
    assert flow.posts[0].channel == PERSONAL and flow.posts[0].thread == PERSONAL


def test_redelivery_own_messages_and_edits_are_ignored(
    bot: RunningTeamsBot, flow: FakeFlow, db: Database
) -> None:
    activity = channel_message(bot.connector.url, "what is OPS-7?", id="1700000000200")
    bot.post(activity)
    bot.post(activity)  # the connector retried
    own = channel_message(bot.connector.url, "an answer", id="1700000000201")
    own["from"] = {"id": BOT, "name": "kb", "role": "bot"}
    bot.post(own)
    edit = channel_message(bot.connector.url, "what is OPS-8?", id="1700000000200")
    edit["type"] = "messageUpdate"
    bot.post(edit)
    bot.connector.wait_messages()
    _settle()
    assert len(flow.calls) == 1 and len(bot.connector.messages()) == 1
    with db.connection() as conn:
        row = conn.execute(
            "SELECT value FROM bot_counters WHERE name = 'teams_redeliveries_ignored'"
        ).fetchone()
    assert row is not None and row["value"] == 1


def test_empty_mention_gets_a_hint(bot: RunningTeamsBot, flow: FakeFlow) -> None:
    bot.post(channel_message(bot.connector.url, ""))
    [reply] = bot.connector.wait_messages()
    assert "Ask me a question" in reply.body["text"]
    assert flow.calls == []


def test_throttled_answer_is_retried_after_retry_after(bot: RunningTeamsBot) -> None:
    # The typing hint goes through; the answer itself is throttled once.
    bot.connector.fail(status=429, retry_after=1, times=1)
    bot.post(personal_message(bot.connector.url, "what is OPS-7?"))
    replies = bot.connector.wait_messages(timeout=8)
    assert len(replies) == 1
    [throttled] = [s for s in bot.connector.sent if s.status == 429]
    assert replies[0].at - throttled.at >= 0.95


def test_one_token_serves_many_calls(bot: RunningTeamsBot) -> None:
    for n in range(3):
        bot.post(personal_message(bot.connector.url, f"question {n}?"))
    bot.connector.wait_messages(3)
    assert len(bot.login.token_requests) == 1
    form = bot.login.token_requests[0]
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == "https://api.botframework.com/.default"


def test_old_cards_vote_buttons_still_record_one_changeable_vote(
    bot: RunningTeamsBot, flow: FakeFlow, db: Database
) -> None:
    bot.post(channel_message(bot.connector.url, "vpn?", id="1700000000300"))
    [reply] = bot.connector.wait_messages()
    # Cards posted before the feedback loop carry Helpful / Not helpful buttons whose data is
    # the same value the Refresh button carries.
    [refresh] = reply.card["actions"]
    helpful = not_helpful = refresh
    where = {"conversation": reply.conversation, "card_id": reply.activity_id}
    url = bot.connector.url
    first = bot.post(card_action(url, "kb_helpful", helpful["data"], **where))
    assert first.status_code == 200
    assert first.json() == {
        "statusCode": 200,
        "type": "application/vnd.microsoft.activity.message",
        "value": "Thanks, noted that this answer was helpful.",
    }
    again = bot.post(card_action(url, "kb_helpful", helpful["data"], **where))
    assert "already marked" in again.json()["value"]
    changed = bot.post(card_action(url, "kb_not_helpful", not_helpful["data"], **where))
    assert "now marked not helpful" in changed.json()["value"]
    with db.connection() as conn:
        rows = conn.execute("SELECT unit_id, platform, user_id, vote FROM feedback").fetchall()
    assert rows == [
        {"unit_id": "unit-1", "platform": "teams", "user_id": USER_AAD, "vote": "not_helpful"}
    ]
    stale = bot.post(card_action(url, "kb_helpful", {"kb": "garbage"}, **where))
    assert "no longer works" in stale.json()["value"]


def test_refresh_regenerates_and_updates_the_card_in_place(
    bot: RunningTeamsBot, flow: FakeFlow
) -> None:
    bot.post(channel_message(bot.connector.url, "vpn?", id="1700000000400"))
    [reply] = bot.connector.wait_messages()
    refresh = reply.card["actions"][-1]
    flow.text = "Fresh steps [1]."
    response = bot.post(
        card_action(
            bot.connector.url,
            "kb_refresh",
            refresh["data"],
            conversation=reply.conversation,
            card_id=reply.activity_id,
        )
    )
    assert response.json()["value"].startswith("Refreshing")
    update = bot.connector.wait_messages(2)[1]
    assert update.method == "PUT"
    assert (update.conversation, update.activity_id) == (reply.conversation, reply.activity_id)
    assert update.card["body"][0]["text"] == "Fresh steps [1]."
    assert flow.calls[-1].fresh is True
    assert _wait(lambda: len(flow.posts) == 2)
    assert flow.posts[-1].thread == "1700000000400"


def test_teams_shares_the_server_with_healthz(bot: RunningTeamsBot) -> None:
    assert bot.http.get("/healthz").json()["database"] == "ok"
    assert bot.http.get("/api/messages").status_code == 405
    assert bot.http.post("/slack/events", content=b"{}").status_code == 404  # no Slack app here


def test_slack_and_teams_on_one_server(db: Database, flow: FakeFlow) -> None:
    """What ``kb bot`` serves when both are configured: each platform on its own path."""
    with FakeSlack() as slack, FakeLogin() as login, FakeConnector(login) as connector:
        env = {**BASE_ENV, "SLACK_API_URL": slack.url + "/"}
        settings = teams_settings(login, **env)
        mounts = build_chat(settings, flow, db)
        assert [m.name for m in mounts] == ["slack", "teams"]
        server = start_http_server(mounts, db)
        try:
            with httpx.Client(base_url=server.url, timeout=10) as http:
                body = json.dumps({"type": "url_verification", "challenge": "c1"}).encode()
                slack_headers = signed_headers(body, content_type="application/json")
                response = http.post("/slack/events", content=body, headers=slack_headers)
                assert response.json()["challenge"] == "c1"
                activity = personal_message(connector.url, "hello?")
                token = login.sign(activity["serviceUrl"])
                response = http.post(
                    "/api/messages", json=activity, headers={"Authorization": f"Bearer {token}"}
                )
                assert response.status_code == 200
                assert connector.wait_messages()
        finally:
            server.close()
            for mount in mounts:
                mount.close()
