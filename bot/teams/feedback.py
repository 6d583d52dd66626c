"""Teams' native feedback: the thumbs Teams draws under an answer, mapped onto the
conversation's votes (docs/ARCHITECTURE.md, "Chat platforms").

An answer that can be rated is sent with ``channelData.feedbackLoopEnabled`` (see
:mod:`bot.teams.cards`). A click, and the optional comment form after it, arrive as one
``invoke`` named ``message/submitAction`` whose value is ``{"actionName": "feedback",
"actionValue": {"reaction": "like" | "dislike", "feedback": "<JSON text>"}}`` and which names
the rated message only by ``replyToId``. So every posted answer message is recorded with the
unit it carries (:func:`remember_answer`), and a vote is looked up by that id and recorded
through ``Conversation.vote`` like a click on the old Helpful / Not helpful buttons. Teams
shows its own "thank you", so the invoke is answered with a bare 200.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from bot.answers import Answer
from bot.bot_state import Vote
from bot.conversation import AnswerMessage
from bot.teams import state
from bot.teams.cards import answered_question, rated
from store.db import Database

log = logging.getLogger(__name__)

FEEDBACK_INVOKE = "message/submitAction"
# The invoke response Teams expects for message/submitAction: HTTP 200 with this body.
INVOKE_OK: dict[str, Any] = {"status": 200}

_REACTIONS: dict[str, Vote] = {"like": "helpful", "dislike": "not_helpful"}


def feedback_vote(value: Any) -> Vote | None:
    """The vote a ``message/submitAction`` value carries; None when it is not a thumbs
    feedback (another action, or a shape Teams does not send)."""
    if not isinstance(value, dict) or value.get("actionName") != "feedback":
        return None
    action = value.get("actionValue")
    reaction = action.get("reaction") if isinstance(action, dict) else None
    return _REACTIONS.get(reaction) if isinstance(reaction, str) else None


def remember_answer(
    db: Database, conversation: str, activity_id: str, answer: Answer | None
) -> None:
    """Record which answer the message ``activity_id`` in ``conversation`` (without
    ``;messageid=``) shows, so Teams' thumbs on it can be counted; an answer that cannot be
    rated (or None: the message became an error) unrecords it. Never raises: the message is
    already posted, only its votes are at stake."""
    if not activity_id:
        return
    try:
        with db.connection() as conn:
            if answer is not None and rated(answer) and answer.unit_id is not None:
                state.remember_answer_message(
                    conn, conversation, activity_id, answer.unit_id, answered_question(answer)
                )
            else:
                state.forget_answer_message(conn, conversation, activity_id)
    except Exception:
        log.exception("could not record Teams answer message %s for feedback", activity_id[:40])


@dataclass(frozen=True)
class RatedAnswerMessage:
    """An :class:`bot.conversation.AnswerMessage` that, once Refresh has rewritten the card,
    points Teams' thumbs on it at the new answer."""

    message: AnswerMessage
    db: Database
    conversation: str  # without ;messageid=
    card_id: str

    def mark_refreshing(self) -> None:
        self.message.mark_refreshing()

    def replace(self, answer: Answer) -> None:
        self.message.replace(answer)
        remember_answer(self.db, self.conversation, self.card_id, answer)

    def replace_with_error(self, text: str, question: str) -> None:
        self.message.replace_with_error(text, question)
        remember_answer(self.db, self.conversation, self.card_id, None)
