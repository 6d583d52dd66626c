"""The answer flow's public surface: what a chat platform asks and what it gets back.

Slack, Teams, ``kb ask`` and ``kb demo`` all go through one :class:`AnswerFlow`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from store.scope import Scope

AnswerMode = Literal["claude", "extractive", "unavailable", "no_sources"]
# What an "unavailable" answer says, on every platform: the question is kept for Refresh.
UNAVAILABLE_TEXT = "I couldn't reach Claude just now — press Refresh to try again."


@dataclass(frozen=True)
class Turn:
    """One message of a thread so far, oldest first; ``role`` is "user" or "bot"."""

    role: Literal["user", "bot"]
    text: str


@dataclass(frozen=True)
class SourceRef:
    """A cited source: ``n`` is the number used by the ``[n]`` markers in the answer text."""

    n: int
    artifact_id: str
    title: str
    url: str
    synced_at: datetime | None = None


@dataclass(frozen=True)
class Answer:
    """An answer ready to render.

    ``text`` is plain Markdown-ish text with inline ``[n]`` markers; ``sources`` lists only
    what was cited. ``mode`` tells a platform how to label it: ``extractive`` answers (no
    Claude key) and ``unavailable`` (Claude unreachable: suggest Refresh) must be labelled.
    ``unit_id`` identifies the cached unit so a platform can record where it was posted.
    """

    question: str
    standalone_question: str
    text: str
    sources: tuple[SourceRef, ...]
    mode: AnswerMode
    cached: bool
    unit_id: str | None
    sources_checked_at: datetime | None = None


class AnswerFlow(Protocol):
    def answer(
        self,
        question: str,
        *,
        scope: Scope,
        history: Sequence[Turn] = (),
        fresh: bool = False,
        on_text: Callable[[str], None] | None = None,
    ) -> Answer:
        """Answer ``question`` (a follow-up when ``history`` is given) within ``scope``.

        ``fresh`` bypasses the cache (the Refresh button) and replaces the cached unit.
        ``on_text`` receives the answer's text as it is generated, already safe to show
        (bot.streaming); it is never called for a cache hit or a fallback answer.
        """
        ...

    def record_post(self, unit_id: str, *, platform: str, channel: str, thread: str) -> None:
        """Remember where an answer was posted, so source changes can notify that thread."""
        ...
