"""The assistant pane's suggested prompts, through the real Bolt app from Slack's own
``assistant_thread_started`` fixture: the questions people most asked and got from the cache in
the scope the pane would answer with, never another scope's, then the configured list (or the
defaults when none is configured)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fakes.flow import FakeFlow
from fakes.slack_api import RunningBot, reset_bot_tables, running_bot

from bot.wording import DEFAULT_PROMPTS, PROMPT_TITLE_LIMIT
from store.db import Database

AI_APPS = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "slack" / "ai_apps"
if not AI_APPS.is_dir():
    pytest.skip(f"shared Slack fixtures not found at {AI_APPS}", allow_module_level=True)

STARTED = json.loads((AI_APPS / "assistant_thread_started.json").read_text())
MOVED = json.loads((AI_APPS / "assistant_thread_context_changed.json").read_text())
ASKED = json.loads((AI_APPS / "assistant_thread_message_im.json").read_text())
VIEWED = STARTED["event"]["assistant_thread"]["context"]["channel_id"]  # the channel in view
MOVED_TO = MOVED["event"]["assistant_thread"]["context"]["channel_id"]
BOT = STARTED["authed_users"][0]


@pytest.fixture
def db(module_db: Database) -> Database:
    return reset_bot_tables(module_db)


def _deliver(bot: RunningBot, fixture: dict[str, Any], thread: str | None = None) -> None:
    """Slack's fixture as a fresh delivery (in pane thread ``thread``, if given)."""
    envelope: dict[str, Any] = json.loads(json.dumps(fixture))
    envelope["event_id"] = f"Ev{uuid.uuid4().hex[:12].upper()}"
    envelope["event_time"] = int(time.time())
    event = envelope["event"]
    if thread is not None:
        (event.get("assistant_thread") or event)["thread_ts"] = thread
    assert bot.post(json.dumps(envelope).encode(), "application/json").status_code == 200


def _open_pane(
    bot: RunningBot, fixture: dict[str, Any] = STARTED, thread: str | None = None
) -> list[dict[str, str]]:
    """A pane event for a new (or the given) pane thread; the prompts it set."""
    before = len(bot.slack.calls_to("assistant.threads.setSuggestedPrompts"))
    thread = thread or f"{time.time():.6f}"
    _deliver(bot, fixture, thread)
    call = bot.slack.wait_calls("assistant.threads.setSuggestedPrompts", before + 1)[-1]
    pane = fixture["event"]["assistant_thread"]["channel_id"]
    assert (call.args["channel_id"], call.args["thread_ts"]) == (pane, thread)
    prompts: list[dict[str, str]] = call.args["prompts"]
    return prompts


def _messages(prompts: list[dict[str, str]]) -> list[str]:
    return [p["message"] for p in prompts]


def _ask(bot: RunningBot, flow: FakeFlow, channel: str, question: str, times: int) -> None:
    """Mention the bot ``times`` with ``question`` in ``channel`` and wait until each answer
    is posted and recorded (the first generates, the others come from the cache)."""
    for _ in range(times):
        wanted = len(flow.posts) + 1
        bot.mention(question, channel=channel, ts=f"{time.time():.6f}")
        assert bot.slack.wait_for(lambda n=wanted: len(flow.posts) == n)


def test_prompts_are_the_most_asked_cached_questions_in_the_viewed_channels_scope(
    db: Database,
) -> None:
    flow = FakeFlow(cache=True)
    scopes = f"{VIEWED}=confluence:ENG;CENG2=confluence:ENG;COPS=jira:OPS"
    env = {"KB_CHANNEL_SCOPES": scopes, "KB_SUGGESTED_PROMPTS": "Who is on call?|How do I deploy?"}
    with running_bot(db, flow, bot_user=BOT, **env) as bot:
        bot.slack.member_of.add(VIEWED)
        _ask(bot, flow, VIEWED, "How do I deploy?", 4)
        _ask(bot, flow, "CENG2", "Where is the VPN guide?", 3)  # same scope, another channel
        _ask(bot, flow, VIEWED, "Asked once, so never served from the cache?", 1)
        _ask(bot, flow, "COPS", "What is the ops escalation secret?", 6)  # another scope
        prompts = _open_pane(bot)
    # Cached questions of confluence:ENG first, most asked first; then the configured list
    # (its repeat of "How do I deploy?" skipped), not padded with the defaults.
    assert _messages(prompts) == ["How do I deploy?", "Where is the VPN guide?", "Who is on call?"]
    assert all(p["title"] == p["message"] for p in prompts)


def test_a_channel_the_bot_is_not_in_lends_its_scope_no_prompts(db: Database) -> None:
    """Looking at a channel kb-bot cannot see: the pane answers with the DM scope, and its
    prompts come from the DM scope too, never from the channel's own (wider) scope."""
    flow = FakeFlow(cache=True)
    env = {
        "KB_CHANNEL_SCOPES": f"{VIEWED}=jira:OPS;COPS=jira:OPS",
        "KB_DM_SCOPE": "confluence:DOCS",
        "KB_SUGGESTED_PROMPTS": "Who is on call?",
    }
    with running_bot(db, flow, bot_user=BOT, **env) as bot:
        _ask(bot, flow, "COPS", "What is the ops escalation secret?", 3)
        outside = _open_pane(bot)
        bot.slack.member_of.add(VIEWED)
        inside = _open_pane(bot)
    assert _messages(outside) == ["Who is on call?"]
    assert _messages(inside)[0] == "What is the ops escalation secret?"


def test_configured_prompts_or_else_the_defaults_when_nothing_was_asked(db: Database) -> None:
    long = "How do I " + "really " * 20 + "rotate the VPN certificate?"
    with running_bot(db, FakeFlow(), bot_user=BOT, KB_SUGGESTED_PROMPTS=f"One?|{long}") as bot:
        prompts = _open_pane(bot)
    assert _messages(prompts) == ["One?", long]
    # The button's title is cut to fit; pressing it still sends the whole question.
    assert len(prompts[1]["title"]) == PROMPT_TITLE_LIMIT and prompts[1]["title"].endswith("…")
    with running_bot(db, FakeFlow(), bot_user=BOT) as bot:
        assert _messages(_open_pane(bot)) == list(DEFAULT_PROMPTS)


def test_prompts_follow_the_user_to_another_channel_until_the_first_question(
    db: Database,
) -> None:
    flow = FakeFlow(cache=True)
    env = {"KB_CHANNEL_SCOPES": f"{VIEWED}=confluence:ENG;{MOVED_TO}=jira:OPS"}
    with running_bot(db, flow, bot_user=BOT, **env) as bot:
        bot.slack.member_of.update({VIEWED, MOVED_TO})
        _ask(bot, flow, VIEWED, "How do I deploy?", 2)
        _ask(bot, flow, MOVED_TO, "Who restarts the ingest job?", 2)
        thread = ASKED["event"]["thread_ts"]
        assert _messages(_open_pane(bot, STARTED, thread))[0] == "How do I deploy?"
        moved = _open_pane(bot, MOVED, thread)
        assert _messages(moved)[0] == "Who restarts the ingest job?"
        assert "How do I deploy?" not in _messages(moved)
        # Once something was asked in the pane, moving on leaves the thread's prompts alone.
        _deliver(bot, ASKED)
        assert bot.slack.wait_for(lambda: len(flow.posts) == 5)
        _deliver(bot, MOVED, thread)
        time.sleep(0.3)
    assert len(bot.slack.calls_to("assistant.threads.setSuggestedPrompts")) == 2
