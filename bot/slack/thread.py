"""Slack's outbound side of the conversation: a thread to answer in, an answer to refresh.

:class:`SlackThread` implements :class:`bot.conversation.StreamingThread` (its answers
stream through :mod:`bot.slack.stream`) and :class:`SlackAnswerMessage` implements
:class:`bot.conversation.AnswerMessage`; both render
with :mod:`bot.slack.blocks` and call the Web API. Cosmetic calls (the working reaction, the
error notes) never raise: the answer matters, not the decoration.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient

from bot.answers import Answer, Turn
from bot.slack.blocks import (
    Block,
    render_answer,
    render_error,
    replace_actions_with_note,
    slack_to_plain,
)
from bot.slack.platform import MARKER_EVENT
from bot.slack.stream import SlackAnswerStream
from bot.wording import refreshing_note

log = logging.getLogger(__name__)

WORKING_REACTION = "hourglass_flowing_sand"
# A person's message; thread_broadcast ("also send to channel") and file_share are people too.
HUMAN_SUBTYPES = frozenset({None, "thread_broadcast", "file_share"})
HISTORY_TURNS = 20
_HISTORY_PAGES = 5


@dataclass(frozen=True)
class Me:
    """The bot's own ids in this workspace: its user id (mentions) and its bot id (posts)."""

    user_id: str | None
    bot_id: str | None


@dataclass(frozen=True)
class SlackThread:
    """A Slack thread with the question ``ts`` that asked in it."""

    client: WebClient
    channel: str
    thread: str
    ts: str  # the asking message: gets the working reaction, is left out of the history
    me: Me
    asker: str | None = None  # who asked, and their workspace: a stream in a channel needs them
    team: str | None = None

    def open_stream(self) -> SlackAnswerStream:
        return SlackAnswerStream(self)

    @contextmanager
    def working(self) -> Iterator[None]:
        reacted = react(self.client, add=True, channel=self.channel, ts=self.ts)
        try:
            yield
        finally:
            if reacted:
                react(self.client, add=False, channel=self.channel, ts=self.ts)

    def history(self) -> Sequence[Turn]:
        turns: list[Turn] = []
        cursor: str | None = None
        try:
            for _ in range(_HISTORY_PAGES):
                page = self.client.conversations_replies(
                    channel=self.channel,
                    ts=self.thread,
                    limit=200,
                    include_all_metadata=True,
                    cursor=cursor,
                )
                for message in page.get("messages") or []:
                    turn = thread_turn(message, before_ts=self.ts, me=self.me)
                    if turn is not None:
                        turns.append(turn)
                cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    break
        except Exception as exc:
            # Without channels:history (or on a hiccup) answer anyway, just without context.
            log.warning("could not read thread %s in %s: %s", self.thread, self.channel, exc)
        return turns[-HISTORY_TURNS:]

    def say(self, text: str) -> None:
        self.client.chat_postMessage(channel=self.channel, thread_ts=self.thread, text=text)

    def post_answer(self, answer: Answer) -> None:
        blocks, text = render_answer(answer)
        self.client.chat_postMessage(
            channel=self.channel,
            thread_ts=self.thread,
            text=text,
            blocks=blocks,
            unfurl_links=False,
            unfurl_media=False,
        )

    def post_error(self, text: str, question: str | None) -> None:
        blocks, fallback = render_error(text, question)
        try:
            self.client.chat_postMessage(
                channel=self.channel, thread_ts=self.thread, text=fallback, blocks=blocks
            )
        except Exception as exc:
            log.warning("could not tell %s about a failure either: %s", self.channel, exc)


@dataclass(frozen=True)
class SlackAnswerMessage:
    """A posted answer whose Refresh button ``user`` pressed; ``blocks`` as it shows now."""

    client: WebClient
    channel: str
    ts: str
    blocks: list[Block] | None
    user: str

    def mark_refreshing(self) -> None:
        if self.blocks is not None:
            note = refreshing_note(f"<@{self.user}>" if self.user else None)
            self._update(replace_actions_with_note(self.blocks, note), note)

    def replace(self, answer: Answer) -> None:
        blocks, text = render_answer(answer)
        self.client.chat_update(channel=self.channel, ts=self.ts, text=text, blocks=blocks)

    def replace_with_error(self, text: str, question: str) -> None:
        self._update(*render_error(text, question))

    def _update(self, blocks: list[Block], text: str) -> None:
        try:
            self.client.chat_update(channel=self.channel, ts=self.ts, text=text, blocks=blocks)
        except Exception as exc:
            log.warning("could not update %s in %s: %s", self.ts, self.channel, exc)


def react(client: WebClient, *, add: bool, channel: str, ts: str) -> bool:
    """The working reaction; failing (already_reacted, no reactions:write) is cosmetic only."""
    try:
        call = client.reactions_add if add else client.reactions_remove
        call(channel=channel, timestamp=ts, name=WORKING_REACTION)
        return True
    except Exception as exc:
        log.info("reaction %s failed in %s: %s", "add" if add else "remove", channel, exc)
        return False


def thread_turn(message: dict[str, Any], *, before_ts: str, me: Me) -> Turn | None:
    """A thread message as conversation context, or None for what is not conversation:
    later messages, notices, other bots, edits."""
    try:
        if float(str(message.get("ts") or "")) >= float(before_ts):
            return None  # the question itself, and anything after it
    except ValueError:
        return None
    if (message.get("metadata") or {}).get("event_type") == MARKER_EVENT:
        return None  # a source-updated notice
    text = slack_to_plain(str(message.get("text") or ""), bot_user_id=me.user_id)
    if not text:
        return None
    mine_as_user = me.user_id and message.get("user") == me.user_id
    if mine_as_user or (me.bot_id and message.get("bot_id") == me.bot_id):
        return Turn(role="bot", text=text)
    if message.get("bot_id") or message.get("subtype") not in HUMAN_SUBTYPES:
        return None
    return Turn(role="user", text=text)


@dataclass(frozen=True)
class Click:
    """A button click: who pressed it, on which message, in which thread."""

    client: WebClient
    channel: str
    message_ts: str
    thread: str
    user: str

    @classmethod
    def read(cls, body: dict[str, Any], client: WebClient | None) -> Click | None:
        container = body.get("container") or {}
        message = body.get("message") or {}
        channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
        ts = container.get("message_ts") or message.get("ts")
        if client is None or not channel or not ts:
            return None
        thread = container.get("thread_ts") or message.get("thread_ts") or ts
        user = str((body.get("user") or {}).get("id") or "")
        return cls(client, str(channel), str(ts), str(thread), user)

    def reply(self, text: str) -> None:
        """Tell the person who clicked, in the thread, visible to them only."""
        try:
            self.client.chat_postEphemeral(
                channel=self.channel, user=self.user, text=text, thread_ts=self.thread
            )
        except Exception as exc:
            log.info("ephemeral reply in %s failed: %s", self.channel, exc)
