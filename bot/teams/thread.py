"""Teams' outbound side of the conversation: a conversation to answer in, a card to refresh.

:class:`TeamsThread` implements :class:`bot.conversation.StreamingThread` (personal chats
stream through :mod:`bot.teams.stream`) and
:class:`TeamsAnswerMessage` implements :class:`bot.conversation.AnswerMessage`. The Bot
Connector cannot read a conversation back, so a thread's history is the turns kept in
``teams_turns`` (:mod:`bot.teams.state`), written here just before each answer is posted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from bot.answers import Answer, Turn
from bot.teams import state
from bot.teams.cards import Activity, answer_activity, error_activity, text_activity
from bot.teams.feedback import remember_answer
from bot.teams.platform import BotConnector, ConnectorError
from bot.teams.stream import TeamsAnswerStream
from store.db import Database

log = logging.getLogger(__name__)

HISTORY_TURNS = 20


@dataclass(frozen=True)
class TeamsThread:
    connector: BotConnector
    db: Database
    service_url: str
    conversation: str  # the chat or the channel, without ;messageid=
    thread: str
    target: str  # where the answer is posted
    reply_to: str | None
    question: str
    history_window: float  # seconds of turns that still count as this conversation
    streams: bool = False  # a personal chat: answers stream (Teams streams nowhere else)

    def open_stream(self) -> TeamsAnswerStream | None:
        return TeamsAnswerStream(self) if self.streams else None

    @contextmanager
    def working(self) -> Iterator[None]:
        """The "kb is typing…" hint while it works; cosmetic, so no retries."""
        try:
            self.connector.send(self.service_url, self.target, {"type": "typing"})
        except ConnectorError as exc:
            log.info("typing indicator failed: %s", exc)
        yield

    def history(self) -> Sequence[Turn]:
        with self.db.connection() as conn:
            return state.recent_turns(
                conn,
                self.conversation,
                self.thread,
                limit=HISTORY_TURNS,
                window_seconds=self.history_window,
            )

    def say(self, text: str) -> None:
        self.post(text_activity(text))

    def post_answer(self, answer: Answer) -> None:
        self.remember(answer)
        posted = self.post(answer_activity(answer))
        remember_answer(self.db, self.conversation, posted, answer)  # for Teams' thumbs on it

    def post_error(self, text: str, question: str | None) -> None:
        try:
            self.post(error_activity(text, question))
        except Exception as exc:
            log.warning("could not tell Teams about the failure either: %s", exc)

    def remember(self, answer: Answer) -> None:
        """Kept before the reply lands, so a quick follow-up has the answer in its history."""
        with self.db.connection() as conn:
            state.add_turn(conn, self.conversation, self.thread, "user", self.question)
            state.add_turn(conn, self.conversation, self.thread, "bot", answer.text)

    def post(self, activity: Activity) -> str:
        """Send ``activity`` where the answer goes, waiting out throttling; its id."""
        return self.connector.patiently(lambda: self.send(activity))

    def send(self, activity: Activity) -> str:
        """Send once (a stream update: a late one is worth less than the next)."""
        return self.connector.send(self.service_url, self.target, activity, reply_to=self.reply_to)


@dataclass(frozen=True)
class TeamsAnswerMessage:
    """An answer card, where the invoke named it."""

    connector: BotConnector
    service_url: str
    conversation: str
    card_id: str

    def mark_refreshing(self) -> None:
        """The person who clicked is told in the invoke's reply; the card stays as it is."""

    def replace(self, answer: Answer) -> None:
        self._update(answer_activity(answer))

    def replace_with_error(self, text: str, question: str) -> None:
        try:
            self._update(error_activity(text, question))
        except Exception as exc:
            log.warning("could not update the Teams card either: %s", exc)

    def _update(self, activity: Activity) -> None:
        self.connector.patiently(
            lambda: self.connector.update(
                self.service_url, self.conversation, self.card_id, activity
            )
        )
