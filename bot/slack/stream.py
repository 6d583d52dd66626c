"""A Slack answer streamed into its thread: ``chat.startStream`` at the first text,
``chat.appendStream`` as more arrives, ``chat.stopStream`` and then ``chat.update`` with the
final blocks (docs/ARCHITECTURE.md, "Streamed answers").

``chat.stopStream`` can only add blocks under the streamed text, and the final answer must
replace it (renumbered citations, the sources block, the feedback controls, or the failure
that cut it short), so the stream is stopped bare and the message is then rewritten with
exactly the blocks a non-streamed answer has.

Appends are coalesced (one call per :data:`COALESCE_S` at most) to stay inside the methods'
rate limits. A workspace that refuses to stream (``not_allowed``, ``missing_scope``, an older
workspace's ``unknown_method``) gets the whole answer in one ``chat.postMessage``, and the
asker is told nothing about it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.answers import Answer
from bot.slack.blocks import escape, render_answer, render_error
from bot.streaming import Pace

if TYPE_CHECKING:
    from bot.slack.thread import SlackThread

log = logging.getLogger(__name__)

COALESCE_S = 0.2  # at most five appends a second per answer
# Slack takes up to 12,000 characters of markdown_text per call.
_CALL_LIMIT = 12_000


class SlackAnswerStream:
    """Implements :class:`bot.conversation.AnswerStream` for one Slack thread."""

    def __init__(
        self,
        thread: SlackThread,
        *,
        coalesce: float = COALESCE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._thread = thread
        self._pace = Pace(coalesce, clock)
        self._ts: str | None = None
        self._pending = ""
        self._refused = False  # startStream refused: post at the end instead
        self._broken = False  # appends failed: stop appending, finish in place

    @property
    def ts(self) -> str | None:
        """The streamed message, once started."""
        return self._ts

    def append(self, text: str) -> None:
        if self._refused or self._broken or not text:
            return
        self._pending += text
        if self._ts is None:
            self._start()
        elif self._pace.due():
            self._flush()

    def finish(self, answer: Answer) -> None:
        if self._ts is None:
            self._thread.post_answer(answer)
            return
        self._stop()
        blocks, text = render_answer(answer)
        self._thread.client.chat_update(
            channel=self._thread.channel, ts=self._ts, text=text, blocks=blocks
        )

    def fail(self, text: str, question: str | None) -> None:
        if self._ts is None:
            self._thread.post_error(text, question)
            return
        self._stop()
        blocks, fallback = render_error(text, question)
        try:
            self._thread.client.chat_update(
                channel=self._thread.channel, ts=self._ts, text=fallback, blocks=blocks
            )
        except Exception as exc:
            log.warning("could not replace a broken stream in %s: %s", self._thread.channel, exc)

    # --- the Web API --------------------------------------------------------------------------

    def _start(self) -> None:
        thread = self._thread
        text, self._pending = _shown(self._pending), ""
        try:
            response = thread.client.chat_startStream(
                channel=thread.channel,
                thread_ts=thread.thread,
                markdown_text=text,
                # Required when streaming into a channel; the asker and their workspace.
                recipient_user_id=thread.asker,
                recipient_team_id=thread.team,
            )
            ts = response.get("ts")
        except Exception as exc:
            log.info("Slack refused a stream in %s (%s); posting at the end", thread.channel, exc)
            self._refused = True
            return
        if not ts:
            self._refused = True
            return
        self._ts = str(ts)
        self._pace.sent()

    def _flush(self) -> None:
        assert self._ts is not None
        text, self._pending = _shown(self._pending), ""
        try:
            self._thread.client.chat_appendStream(
                channel=self._thread.channel, ts=self._ts, markdown_text=text
            )
        except Exception as exc:
            log.info("appending to a stream in %s failed: %s", self._thread.channel, exc)
            self._broken = True
        self._pace.sent()

    def _stop(self) -> None:
        assert self._ts is not None
        try:
            self._thread.client.chat_stopStream(channel=self._thread.channel, ts=self._ts)
        except Exception as exc:
            # Expired or already stopped: chat.update below still replaces the text.
            log.info("stopping a stream in %s failed: %s", self._thread.channel, exc)


def _shown(text: str) -> str:
    """Streamed text as Slack should show it: its control characters escaped (no ``<!here>``
    from the model), within one call's limit (the final update carries the whole answer)."""
    return escape(text)[:_CALL_LIMIT]
