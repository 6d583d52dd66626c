"""A scripted AnswerFlow: records what the chat platform asked and answers as told."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.answers import Answer, AnswerMode, SourceRef, Turn
from store.scope import Scope

SOURCES = (
    SourceRef(1, "confluence:101", "VPN setup", "https://wiki.example/pages/101"),
    SourceRef(2, "jira:OPS-7", "OPS-7 Cert rotation <urgent>", "https://jira.example/browse/OPS-7"),
)


@dataclass(frozen=True)
class FlowCall:
    question: str
    scope: Scope
    history: tuple[Turn, ...]
    fresh: bool


@dataclass(frozen=True)
class PostRecord:
    unit_id: str
    platform: str
    channel: str
    thread: str


@dataclass
class FakeFlow:
    """Answers every question with ``text`` citing ``sources``.

    ``cache=True`` behaves like the real answer cache for benches: the first ask of a question
    "generates" (taking ``delay`` seconds, once even when asked concurrently), later asks are
    cached hits. ``fail`` makes ``answer`` raise; ``mode`` labels the answer; ``streams``
    streams a generated claude answer to the platform, as the real flow does (and ``fail``
    then raises after the text went out).
    """

    text: str = "Use **the VPN portal** [1] and rotate the cert as in OPS-7 [2]."
    sources: tuple[SourceRef, ...] = SOURCES
    mode: AnswerMode = "claude"
    cached: bool = False
    cache: bool = False
    delay: float = 0.0
    fail: Exception | None = None
    script: Callable[[str], str] | None = None
    streams: bool = False  # a generated answer is streamed to on_text, word by word
    word_delay: float = 0.0  # seconds between streamed words
    calls: list[FlowCall] = field(default_factory=list)
    posts: list[PostRecord] = field(default_factory=list)
    generations: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _inflight: dict[str, threading.Event] = field(default_factory=dict)
    _units: dict[str, str] = field(default_factory=dict)

    def answer(
        self,
        question: str,
        *,
        scope: Scope,
        history: Sequence[Turn] = (),
        fresh: bool = False,
        on_text: Callable[[str], None] | None = None,
    ) -> Answer:
        with self._lock:
            self.calls.append(FlowCall(question, scope, tuple(history), fresh))
        if self.fail is not None and not (self.streams and on_text is not None):
            raise self.fail
        if self.cache and not fresh:
            cached, unit = self._single_flight(question)
        else:
            time.sleep(self.delay)
            cached, unit = self.cached, self._generated(question)
        text = self.script(question) if self.script else self.text
        if self.streams and on_text is not None and not cached and self.mode == "claude":
            # Like the real flow: a generated model answer streams, word by word.
            for word in re.findall(r"\S+\s*", text):
                on_text(word)
                time.sleep(self.word_delay)
            if self.fail is not None:
                raise self.fail  # after the text went out: a failure mid-answer
        return Answer(
            question=question,
            standalone_question=question,
            text=text,
            sources=self.sources,
            mode=self.mode,
            cached=cached,
            unit_id=None if self.mode == "unavailable" else unit,
            sources_checked_at=datetime.now(UTC) - timedelta(minutes=5) if cached else None,
        )

    def _generated(self, question: str) -> str:
        with self._lock:
            self.generations[question] += 1
            unit = self._units[question] = f"unit-{sum(self.generations.values())}"
            return unit

    def _single_flight(self, question: str) -> tuple[bool, str]:
        """(cached?, unit): one generation per question however many ask at once."""
        with self._lock:
            if question in self._units:
                return True, self._units[question]
            event = self._inflight.get(question)
            leader = event is None
            if event is None:
                event = self._inflight[question] = threading.Event()
        if not leader:
            event.wait()
            with self._lock:
                return True, self._units[question]
        time.sleep(self.delay)
        unit = self._generated(question)
        with self._lock:
            del self._inflight[question]
        event.set()
        return False, unit

    def record_post(self, unit_id: str, *, platform: str, channel: str, thread: str) -> None:
        with self._lock:
            self.posts.append(PostRecord(unit_id, platform, channel, thread))
