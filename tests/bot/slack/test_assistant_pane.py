"""Slack's assistant pane through the real Bolt app: prompts, status, title, the channel in view."""

from __future__ import annotations

import time
from typing import Any

from fakes.flow import FakeFlow
from fakes.slack_api import RunningBot, reset_bot_tables, running_bot

from bot.wording import DEFAULT_PROMPTS
from store.db import Database
from store.scope import Scope

PANE, THREAD = "D0PANE", "1700000001.000100"
PROMPTS = "One?|Two?|Three?|Four?|Five?"


def _pane_event(kind: str, channel: str | None) -> dict[str, Any]:
    context = {"channel_id": channel, "team_id": "T0KB"} if channel else {"team_id": "T0KB"}
    return {
        "type": kind,
        "assistant_thread": {
            "user_id": "UHUMAN",
            "context": context,
            "channel_id": PANE,
            "thread_ts": THREAD,
        },
        "event_ts": f"{time.time():.6f}",
    }


def _ask(bot: RunningBot, text: str) -> None:
    ts = f"{time.time() + 1:.6f}"
    event = {
        "type": "message",
        "user": "UHUMAN",
        "text": text,
        "ts": ts,
        "thread_ts": THREAD,
        "channel": PANE,
        "channel_type": "im",
        "event_ts": ts,
    }
    assert bot.event(event).status_code == 200


def test_pane_shows_prompts_status_and_title_and_answers_with_the_viewed_channels_scope(
    module_db: Database,
) -> None:
    db = reset_bot_tables(module_db)
    flow = FakeFlow()
    with running_bot(db, flow, KB_SUGGESTED_PROMPTS=PROMPTS) as bot:
        bot.slack.member_of.add("CENG")
        bot.event(_pane_event("assistant_thread_started", "CENG"))
        [prompts] = bot.slack.wait_calls("assistant.threads.setSuggestedPrompts")
        assert prompts.args["channel_id"] == PANE and prompts.args["thread_ts"] == THREAD
        # Slack shows at most four.
        assert [p["message"] for p in prompts.args["prompts"]] == [
            "One?",
            "Two?",
            "Three?",
            "Four?",
        ]

        _ask(bot, "how do I rotate the VPN cert?")
        [post] = bot.slack.wait_calls("chat.postMessage")
        statuses = bot.slack.wait_calls("assistant.threads.setStatus", 2)
        assert post.args["channel"] == PANE and post.args["thread_ts"] == THREAD
        assert "the VPN portal" in post.args["text"]
        assert [s.args["status"] for s in statuses] == ["is searching Confluence and Jira…", ""]
        assert statuses[0].at <= post.at <= statuses[1].at
        [title] = bot.slack.calls_to("assistant.threads.setTitle")
        assert title.args["title"] == "how do I rotate the VPN cert?"
        assert flow.calls[0].scope == Scope.parse("confluence:ENG")

        # A follow-up: the thread so far goes along, the title stays the first question.
        assert bot.slack.wait_for(lambda: len(flow.posts) == 1)
        _ask(bot, "and on Linux?")
        bot.slack.wait_calls("chat.postMessage", 2)
        assert flow.calls[1].question == "and on Linux?"
        assert any(t.role == "bot" for t in flow.calls[1].history)
        assert len(bot.slack.calls_to("assistant.threads.setTitle")) == 1


def test_pane_scope_follows_the_context_and_never_a_channel_the_bot_is_not_in(
    module_db: Database,
) -> None:
    db = reset_bot_tables(module_db)
    flow = FakeFlow()
    with running_bot(db, flow, KB_DM_SCOPE="jira:SUP") as bot:
        bot.slack.member_of.update({"CENG", "CALL"})
        bot.event(_pane_event("assistant_thread_started", "CENG"))
        bot.event(_pane_event("assistant_thread_context_changed", "CALL"))
        time.sleep(0.2)
        _ask(bot, "first")
        bot.slack.wait_calls("chat.postMessage", 1)
        # CSECRET has a wide scope configured, but the bot is not a member: DM scope.
        bot.event(_pane_event("assistant_thread_context_changed", "CSECRET"))
        time.sleep(0.2)
        _ask(bot, "second")
        bot.slack.wait_calls("chat.postMessage", 2)
        # A private channel the bot is not in answers channel_not_found: DM scope as well.
        bot.event(_pane_event("assistant_thread_context_changed", "GPRIVATE"))
        time.sleep(0.2)
        _ask(bot, "third")
        bot.slack.wait_calls("chat.postMessage", 3)
        # No channel in view at all.
        bot.event(_pane_event("assistant_thread_context_changed", None))
        time.sleep(0.2)
        _ask(bot, "fourth")
        bot.slack.wait_calls("chat.postMessage", 4)
    assert [c.scope for c in flow.calls] == [Scope.parse("*")] + [Scope.parse("jira:SUP")] * 3


def test_pane_without_configured_prompts_suggests_the_defaults(module_db: Database) -> None:
    db = reset_bot_tables(module_db)
    with running_bot(db, FakeFlow()) as bot:
        assert bot.event(_pane_event("assistant_thread_started", "CENG")).status_code == 200
        [prompts] = bot.slack.wait_calls("assistant.threads.setSuggestedPrompts")
    assert [p["message"] for p in prompts.args["prompts"]] == list(DEFAULT_PROMPTS)
