"""Fault class 4, in-process: what stopping does to the answers under way.

The real Conversation (the one ``kb bot`` closes on SIGTERM) with the scripted flow taking its
time. An answer that finishes within the grace is posted before ``close`` returns; one that
does not is handed back (the asker is told to press Refresh) and its working indicator is
cleared, and ``close`` returns after the grace, not after the answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from fakes.flow import FakeFlow
from fakes.slack_api import BASE_ENV, reset_bot_tables

from bot.answers import Answer, Turn
from bot.conversation import Conversation, Question
from bot.wording import RESTARTING
from kb.chat_wiring import chat_policy
from kb.settings import load_settings
from store.db import Database


@dataclass
class RecordingThread:
    """A ChatThread that records what the person would see, in order."""

    seen: list[str] = field(default_factory=list)

    @contextmanager
    def working(self) -> Iterator[None]:
        self.seen.append("working on")
        try:
            yield
        finally:
            self.seen.append("working off")

    def history(self) -> Sequence[Turn]:
        return ()

    def say(self, text: str) -> None:
        self.seen.append(f"say: {text}")

    def post_answer(self, answer: Answer) -> None:
        self.seen.append(f"answer: {answer.text}")

    def post_error(self, text: str, question: str | None) -> None:
        self.seen.append(f"error: {text} (retry: {question})")

    def indicator_left_on(self) -> bool:
        return self.seen.count("working on") > self.seen.count("working off")


def _conversation(db: Database, flow: FakeFlow, grace: float) -> Conversation:
    settings = load_settings(BASE_ENV)
    policy = chat_policy(settings, settings.admins)
    return Conversation("slack", flow, reset_bot_tables(db), policy, shutdown_grace=grace)


def _ask(conversation: Conversation, thread: RecordingThread) -> None:
    conversation.ask(
        Question("CGEN", "1.0", "how do I rotate the VPN cert?", with_history=False), thread
    )


def test_an_answer_under_way_is_posted_before_the_bot_stops(module_db: Database) -> None:
    flow = FakeFlow(text="Rotate it in the portal [1].", delay=1.0)
    conversation = _conversation(module_db, flow, grace=10)
    thread = RecordingThread()
    _ask(conversation, thread)
    time.sleep(0.2)  # the answer is under way
    conversation.close()
    assert "answer: Rotate it in the portal [1]." in thread.seen
    assert not thread.indicator_left_on()


def test_an_answer_past_the_grace_is_handed_back_and_its_indicator_cleared(
    module_db: Database,
) -> None:
    flow = FakeFlow(delay=3.0)
    conversation = _conversation(module_db, flow, grace=0.5)
    thread = RecordingThread()
    _ask(conversation, thread)
    time.sleep(0.2)
    started = time.monotonic()
    conversation.close()
    assert time.monotonic() - started < 3  # bounded by the grace, not by the answer
    assert f"error: {RESTARTING} (retry: how do I rotate the VPN cert?)" in thread.seen
    handed_back = thread.seen.index(f"error: {RESTARTING} (retry: how do I rotate the VPN cert?)")
    assert thread.seen[handed_back + 1 :] == ["working on", "working off"]
    assert not any(s.startswith("answer:") for s in thread.seen)
    # In ``kb bot`` the process now exits without it (kb.processes); here, let it end.
    deadline = time.monotonic() + 10
    while not any(s.startswith("answer:") for s in thread.seen) and time.monotonic() < deadline:
        time.sleep(0.05)
