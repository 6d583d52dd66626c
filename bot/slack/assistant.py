"""Slack's assistant pane (the "Agents & AI Apps" surface), on Bolt's ``Assistant`` middleware
(docs/ARCHITECTURE.md, "Slack AI surface").

The pane is a DM thread beside whatever channel the user is looking at. A question there is
answered with the scope of that channel, but only when kb-bot is a member of it
(``conversations.info``): looking at a channel the bot cannot see must not widen what a person
may read. Otherwise the DM scope applies. The channel in view arrives with
``assistant_thread_started`` and every ``assistant_thread_context_changed``; it is kept in
memory per pane thread (after a restart, until the next move, the DM scope applies).

The suggested prompts set when a pane opens come from the same place as the scope: the
conversation draws them from the questions asked in the scope the pane would answer with
(the channel in view only after the same membership check), so they never show another
scope's questions.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from slack_bolt import Assistant, BoltContext
from slack_bolt.context.assistant.thread_context import AssistantThreadContext
from slack_bolt.context.assistant.thread_context_store.store import AssistantThreadContextStore
from slack_bolt.context.set_suggested_prompts import SetSuggestedPrompts

from bot.conversation import Inbound, Question
from bot.slack.blocks import slack_to_plain
from bot.slack.thread import Me, SlackThread
from bot.wording import PANE_PROMPTS_TITLE, SEARCHING_STATUS, prompt_title

log = logging.getLogger(__name__)

TITLE_LIMIT = 255
_REMEMBERED_THREADS = 10_000


class PaneContextStore(AssistantThreadContextStore):
    """The channel each pane thread is looking at, in memory, bounded (oldest forgotten)."""

    def __init__(self, limit: int = _REMEMBERED_THREADS) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._contexts: OrderedDict[tuple[str, str], dict[str, str]] = OrderedDict()

    def save(self, *, channel_id: str, thread_ts: str, context: dict[str, str]) -> None:
        with self._lock:
            self._contexts[(channel_id, thread_ts)] = dict(context or {})
            self._contexts.move_to_end((channel_id, thread_ts))
            while len(self._contexts) > self._limit:
                self._contexts.popitem(last=False)

    def find(self, *, channel_id: str, thread_ts: str) -> AssistantThreadContext | None:
        with self._lock:
            found = self._contexts.get((channel_id, thread_ts))
        return AssistantThreadContext(found) if found and found.get("channel_id") else None


@dataclass(frozen=True)
class PaneThread(SlackThread):
    """A pane thread: the working sign is the pane's status line, cleared afterwards."""

    @contextmanager
    def working(self) -> Iterator[None]:
        set_status(self, SEARCHING_STATUS)
        try:
            yield
        finally:
            set_status(self, "")


def set_status(thread: SlackThread, status: str) -> None:
    try:
        thread.client.assistant_threads_setStatus(
            channel_id=thread.channel, thread_ts=thread.thread, status=status
        )
    except Exception as exc:  # cosmetic: the answer matters, not the status line
        log.info("assistant status in %s failed: %s", thread.channel, exc)


def build_assistant(conversation: Inbound, store: PaneContextStore) -> Assistant:
    """Bolt's Assistant middleware with kb-bot's pane listeners."""
    assistant = Assistant(thread_context_store=store)
    pane = PaneHandlers(conversation, store)
    assistant.thread_started(pane.on_thread_started)
    assistant.thread_context_changed(pane.on_context_changed)
    assistant.user_message(pane.on_user_message)
    return assistant


class PaneHandlers:
    def __init__(self, conversation: Inbound, store: PaneContextStore) -> None:
        self._conversation = conversation
        self._store = store

    def on_thread_started(
        self,
        payload: dict[str, Any],
        context: BoltContext,
        set_suggested_prompts: SetSuggestedPrompts,
    ) -> None:
        self._follow(payload, context, set_suggested_prompts, opened=True)

    def on_context_changed(
        self,
        payload: dict[str, Any],
        context: BoltContext,
        set_suggested_prompts: SetSuggestedPrompts,
    ) -> None:
        """The user looked at another channel: remember it and, while nothing was asked in
        this pane thread yet, suggest that channel's questions instead."""
        self._follow(payload, context, set_suggested_prompts, opened=False)

    def _follow(
        self,
        payload: dict[str, Any],
        context: BoltContext,
        set_suggested_prompts: SetSuggestedPrompts,
        *,
        opened: bool,
    ) -> None:
        pane = payload.get("assistant_thread") or {}
        channel, thread = str(pane.get("channel_id") or ""), str(pane.get("thread_ts") or "")
        if not channel or not thread:
            return
        self._store.save(channel_id=channel, thread_ts=thread, context=pane.get("context") or {})
        if not opened and self._conversation.is_bot_thread(channel, thread):
            return
        viewed = self._visible_channel(context, channel, thread)
        questions = self._conversation.suggested_prompts(channel, viewed)
        if questions:
            prompts = [{"title": prompt_title(q), "message": q} for q in questions]
            set_suggested_prompts(prompts=prompts, title=PANE_PROMPTS_TITLE)

    def on_user_message(self, payload: dict[str, Any], context: BoltContext) -> None:
        user, ts, thread = payload.get("user"), payload.get("ts"), payload.get("thread_ts")
        channel = payload.get("channel")
        if not user or user == context.bot_user_id or not ts or not thread or not channel:
            return
        if context.client is None:
            return
        channel, thread, ts = str(channel), str(thread), str(ts)
        text = slack_to_plain(str(payload.get("text") or ""), bot_user_id=context.bot_user_id)
        viewed = self._visible_channel(context, channel, thread)
        followup = self._conversation.is_bot_thread(channel, thread)
        if not followup and text:
            try:
                context.client.assistant_threads_setTitle(
                    channel_id=channel, thread_ts=thread, title=text[:TITLE_LIMIT]
                )
            except Exception as exc:
                log.info("assistant title in %s failed: %s", channel, exc)
        question = Question(
            channel,
            thread,
            text,
            with_history=True,
            followup=followup,
            direct=viewed is None,
            scope_channel=viewed,
        )
        me = Me(context.bot_user_id, context.bot_id)
        self._conversation.ask(question, PaneThread(context.client, channel, thread, ts, me))

    def _visible_channel(self, context: BoltContext, channel: str, thread: str) -> str | None:
        """The channel the user is looking at, if kb-bot is a member of it."""
        found = self._store.find(channel_id=channel, thread_ts=thread)
        viewed = found.channel_id if found is not None else None
        if not viewed or context.client is None:
            return None
        try:
            info = context.client.conversations_info(channel=viewed)
        except Exception as exc:
            # channel_not_found for a private channel we are not in; no scope from it.
            log.info("conversations.info for %s failed: %s", viewed, exc)
            return None
        return viewed if (info.get("channel") or {}).get("is_member") else None
