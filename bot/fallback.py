"""What the user gets when the model fails: the answer flow's fallback decision, in one call.

* A transient failure (timeout past the deadline, 5xx, overload, network): the extractive
  answer from the same passages, labelled as such, and never cached (a cached fallback would
  be served in place of a model answer once the model is back).
* An operator fault (a refused key, an unknown model): "I can't answer right now" in the
  channel, and the cause once to the ops channel (an ``ops_alert`` in the outbox, at most once
  an hour per cause); channel users never see settings advice.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from bot.answers import Turn
from bot.drafts import Answerer, ClaudeMisconfigured, ClaudeUnavailable, Draft
from bot.extractive import LABEL as EXTRACTIVE_LABEL
from bot.extractive import ExtractiveAnswerer
from core.errors import AnswerError
from store import outbox
from store.db import Database
from store.passages import Passage

log = logging.getLogger(__name__)

FALLBACK_LABEL = "Claude didn't answer in time, so here are the most relevant passages, quoted:"
OPERATOR_FAULT_TEXT = "I can't answer right now. The people who run kb-bot have been told."

Report = Callable[[str], None]


@dataclass(frozen=True)
class Attempt:
    """A draft for the user, and whether it may be cached as the answer to its question."""

    draft: Draft
    cacheable: bool


def answer_or_fall_back(
    answerer: Answerer,
    question: str,
    passages: Sequence[Passage],
    history: Sequence[Turn],
    *,
    report: Report,
    fallback: Answerer | None = None,
    on_text: Callable[[str], None] | None = None,
) -> Attempt:
    """Ask ``answerer``; on failure decide what the user sees (see the module docstring).

    With ``on_text`` the answer is streamed through it; a stream the model broke off after
    sending text ends as an ``unavailable`` answer with no text of its own (the usual "couldn't
    reach Claude" warning and Refresh), which replaces what was streamed: quoting passages in
    place of a half-read answer would look like the model's own words changing.
    """
    streamed: list[str] = []

    def relay(delta: str) -> None:
        streamed.append(delta)
        if on_text is not None:
            on_text(delta)

    try:
        if on_text is None:
            return Attempt(answerer.answer(question, passages, history), cacheable=True)
        return Attempt(answerer.answer(question, passages, history, on_text=relay), cacheable=True)
    except ClaudeUnavailable as exc:
        if streamed:
            log.warning("Claude broke off a streamed answer: %s", exc)
            return Attempt(Draft("", (), "unavailable"), cacheable=False)
        log.warning("Claude failed, answering extractively: %s", exc)
        draft = (fallback or ExtractiveAnswerer()).answer(question, passages, history)
        if draft.mode == "extractive":
            draft = replace(draft, text=draft.text.replace(EXTRACTIVE_LABEL, FALLBACK_LABEL, 1))
        return Attempt(draft, cacheable=False)
    except ClaudeMisconfigured as exc:
        log.error("answer generation failed (operator fault): %s", exc)
        report(str(exc))
        return Attempt(Draft(OPERATOR_FAULT_TEXT, (), "unavailable"), cacheable=False)
    except AnswerError as exc:
        # Neither transient nor a setting (a refusal, a rejected request): say so plainly.
        log.error("answer generation failed: %s", exc)
        return Attempt(Draft(f"I couldn't answer: {exc}", (), "unavailable"), cacheable=False)


class OpsReport:
    """Queues an operator fault for ``KB_OPS_CHANNEL``: once an hour per distinct cause, by
    the outbox's dedupe key, so a thousand questions under a revoked key make one alert."""

    def __init__(self, db: Database, *, source: str = "answers") -> None:
        self._db = db
        self._source = source
        self._lock = threading.Lock()
        self._queued: set[str] = set()  # spares the database a write per question

    def __call__(self, cause: str) -> None:
        digest = hashlib.sha256(cause.encode()).hexdigest()[:16]
        hour = f"{digest}:{datetime.now(UTC):%Y-%m-%dT%H}"
        alert = outbox.OpsAlert(self._source, cause, run_id=None, ongoing=False, key=hour)
        key = alert.dedupe_key()
        with self._lock:
            if key in self._queued:
                return
            self._queued = {k for k in self._queued if k.endswith(key[-13:])} | {key}
        try:
            with self._db.connection() as conn:
                outbox.enqueue(conn, alert)
        except Exception:  # the store may be down: the answer must still reach the user
            log.exception("could not queue the ops alert for: %s", cause)
            with self._lock:
                self._queued.discard(key)
