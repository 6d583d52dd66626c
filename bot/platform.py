"""The delivery side of the chat-platform seam (docs/ARCHITECTURE.md, "Chat platforms").

What the outbox deliverer needs from Slack, Teams or any other chat platform: the outgoing
message types (parsed from outbox payloads), their wording (rendered through a :class:`Markup`
so each platform supplies its own link and bold syntax), the button value codec, and the
exception a platform raises when a delivery did not happen. Each adapter's ``platform.py``
(``bot/slack/platform.py``, ``bot/teams/platform.py``) only renders and sends. The inbound
side (questions, buttons, ``/kb-sync``) is :mod:`bot.conversation`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from core.errors import RemoteError

# Button action ids, shared by every platform so feedback and refresh land in one place.
ACTION_HELPFUL = "kb_helpful"
ACTION_NOT_HELPFUL = "kb_not_helpful"
ACTION_REFRESH = "kb_refresh"

# Slack caps a button value at 2000 characters; Teams card data is roomier. The question is
# the only unbounded part, so it is the part that gets cut.
_MAX_ACTION_VALUE = 2000


@dataclass(frozen=True)
class SourceNotice:
    """A cited source changed or disappeared: tell the thread where an answer from it lives."""

    platform: str
    channel: str
    thread: str
    artifact_id: str
    title: str
    url: str
    change: Literal["updated", "deleted"]
    old_version: str | None
    new_version: str | None
    question: str
    unit_id: str | None


@dataclass(frozen=True)
class OpsAlert:
    source: str
    error: str
    run_id: int | None
    ongoing: bool


@dataclass(frozen=True)
class OpsRecovery:
    source: str
    run_id: int | None
    failing_since: datetime | None
    last_error: str


@dataclass(frozen=True)
class Requester:
    """Who asked for something (a ``/kb-sync``) and where to answer them privately."""

    platform: str
    user: str
    channel: str
    response_url: str | None


@dataclass(frozen=True)
class SyncReport:
    source: str
    status: str
    synced: int
    unchanged: int
    deleted: int
    skipped: int
    failed: int
    errors: tuple[str, ...]
    seconds: float


@dataclass(frozen=True)
class SyncResult:
    request_id: int | None
    requested_by: Requester
    reports: tuple[SyncReport, ...]


@dataclass(frozen=True)
class StoreOutage:
    """The store is unreachable (``back_after`` None) or back after that many seconds; sent
    straight to the ops channel, not through the outbox, which lives in the store."""

    since: datetime
    back_after: float | None = None


OpsMessage = OpsAlert | OpsRecovery | StoreOutage
Outgoing = SourceNotice | OpsAlert | OpsRecovery | SyncResult


class DeliveryFailed(RemoteError):
    """A platform did not deliver a message.

    ``retry_after``: the platform asked us to wait (HTTP 429) this many seconds; it is not the
    message's fault, so it does not count as a failed attempt. ``permanent``: retrying cannot
    help (unknown channel, bot removed). ``ambiguous``: the request may have reached the
    platform (timeout after sending), so the deliverer must check before sending again.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        permanent: bool = False,
        ambiguous: bool = False,
        status: int | None = None,
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after
        self.permanent = permanent
        self.ambiguous = ambiguous


class ChatPlatform(Protocol):
    """Delivery side of a chat platform. Each method sends one message or raises
    :class:`DeliveryFailed`; ``message_id`` is the outbox row, for idempotency markers."""

    @property
    def name(self) -> str: ...

    def send_notice(self, notice: SourceNotice, *, message_id: int) -> None: ...

    def send_ops(self, channel: str, message: OpsMessage, *, message_id: int) -> None: ...

    def send_sync_result(self, result: SyncResult, *, message_id: int) -> None: ...

    def was_delivered(
        self, message: Outgoing, *, channel: str | None, message_id: int, since: datetime
    ) -> bool | None:
        """Whether a message whose send outcome is unknown (crash, timeout) did arrive.

        ``None`` when the platform cannot tell (ephemeral messages): the deliverer then gives
        up on it rather than risk a duplicate.
        """
        ...


# --- button values --------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionValue:
    """What a helpful / not helpful / refresh button carries: the unit it rates and the
    standalone question to regenerate (so Refresh needs no thread history)."""

    unit_id: str | None
    question: str

    def encode(self) -> str:
        question = self.question
        while True:
            value = json.dumps(
                {"u": self.unit_id, "q": question}, separators=(",", ":"), ensure_ascii=False
            )
            if len(value) <= _MAX_ACTION_VALUE or not question:
                return value
            # Escapes (\uXXXX) can make the JSON much longer than the text: cut by a tenth.
            question = question[: len(question) * 9 // 10]

    @classmethod
    def decode(cls, value: str | None) -> ActionValue | None:
        if not value:
            return None
        try:
            data = json.loads(value)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("q"), str):
            return None
        unit = data.get("u")
        return cls(unit_id=unit if isinstance(unit, str) and unit else None, question=data["q"])
