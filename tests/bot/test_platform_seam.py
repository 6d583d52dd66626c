"""A third chat platform (tests/fakes/chat_platform.py) mounted beside Slack with one line,
going through the same Conversation: asking, follow-ups, refresh, votes and /kb-sync."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from fakes.chat_platform import (
    PATH,
    PLATFORM,
    FakeChatAdapter,
    Transcript,
    fake_chat_mount,
    sign,
)
from fakes.flow import FakeFlow
from fakes.slack_api import ADMIN, FakeSlack, bot_settings, reset_bot_tables

from bot.conversation import Conversation
from bot.host import start_http_server
from bot.platform import ACTION_HELPFUL, ACTION_REFRESH
from bot.wording import NOT_ADMIN
from kb.chat_wiring import build_slack, chat_policy
from store.db import Database
from store.scope import Scope


@pytest.fixture
def db(module_db: Database) -> Database:
    return reset_bot_tables(module_db)


@dataclass
class Chat:
    http: httpx.Client
    transcript: Transcript
    adapter: FakeChatAdapter

    def post(self, event: dict[str, object], *, signature: str | None = None) -> httpx.Response:
        body = json.dumps(event).encode()
        headers = {"X-Fake-Signature": signature if signature is not None else sign(body)}
        return self.http.post(PATH, content=body, headers=headers)

    def say(self, text: str, *, id: str, channel: str = "CENG", **extra: object) -> None:
        event = {"type": "message", "id": id, "channel": channel, "user": "UHUMAN", "text": text}
        assert self.post(event | extra).status_code == 200

    def answers(
        self, thread: str, count: int = 1, channel: str = "CENG"
    ) -> list[dict[str, object]]:
        self.transcript.wait_for(
            lambda: len(self.transcript.bot_messages(channel, thread)) >= count
        )
        return self.transcript.bot_messages(channel, thread)


@pytest.fixture
def chat(db: Database, flow: FakeFlow) -> Iterator[Chat]:
    with FakeSlack() as slack:
        settings = bot_settings(slack)
        transcript = Transcript()
        adapter = FakeChatAdapter(
            Conversation(PLATFORM, flow, db, chat_policy(settings, settings.admins)), transcript
        )
        mounts = [
            build_slack(settings, flow, db),
            fake_chat_mount(adapter),  # the one line that adds a platform
        ]
        server = start_http_server(mounts, db)
        try:
            with httpx.Client(base_url=server.url, timeout=10) as http:
                yield Chat(http, transcript, adapter)
        finally:
            server.close()
            for mount in mounts:
                mount.close()


def _counter(db: Database, name: str) -> int:
    with db.connection() as conn:
        row = conn.execute("SELECT value FROM bot_counters WHERE name = %s", (name,)).fetchone()
    return int(row["value"]) if row else 0


def test_a_question_is_answered_in_its_thread_with_citations_and_the_channels_scope(
    chat: Chat, flow: FakeFlow, db: Database
) -> None:
    chat.say("how do I rotate the VPN cert?", id="q1", mention=True)
    [answer] = chat.answers("q1")
    assert answer["text"] == flow.text
    assert answer["sources"] == [
        "[1] VPN setup <https://wiki.example/pages/101>",
        "[2] OPS-7 Cert rotation <urgent> <https://jira.example/browse/OPS-7>",
    ]
    assert [action for action, _ in answer["buttons"]] == [
        "kb_helpful",
        "kb_not_helpful",
        "kb_refresh",
    ]
    [call] = flow.calls
    assert call.scope == Scope.parse("confluence:ENG")  # KB_CHANNEL_SCOPES for CENG
    assert call.history == () and not call.fresh
    assert chat.adapter.working_seen, "the thread shows the bot at work"
    # Recorded just after the post, for source-updated notices and /metrics.
    assert chat.transcript.wait_for(lambda: bool(flow.posts))
    assert [(p.platform, p.channel, p.thread) for p in flow.posts] == [(PLATFORM, "CENG", "q1")]
    assert _counter(db, "fakechat_answers_posted") == 1


def test_a_plain_message_outside_the_bots_threads_is_left_alone(chat: Chat, flow: FakeFlow) -> None:
    chat.say("just chatting", id="c1")
    chat.say("and more", id="c2", thread="c1")
    answered = chat.transcript.wait_for(lambda: bool(flow.calls), timeout=0.5)
    assert not answered and chat.transcript.bot_messages("CENG", "c1") == []


def test_a_reply_in_the_thread_is_a_follow_up_with_the_thread_as_history(
    chat: Chat, flow: FakeFlow, db: Database
) -> None:
    chat.say("how do I rotate the VPN cert?", id="q1", mention=True)
    chat.answers("q1")
    chat.say("and on Windows?", id="q2", thread="q1")
    [_, second] = chat.answers("q1", count=2)
    assert second["text"] == flow.text
    follow_up = flow.calls[-1]
    assert follow_up.question == "and on Windows?"
    assert [(t.role, t.text) for t in follow_up.history] == [
        ("user", "how do I rotate the VPN cert?"),
        ("bot", flow.text),
    ]
    assert chat.transcript.wait_for(lambda: _counter(db, "fakechat_followups_answered") == 1)


def test_refresh_regenerates_the_answer_in_place_bypassing_the_cache(
    chat: Chat, flow: FakeFlow, db: Database
) -> None:
    chat.say("how do I rotate the VPN cert?", id="q1", mention=True)
    [answer] = chat.answers("q1")
    [value] = {v for action, v in answer["buttons"] if action == ACTION_REFRESH}
    flow.text = "A fresher answer [1]."
    click = {"type": "button", "action": ACTION_REFRESH, "value": value, "message": answer["id"]}
    response = chat.post(click | {"channel": "CENG", "thread": "q1", "user": "UHUMAN"})
    assert response.json() == {"refreshing": True}
    chat.transcript.wait_for(lambda: chat.answers("q1")[0]["text"] == flow.text)
    [refreshed] = chat.answers("q1")  # replaced, not posted again
    assert refreshed["id"] == answer["id"] and refreshed["edits"] >= 2
    assert flow.calls[-1].fresh and flow.calls[-1].question == "how do I rotate the VPN cert?"
    assert flow.calls[-1].scope == Scope.parse("confluence:ENG")
    assert chat.transcript.wait_for(lambda: _counter(db, "fakechat_refreshes") == 1)


def test_a_stale_refresh_button_starts_nothing(chat: Chat, flow: FakeFlow) -> None:
    click = {"type": "button", "action": ACTION_REFRESH, "value": "not json", "message": "m9"}
    response = chat.post(click | {"channel": "CENG", "thread": "q9", "user": "UHUMAN"})
    assert response.json() == {"refreshing": False} and flow.calls == []


def test_a_vote_is_recorded_for_the_answer_and_thanked_privately(chat: Chat, db: Database) -> None:
    chat.say("how do I rotate the VPN cert?", id="q1", mention=True)
    [answer] = chat.answers("q1")
    [value] = {v for action, v in answer["buttons"] if action == ACTION_HELPFUL}
    click = {"type": "button", "action": ACTION_HELPFUL, "value": value, "message": answer["id"]}
    click |= {"channel": "CENG", "thread": "q1", "user": "UVOTER"}
    assert chat.post(click).json() == {"reply": "Thanks, noted that this answer was helpful."}
    assert chat.post(click).json() == {"reply": "You've already marked this answer as helpful."}
    with db.connection() as conn:
        rows = conn.execute("SELECT unit_id, platform, user_id, vote FROM feedback").fetchall()
    assert [tuple(r.values()) for r in rows] == [("unit-1", PLATFORM, "UVOTER", "helpful")]


def test_an_admins_sync_request_is_queued_for_the_daemon(chat: Chat, db: Database) -> None:
    command = {"type": "command", "channel": "CENG", "user": ADMIN, "text": "confluence eng"}
    reply = chat.post(command).json()["reply"]
    assert reply == "Queued a sync of Confluence ENG; I'll tell you here when it's done."
    with db.connection() as conn:
        rows = conn.execute("SELECT source, scopes, requested_by FROM sync_requests").fetchall()
    assert [(r["source"], r["scopes"]) for r in rows] == [("confluence", ["ENG"])]
    assert rows[0]["requested_by"]["platform"] == PLATFORM
    assert _counter(db, "fakechat_sync_requests") == 1


def test_a_sync_request_from_someone_else_is_refused(chat: Chat, db: Database) -> None:
    command = {"type": "command", "channel": "CENG", "user": "UHUMAN", "text": "all"}
    assert chat.post(command).json() == {"reply": NOT_ADMIN}
    with db.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM sync_requests").fetchone()["n"] == 0


def test_an_unsigned_payload_is_refused_before_anything_is_asked(
    chat: Chat, flow: FakeFlow
) -> None:
    event = {"type": "message", "id": "q1", "channel": "CENG", "user": "U", "text": "hi"}
    assert chat.post(event | {"mention": True}, signature="0" * 64).status_code == 401
    assert flow.calls == []
