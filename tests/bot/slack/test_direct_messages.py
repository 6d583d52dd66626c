"""Direct messages to the bot: answered in a thread under the question, with KB_DM_SCOPE."""

from __future__ import annotations

import time
from typing import Any

from fakes.flow import FakeFlow
from fakes.slack_api import new_trigger_id, reset_bot_tables, running_bot

from store.db import Database
from store.scope import Scope


def _dm(
    text: str, *, ts: str, thread_ts: str | None = None, user: str = "UHUMAN"
) -> dict[str, Any]:
    event = {
        "type": "message",
        "user": user,
        "text": text,
        "ts": ts,
        "channel": "D0DANA",
        "channel_type": "im",
        "event_ts": ts,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def test_a_direct_message_is_answered_in_a_thread_with_the_dm_scope(
    module_db: Database,
) -> None:
    db = reset_bot_tables(module_db)
    flow = FakeFlow()
    with running_bot(db, flow, KB_DM_SCOPE="confluence:DOCS") as bot:
        assert bot.event(_dm("who owns label-print?", ts="1700000100.000100")).status_code == 200
        [post] = bot.slack.wait_calls("chat.postMessage")
        assert post.args["channel"] == "D0DANA"
        assert post.args["thread_ts"] == "1700000100.000100"
        assert "the VPN portal" in post.args["text"]
        assert flow.calls[0].question == "who owns label-print?"
        assert flow.calls[0].scope == Scope.parse("confluence:DOCS")

        # A reply in that thread is a follow-up, still with the DM scope and the history.
        assert bot.slack.wait_for(lambda: len(flow.posts) == 1)
        later = f"{float(bot.slack.messages['D0DANA'][-1]['ts']) + 1:.6f}"
        bot.event(_dm("and on weekends?", ts=later, thread_ts="1700000100.000100"))
        posts = bot.slack.wait_calls("chat.postMessage", 2)
        assert len(posts) == 2 and posts[1].args["thread_ts"] == "1700000100.000100"
        assert flow.calls[1].scope == Scope.parse("confluence:DOCS")
        assert flow.calls[1].question == "and on weekends?"
        assert any(t.role == "bot" for t in flow.calls[1].history)


def test_without_kb_dm_scope_a_direct_message_gets_the_default_scope(
    module_db: Database,
) -> None:
    db = reset_bot_tables(module_db)
    flow = FakeFlow()
    with running_bot(db, flow) as bot:
        bot.event(_dm("where is the VPN guide?", ts="1700000300.000100"))
        bot.slack.wait_calls("chat.postMessage")
    assert flow.calls[0].scope == Scope.parse("confluence:*,jira:*")


def test_the_bots_own_messages_and_edits_in_a_dm_get_no_answer(module_db: Database) -> None:
    db = reset_bot_tables(module_db)
    flow = FakeFlow()
    with running_bot(db, flow) as bot:
        own = _dm("an answer", ts="1700000400.000100", user=bot.slack.bot_user)
        edited = {**_dm("edited", ts="1700000400.000200"), "subtype": "message_changed"}
        other_bot = {**_dm("beep", ts="1700000400.000300"), "bot_id": "BOTHER"}
        for event in (own, edited, other_bot):
            assert bot.event(event).status_code == 200
        time.sleep(0.3)
        assert bot.slack.calls_to("chat.postMessage") == []
    assert flow.calls == []


def test_a_refresh_in_a_dm_keeps_the_dm_scope(module_db: Database) -> None:
    db = reset_bot_tables(module_db)
    flow = FakeFlow()
    with running_bot(db, flow, KB_DM_SCOPE="jira:OPS") as bot:
        bot.event(_dm("rotate the cert?", ts="1700000500.000100"))
        [post] = bot.slack.wait_calls("chat.postMessage")
        message_ts = bot.slack.messages["D0DANA"][-1]["ts"]
        refresh = next(
            e
            for b in post.args["blocks"]
            if b["type"] == "actions"
            for e in b["elements"]
            if e["action_id"] == "kb_refresh"
        )
        bot.action(
            {
                "type": "block_actions",
                "trigger_id": new_trigger_id(),
                "user": {"id": "UHUMAN"},
                "channel": {"id": "D0DANA"},
                "container": {
                    "type": "message",
                    "channel_id": "D0DANA",
                    "message_ts": message_ts,
                    "thread_ts": "1700000500.000100",
                },
                "message": {"ts": message_ts, "blocks": post.args["blocks"]},
                "actions": [refresh],
            }
        )
        assert bot.slack.wait_for(lambda: len(flow.calls) == 2)
    assert flow.calls[1].fresh and flow.calls[1].scope == Scope.parse("jira:OPS")
