"""Named queries for Teams' own state (migrations 0006 and teams_answer_messages):
conversation references, the turns of answered threads, activities already acted on (a
redelivery or a replay), and the answer each answer message carries (for Teams' native
feedback). Shared tables (bot_threads, feedback, counters) stay in :mod:`bot.bot_state`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.answers import Turn
from bot.platform import ActionValue
from store.db import Connection

UPSERT_CONVERSATION = """
INSERT INTO teams_conversations
    (conversation_id, service_url, tenant_id, conversation_type, bot_id)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (conversation_id) DO UPDATE SET
    service_url = EXCLUDED.service_url,
    tenant_id = coalesce(EXCLUDED.tenant_id, teams_conversations.tenant_id),
    conversation_type = EXCLUDED.conversation_type,
    bot_id = EXCLUDED.bot_id,
    updated_at = now()
WHERE (teams_conversations.service_url, teams_conversations.conversation_type,
       teams_conversations.bot_id)
      IS DISTINCT FROM (EXCLUDED.service_url, EXCLUDED.conversation_type, EXCLUDED.bot_id)
   OR teams_conversations.updated_at < now() - interval '1 hour'
"""

GET_CONVERSATION = """
SELECT conversation_id, service_url, tenant_id, conversation_type, bot_id
FROM teams_conversations WHERE conversation_id = %s
"""

ADD_TURN = """
INSERT INTO teams_turns (conversation_id, thread, role, text) VALUES (%s, %s, %s, %s)
"""

# Newest first inside the window, reversed by the caller: the last ``limit`` turns.
RECENT_TURNS = """
SELECT role, text FROM teams_turns
WHERE conversation_id = %s AND thread = %s AND at > now() - make_interval(secs => %s)
ORDER BY turn_id DESC LIMIT %s
"""

MARK_SEEN = """
INSERT INTO teams_activities_seen (conversation_id, activity_id) VALUES (%s, %s)
ON CONFLICT DO NOTHING
"""

REMEMBER_ANSWER_MESSAGE = """
INSERT INTO teams_answer_messages (conversation_id, activity_id, unit_id, question)
VALUES (%s, %s, %s, %s)
ON CONFLICT (conversation_id, activity_id) DO UPDATE SET
    unit_id = EXCLUDED.unit_id, question = EXCLUDED.question, posted_at = now()
"""

GET_ANSWER_MESSAGE = """
SELECT unit_id, question FROM teams_answer_messages
WHERE conversation_id = %s AND activity_id = %s
"""

FORGET_ANSWER_MESSAGE = """
DELETE FROM teams_answer_messages WHERE conversation_id = %s AND activity_id = %s
"""

PRUNE_ANSWER_MESSAGES = """
DELETE FROM teams_answer_messages WHERE posted_at < now() - make_interval(secs => %s)
"""

PRUNE_SEEN = "DELETE FROM teams_activities_seen WHERE seen_at < now() - make_interval(secs => %s)"
PRUNE_TURNS = "DELETE FROM teams_turns WHERE at < now() - make_interval(secs => %s)"

ConversationType = Literal["channel", "groupChat", "personal"]


@dataclass(frozen=True)
class ConversationRef:
    """What a proactive message needs: where the conversation's connector lives and who we are
    in it."""

    conversation_id: str
    service_url: str
    tenant_id: str | None
    conversation_type: ConversationType
    bot_id: str


def remember_conversation(conn: Connection, ref: ConversationRef) -> None:
    # The WHERE clause skips the write when nothing moved, so a busy chat costs no row churn.
    conn.execute(
        UPSERT_CONVERSATION,
        (ref.conversation_id, ref.service_url, ref.tenant_id, ref.conversation_type, ref.bot_id),
    )


def conversation(conn: Connection, conversation_id: str) -> ConversationRef | None:
    row = conn.execute(GET_CONVERSATION, (conversation_id,)).fetchone()
    if row is None:
        return None
    kind = row["conversation_type"]
    return ConversationRef(
        conversation_id=row["conversation_id"],
        service_url=row["service_url"],
        tenant_id=row["tenant_id"],
        conversation_type=kind if kind in ("channel", "groupChat") else "personal",
        bot_id=row["bot_id"],
    )


def add_turn(
    conn: Connection, conversation_id: str, thread: str, role: Literal["user", "bot"], text: str
) -> None:
    conn.execute(ADD_TURN, (conversation_id, thread, role, text[:4000]))


def recent_turns(
    conn: Connection, conversation_id: str, thread: str, *, limit: int, window_seconds: float
) -> list[Turn]:
    rows = conn.execute(RECENT_TURNS, (conversation_id, thread, window_seconds, limit)).fetchall()
    return [Turn(role="bot" if r["role"] == "bot" else "user", text=r["text"]) for r in rows][::-1]


def first_time_seen(conn: Connection, conversation_id: str, activity_id: str) -> bool:
    """Record an activity; False when it was already recorded (a redelivery)."""
    return conn.execute(MARK_SEEN, (conversation_id, activity_id)).rowcount > 0


def remember_answer_message(
    conn: Connection, conversation_id: str, activity_id: str, unit_id: str, question: str
) -> None:
    """Record that the message ``activity_id`` shows the answer ``unit_id`` to ``question``
    (a Refresh that rewrote it in place records the new unit over the old)."""
    conn.execute(REMEMBER_ANSWER_MESSAGE, (conversation_id, activity_id, unit_id, question))


def forget_answer_message(conn: Connection, conversation_id: str, activity_id: str) -> None:
    """The message no longer shows a rateable answer (a Refresh turned it into an error)."""
    conn.execute(FORGET_ANSWER_MESSAGE, (conversation_id, activity_id))


def answer_message(conn: Connection, conversation_id: str, activity_id: str) -> ActionValue | None:
    """What a thumbs click on the message ``activity_id`` rates; None for a message the bot
    never recorded (not an answer, or pruned)."""
    row = conn.execute(GET_ANSWER_MESSAGE, (conversation_id, activity_id)).fetchone()
    if row is None:
        return None
    return ActionValue(unit_id=row["unit_id"], question=row["question"])


def prune(
    conn: Connection, *, seen_seconds: float, turns_seconds: float, answers_seconds: float
) -> None:
    conn.execute(PRUNE_SEEN, (seen_seconds,))
    conn.execute(PRUNE_TURNS, (turns_seconds,))
    conn.execute(PRUNE_ANSWER_MESSAGES, (answers_seconds,))
