"""Reading Bot Framework activities from Teams: who sent what, where, and whether it
mentions the bot.

Mentions are read from the activity's ``mention`` entities, never guessed from the text: the
display name in ``<at>…</at>`` is whatever the bot is called in that team, and a person
typing "@kb" without picking the bot is not a mention.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

from bot.teams.state import ConversationRef, ConversationType

_AT_TAG = re.compile(r"<at(?:\s[^>]*)?>(.*?)</at>", re.IGNORECASE | re.DOTALL)
_BREAK = re.compile(r"<br\s*/?>|</p>|</div>", re.IGNORECASE)
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")


@dataclass(frozen=True)
class Incoming:
    """The parts of an activity kb-bot acts on."""

    type: str
    id: str
    name: str
    text: str
    service_url: str
    channel_id: str
    conversation_id: str  # as received: a channel thread's id ends in ";messageid=<root>"
    conversation_type: ConversationType
    tenant_id: str | None
    from_id: str
    from_aad_id: str | None
    from_is_bot: bool
    recipient_id: str
    entities: tuple[dict[str, Any], ...]
    reply_to_id: str | None
    value: Any

    @property
    def base_conversation(self) -> str:
        """The channel or chat, without the thread part."""
        return self.conversation_id.partition(";messageid=")[0]

    @property
    def thread(self) -> str:
        """The thread root in a channel (the message itself when it is a new post); chats have
        no threads, so there the conversation is the thread."""
        if self.conversation_type != "channel":
            return self.base_conversation
        root = self.conversation_id.partition(";messageid=")[2]
        return root or self.id

    @property
    def is_thread_reply(self) -> bool:
        return self.conversation_type == "channel" and self.thread != self.id

    @property
    def reply_conversation(self) -> str:
        """Where an answer goes: the thread of a channel post, else the chat."""
        if self.conversation_type == "channel":
            return f"{self.base_conversation};messageid={self.thread}"
        return self.base_conversation

    @property
    def user(self) -> str:
        """A stable id for votes: the person's Entra object id when Teams sends it."""
        return self.from_aad_id or self.from_id

    def reference(self) -> ConversationRef:
        return ConversationRef(
            conversation_id=self.base_conversation,
            service_url=self.service_url,
            tenant_id=self.tenant_id,
            conversation_type=self.conversation_type,
            bot_id=self.recipient_id,
        )


def parse_activity(data: Any) -> Incoming:
    """An :class:`Incoming` from a JSON body; ``ValueError`` when it is not an activity."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    kind = _text(data.get("type"))
    service_url = _text(data.get("serviceUrl"))
    conversation = _dict(data.get("conversation"))
    conversation_id = _text(conversation.get("id"))
    if not kind or not service_url or not conversation_id:
        raise ValueError("an activity needs type, serviceUrl and conversation.id")
    channel_data = _dict(data.get("channelData"))
    tenant = _text(_dict(channel_data.get("tenant")).get("id")) or _text(
        conversation.get("tenantId")
    )
    raw_type = _text(conversation.get("conversationType"))
    conversation_type: ConversationType = (
        "channel"
        if raw_type == "channel"
        else "groupChat"
        if raw_type == "groupChat"
        else "personal"
    )
    sender = _dict(data.get("from"))
    recipient = _dict(data.get("recipient"))
    entities = tuple(e for e in data.get("entities") or [] if isinstance(e, dict))
    return Incoming(
        type=kind,
        id=_text(data.get("id")),
        name=_text(data.get("name")),
        text=_text(data.get("text")),
        service_url=service_url,
        channel_id=_text(data.get("channelId")),
        conversation_id=conversation_id,
        conversation_type=conversation_type,
        tenant_id=tenant.lower() or None,
        from_id=_text(sender.get("id")),
        from_aad_id=_text(sender.get("aadObjectId")) or None,
        from_is_bot=_text(sender.get("role")) == "bot" or _text(sender.get("id")).startswith("28:"),
        recipient_id=_text(recipient.get("id")),
        entities=entities,
        reply_to_id=_text(data.get("replyToId")) or None,
        value=data.get("value"),
    )


def mentions_of(activity: Incoming, bot_ids: frozenset[str]) -> list[dict[str, Any]]:
    """The activity's mention entities that name the bot."""
    found = []
    for entity in activity.entities:
        if entity.get("type") != "mention":
            continue
        mentioned = _dict(entity.get("mentioned"))
        if _text(mentioned.get("id")).lower() in bot_ids:
            found.append(entity)
    return found


def question_text(activity: Incoming, bot_mentions: list[dict[str, Any]]) -> str:
    """The message as plain words: the bot's mentions removed, other people's kept as
    ``@Name``, Teams' HTML reduced to text."""
    text = activity.text
    for entity in bot_mentions:
        tag = _text(entity.get("text"))
        if tag and tag in text:
            text = text.replace(tag, " ")
        else:  # an entity without its exact tag text: drop an <at> holding the bot's name
            name = _text(_dict(entity.get("mentioned")).get("name"))
            if name:
                pattern = rf"<at(?:\s[^>]*)?>\s*{re.escape(name)}\s*</at>"
                text = re.sub(pattern, " ", text, flags=re.IGNORECASE)
    text = _AT_TAG.sub(lambda m: f"@{m[1].strip()}", text)
    text = _BREAK.sub("\n", text)
    text = _TAG.sub("", text)
    text = html.unescape(text).replace("\xa0", " ")
    return " ".join(text.split())


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
