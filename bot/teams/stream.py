"""A Teams answer streamed into a personal chat with Teams' streaming protocol
(docs/ARCHITECTURE.md, "Streamed answers").

Each update is a ``typing`` activity whose text is everything shown so far, carrying a
``streaminfo`` entity (``streamType: streaming``, ``streamSequence`` 1, 2, …; the id Teams
gives the first one is the ``streamId`` of the rest). A final ``message`` activity with
``streamType: final`` replaces the streamed text with the answer card (sources, feedback,
Refresh) or the failure that cut it short. Teams takes about one update a second, so updates
are coalesced to :data:`COALESCE_S`. Channels and group chats cannot stream: their answers are
posted at the end. A chat that refuses the stream gets the answer posted whole, and a stream
the person stopped gets its final answer as a new message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot.answers import Answer
from bot.streaming import Pace
from bot.teams.cards import Activity, answer_activity, error_activity
from bot.teams.feedback import remember_answer
from bot.teams.platform import ConnectorError

if TYPE_CHECKING:
    from bot.teams.thread import TeamsThread

log = logging.getLogger(__name__)

COALESCE_S = 1.0


class TeamsAnswerStream:
    """Implements :class:`bot.conversation.AnswerStream` for one personal chat."""

    def __init__(
        self,
        thread: TeamsThread,
        *,
        coalesce: float = COALESCE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._thread = thread
        self._pace = Pace(coalesce, clock)
        self._text = ""  # everything shown so far: each update carries it whole
        self._stream_id: str | None = None
        self._sequence = 0
        self._refused = False

    def append(self, text: str) -> None:
        if self._refused or not text:
            return
        self._text += text
        if self._stream_id is None or self._pace.due():
            self._update()

    def finish(self, answer: Answer) -> None:
        self._thread.remember(answer)
        posted = self._final(answer_activity(answer))
        # Teams' thumbs name the message they rate: the streamed one, or the one posted anew.
        for message_id in {posted, self._stream_id or ""} - {""}:
            remember_answer(self._thread.db, self._thread.conversation, message_id, answer)

    def fail(self, text: str, question: str | None) -> None:
        try:
            self._final(error_activity(text, question))
        except Exception as exc:
            log.warning("could not tell Teams about the failure either: %s", exc)

    def _update(self) -> None:
        self._sequence += 1
        info: dict[str, Any] = {
            "type": "streaminfo",
            "streamType": "streaming",
            "streamSequence": self._sequence,
        }
        if self._stream_id is not None:
            info["streamId"] = self._stream_id
        activity = {"type": "typing", "text": self._text, "entities": [info]}
        try:
            sent = self._thread.send(activity)
        except ConnectorError as exc:
            log.info("Teams refused a stream update (%s); posting at the end", exc)
            self._refused = True
            return
        if self._stream_id is None:
            if not sent:
                self._refused = True
                return
            self._stream_id = sent
        self._pace.sent()

    def _final(self, activity: Activity) -> str:
        """Send the final activity; the id of the message that shows it."""
        if self._stream_id is None:
            return self._thread.post(activity)
        final = {
            **activity,
            "entities": [
                *(activity.get("entities") or []),
                {"type": "streaminfo", "streamId": self._stream_id, "streamType": "final"},
            ],
        }
        try:
            return self._thread.post(final)
        except ConnectorError as exc:
            # The person pressed Stop, or the stream expired: the answer still arrives.
            log.info("Teams refused the end of a stream (%s); posting it anew", exc)
            return self._thread.post(activity)
