"""A third chat platform, built only to prove the chat seam: a small signed JSON webhook.

It is written the way a new adapter (Mattermost, Google Chat, a web widget) would be: the
inbound half translates a payload into one :class:`bot.conversation.Inbound` call, the
outbound half renders what the conversation says into the platform's messages (here, plain
dicts kept in a :class:`Transcript`), and :func:`fake_chat_mount` puts it on the chat host.
Nothing of asking, follow-ups, refresh, votes or ``/kb-sync`` is implemented here.

Payloads, POSTed to ``/fake-chat/events`` with ``X-Fake-Signature: hex HMAC-SHA256(body)``:
``{"type": "message", "id", "channel", "thread"?, "user", "text", "mention"}``,
``{"type": "button", "action", "value", "message", "channel", "thread", "user"}`` and
``{"type": "command", "channel", "user", "text"}``. Buttons and commands are answered in the
HTTP response (``{"reply": text}``), seen only by the person who acted.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot.answers import Answer, Turn
from bot.bot_state import Vote
from bot.conversation import Inbound, Question
from bot.host import Mount, json_reply
from bot.platform import ACTION_HELPFUL, ACTION_NOT_HELPFUL, ACTION_REFRESH, ActionValue, Requester
from bot.wording import answer_buttons, answer_notes

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

PLATFORM = "fakechat"
PATH = "/fake-chat/events"
SECRET = b"fake-chat-secret"


def sign(body: bytes, secret: bytes = SECRET) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


# --- the platform's side: what its users would see -------------------------------------------


@dataclass
class Transcript:
    """Every message in the fake platform's threads, people's and the bot's, in order."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Condition = field(default_factory=threading.Condition)

    def add(self, channel: str, thread: str, author: str, **content: Any) -> str:
        with self._lock:
            message_id = f"m{next(self._ids)}"
            self.messages.append(
                {"id": message_id, "channel": channel, "thread": thread, "author": author} | content
            )
            self._lock.notify_all()
            return message_id

    def replace(self, message_id: str, **content: Any) -> None:
        with self._lock:
            for message in self.messages:
                if message["id"] == message_id:
                    message.update(content, edits=message.get("edits", 0) + 1)
            self._lock.notify_all()

    def in_thread(self, channel: str, thread: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(m) for m in self.messages if (m["channel"], m["thread"]) == (channel, thread)
            ]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.05))
        return True

    def bot_messages(self, channel: str, thread: str) -> list[dict[str, Any]]:
        return [m for m in self.in_thread(channel, thread) if m["author"] == "bot"]


# --- the adapter: outbound ---------------------------------------------------------------------


def render(answer: Answer) -> dict[str, Any]:
    """An answer as the fake platform shows it: text, numbered sources, notes, buttons."""
    question = answer.standalone_question or answer.question
    value = ActionValue(answer.unit_id, question).encode()
    votes = answer.mode != "unavailable" and bool(answer.unit_id)
    return {
        "text": answer.text,
        "sources": [f"[{s.n}] {s.title} <{s.url}>" for s in answer.sources],
        "notes": answer_notes(answer, datetime.now(UTC)),
        "buttons": [(action, value) for action, _ in answer_buttons(votes=votes)],
    }


@dataclass(frozen=True)
class FakeThread:
    transcript: Transcript
    channel: str
    thread: str
    question_id: str
    working_seen: list[str]

    @contextmanager
    def working(self) -> Iterator[None]:
        self.working_seen.append(self.question_id)
        yield

    def history(self) -> Sequence[Turn]:
        turns = []
        for m in self.transcript.in_thread(self.channel, self.thread):
            if m["id"] == self.question_id:
                break
            turns.append(Turn(role="bot" if m["author"] == "bot" else "user", text=m["text"]))
        return turns

    def say(self, text: str) -> None:
        self.transcript.add(self.channel, self.thread, "bot", text=text)

    def post_answer(self, answer: Answer) -> None:
        self.transcript.add(self.channel, self.thread, "bot", **render(answer))

    def post_error(self, text: str, question: str | None) -> None:
        self.transcript.add(self.channel, self.thread, "bot", text=text, error=True)


@dataclass(frozen=True)
class FakeAnswerMessage:
    transcript: Transcript
    message_id: str

    def mark_refreshing(self) -> None:
        self.transcript.replace(self.message_id, buttons=[])

    def replace(self, answer: Answer) -> None:
        self.transcript.replace(self.message_id, **render(answer))

    def replace_with_error(self, text: str, question: str) -> None:
        self.transcript.replace(self.message_id, text=text, error=True)


# --- the adapter: inbound ----------------------------------------------------------------------


class FakeChatAdapter:
    """The WSGI app for ``POST /fake-chat/events``: check the signature, then translate."""

    def __init__(self, conversation: Inbound, transcript: Transcript) -> None:
        self.conversation = conversation
        self.transcript = transcript
        self.working_seen: list[str] = []

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        signature = environ.get("HTTP_X_FAKE_SIGNATURE", "")
        if not hmac.compare_digest(signature, sign(body)):
            return json_reply(start_response, 401, {"error": "bad signature"})
        event = json.loads(body)
        handler = {"message": self._message, "button": self._button, "command": self._command}
        return json_reply(start_response, 200, handler[event["type"]](event))

    def _message(self, event: dict[str, Any]) -> dict[str, Any]:
        channel, user, text = event["channel"], event["user"], event["text"]
        thread = event.get("thread") or event["id"]
        in_bot_thread = self.conversation.is_bot_thread(channel, thread)
        question_id = self.transcript.add(channel, thread, "user", text=text, user=user)
        if not event.get("mention") and not in_bot_thread:
            return {}
        followup = in_bot_thread and not event.get("mention")
        question = Question(channel, thread, text, with_history=in_bot_thread, followup=followup)
        reply = FakeThread(self.transcript, channel, thread, question_id, self.working_seen)
        self.conversation.ask(question, reply)
        return {}

    def _button(self, event: dict[str, Any]) -> dict[str, Any]:
        value = ActionValue.decode(event.get("value"))
        if event["action"] == ACTION_REFRESH:
            message = FakeAnswerMessage(self.transcript, event["message"])
            started = self.conversation.refresh(value, event["channel"], event["thread"], message)
            return {"refreshing": started}
        vote: Vote = "helpful" if event["action"] == ACTION_HELPFUL else "not_helpful"
        assert event["action"] in (ACTION_HELPFUL, ACTION_NOT_HELPFUL)
        return {"reply": self.conversation.vote(value, event["user"], vote)}

    def _command(self, event: dict[str, Any]) -> dict[str, Any]:
        requester = Requester(PLATFORM, event["user"], event["channel"], response_url=None)
        return {"reply": self.conversation.request_sync(requester, event["text"])}


def fake_chat_mount(adapter: FakeChatAdapter) -> Mount:
    return Mount(PLATFORM, PATH, adapter, adapter.conversation.close)
