"""Streamed answers in Teams: personal chats stream with Teams' streaming protocol (typing
activities carrying a ``streaminfo`` entity, then a final message); channels post at the end."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import pytest
from fakes.flow import FakeFlow
from fakes.teams import (
    CHANNEL,
    PERSONAL,
    RunningTeamsBot,
    Sent,
    channel_message,
    feedback_invoke,
    personal_message,
    reset_teams_tables,
    running_teams_bot,
)

from bot.wording import SOMETHING_WRONG
from store.db import Database

ANSWER = "Open the VPN portal [1] and pick the Windows profile, then rotate the cert [2]."


@pytest.fixture
def bot(module_db: Database) -> Iterator[RunningTeamsBot]:
    flow = FakeFlow(text=ANSWER, streams=True, word_delay=0.2)
    with running_teams_bot(reset_teams_tables(module_db), flow) as running:
        yield running


def _stream_info(sent: Sent) -> dict[str, Any] | None:
    return next((e for e in sent.body.get("entities") or [] if e["type"] == "streaminfo"), None)


def test_a_personal_chat_streams_typing_updates_then_a_final_card(bot: RunningTeamsBot) -> None:
    bot.post(personal_message(bot.connector.url, "how do I rotate the VPN cert?", id="p1"))
    [final] = bot.connector.wait_messages(timeout=10)
    updates = [s for s in bot.connector.sent if s.body.get("type") == "typing" and _stream_info(s)]
    assert len(updates) >= 2, [u.body for u in updates]
    infos = [_stream_info(u) for u in updates]
    assert all(i and i["streamType"] == "streaming" for i in infos)
    assert [i["streamSequence"] for i in infos if i] == list(range(1, len(updates) + 1))
    stream_id = updates[0].activity_id
    assert "streamId" not in (infos[0] or {})
    assert all(i and i["streamId"] == stream_id for i in infos[1:])
    # Each update holds all the text so far, and grows.
    texts = [u.body["text"] for u in updates]
    assert texts[0] == "Open "  # the first word, at once
    assert all(b.startswith(a) and len(b) > len(a) for a, b in pairwise(texts))
    assert all(u.conversation == PERSONAL and u.reply_to == "p1" for u in updates)

    # The final message ends the stream and carries the answer card, sources and buttons.
    assert final.body["type"] == "message" and final.at > updates[-1].at
    assert _stream_info(final) == {
        "type": "streaminfo",
        "streamId": stream_id,
        "streamType": "final",
    }
    assert "[1] [VPN setup](https://wiki.example/pages/101)" in final.card_text
    assert [a["verb"] for a in final.card["actions"]][-1] == "kb_refresh"


def test_a_channel_answer_is_posted_at_the_end_without_streaming(bot: RunningTeamsBot) -> None:
    bot.post(channel_message(bot.connector.url, "how do I rotate the VPN cert?"))
    [reply] = bot.connector.wait_messages(timeout=10)
    assert reply.conversation.startswith(CHANNEL)
    assert not any(_stream_info(s) for s in bot.connector.sent)
    assert reply.card["body"][0]["text"] == ANSWER


def test_a_failure_after_the_text_went_out_ends_the_stream_with_the_error_card(
    module_db: Database,
) -> None:
    flow = FakeFlow(text=ANSWER, streams=True, word_delay=0.05, fail=RuntimeError("store down"))
    with running_teams_bot(reset_teams_tables(module_db), flow) as bot:
        bot.post(personal_message(bot.connector.url, "how do I rotate the VPN cert?", id="p1"))
        [final] = bot.connector.wait_messages(timeout=10)
        updates = [s for s in bot.connector.sent if _stream_info(s) and s.body["type"] == "typing"]
        assert updates and updates[0].body["text"] == "Open "  # the answer had begun to show
        info = _stream_info(final)
        assert info and info["streamType"] == "final"
        assert info["streamId"] == updates[0].activity_id
        assert SOMETHING_WRONG in final.card_text and "VPN portal" not in final.card_text


def test_thumbs_on_a_streamed_answer_are_recorded(
    bot: RunningTeamsBot, module_db: Database
) -> None:
    bot.post(personal_message(bot.connector.url, "how do I rotate the VPN cert?", id="p3"))
    [final] = bot.connector.wait_messages(timeout=10)
    streamed = next(s for s in bot.connector.sent if _stream_info(s))
    # Teams names the rated message by the stream's id (the message the text streamed into).
    vote = feedback_invoke(
        bot.connector.url, "like", conversation=PERSONAL, message_id=streamed.activity_id
    )
    response = bot.post(vote)
    assert response.status_code == 200 and response.json() == {"status": 200}
    assert final.body["channelData"] == {"feedbackLoopEnabled": True}
    with module_db.connection() as conn:
        votes = conn.execute("SELECT platform, vote FROM feedback").fetchall()
    assert votes == [{"platform": "teams", "vote": "helpful"}]
