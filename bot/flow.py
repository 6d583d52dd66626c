"""The answer flow every front end uses: Slack, Teams, ``kb ask`` and ``kb demo``.

normalise -> condense a follow-up -> embed the question (memoised) -> cache lookup -> on a
miss: retrieve within the scope, answer, renumber the citations, cache what can be trusted ->
an :class:`~bot.answers.Answer` with its sources and whether it came from the cache.

With ``on_text`` a model answer made on a cache miss is also streamed, through
:class:`bot.streaming.CitationGate`, as it is generated; hits and fallbacks are not.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from bot.answers import Answer, AnswerMode, SourceRef, Turn
from bot.drafts import Answerer, Draft
from bot.fallback import OpsReport, answer_or_fall_back
from bot.streaming import CitationGate, TextSink
from store.answer_sources import synced_at
from store.cache import AnswerCache, Citation, Generated, Hit, Place, SourceVersion, Unit
from store.cache import normalise as normalise_question
from store.db import Database
from store.embedders import Embedder
from store.passages import Passage
from store.scope import Scope
from store.search import Retriever

log = logging.getLogger(__name__)

Condenser = Callable[[str, Sequence[Turn]], str]
_MARKER = re.compile(r"\[(\d+)\]")
_CODE = re.compile(r"(```[\s\S]*?```|`[^`\n]*`)")
# Answers worth keeping: a model's answer, or passages quoted without one. An answer that
# found no sources, or could not be generated, is never cached.
_CACHEABLE: frozenset[AnswerMode] = frozenset({"claude", "extractive"})


@dataclass(frozen=True)
class FlowSettings:
    passages: int = 6
    token_budget: int = 3000


class Flow:
    """Implements :class:`bot.answers.AnswerFlow`."""

    def __init__(
        self,
        *,
        db: Database,
        embedder: Embedder,
        retriever: Retriever,
        cache: AnswerCache,
        answerer: Answerer,
        condense: Condenser,
        settings: FlowSettings | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._embedder = embedder
        self._retriever = retriever
        self._cache = cache
        self._answerer = answerer
        self._condense = condense
        self._settings = settings or FlowSettings()
        self._clock = clock
        self._ops_report = OpsReport(db)

    def answer(
        self,
        question: str,
        *,
        scope: Scope,
        history: Sequence[Turn] = (),
        fresh: bool = False,
        on_text: TextSink | None = None,
    ) -> Answer:
        question = question.strip()
        standalone = self._condense(question, history) if history else question
        vector = self._embedder.embed([standalone], purpose="query")[0]
        produced: list[Answer] = []

        def generate() -> Unit | None:
            answer, unit = self._generate(question, standalone, vector, scope, history, on_text)
            produced.append(answer)
            return unit

        if fresh:
            unit = generate()
            if unit is not None:
                self._cache.put(unit, vector)
            return produced[-1]
        result = self._cache.get_or_generate(standalone, scope, vector, generate)
        if isinstance(result, Hit):
            return self._from_unit(question, standalone, result.unit, cached=True)
        if produced:
            return produced[-1]
        if isinstance(result, Generated):
            # Another thread or process generated it while we waited.
            return self._from_unit(question, standalone, result.unit, cached=result.cached)
        # The shared generation failed elsewhere; try once ourselves rather than give up.
        answer, unit = self._generate(question, standalone, vector, scope, history)
        if unit is not None:
            self._cache.put(unit, vector)
        return answer

    def record_post(self, unit_id: str, *, platform: str, channel: str, thread: str) -> None:
        self._cache.record_post(unit_id, Place(platform, channel, thread))

    def _generate(
        self,
        question: str,
        standalone: str,
        vector: npt.NDArray[np.float32],
        scope: Scope,
        history: Sequence[Turn],
        on_text: TextSink | None = None,
    ) -> tuple[Answer, Unit | None]:
        passages = self._retriever.search(
            standalone,
            vector,
            scope,
            limit=self._settings.passages,
            token_budget=self._settings.token_budget,
        )
        # A failed model call falls back (extractive, or "can't answer" plus an ops alert).
        # Streamed text passes the citation gate first: no invented [n] is ever shown.
        gate = CitationGate(len(passages), on_text).feed if on_text is not None else None
        attempt = answer_or_fall_back(
            self._answerer, standalone, passages, history, report=self._ops_report, on_text=gate
        )
        draft = attempt.draft
        text, sources, cited = _renumber(draft, passages)
        now = self._clock()
        unit: Unit | None = None
        if attempt.cacheable and draft.mode in _CACHEABLE:
            # Provenance is what was cited; an answer citing nothing depends on all it saw.
            basis = cited or passages
            unit = Unit(
                unit_id=uuid.uuid4().hex,
                question=standalone,
                normalised=normalise_question(standalone),
                scope=scope.key(),
                answer=text,
                citations=tuple(
                    Citation(s.n, s.artifact_id, s.title, s.url, p.chunk_ids)
                    for s, p in zip(sources, cited, strict=True)
                ),
                provenance={p.artifact_id: SourceVersion(p.content_hash, p.version) for p in basis},
                created_at=now,
                mode=draft.mode,
            )
        answer = Answer(
            question=question,
            standalone_question=standalone,
            text=text,
            sources=sources,
            mode=draft.mode,
            cached=False,
            unit_id=unit.unit_id if unit else None,
            sources_checked_at=min((s.synced_at for s in sources if s.synced_at), default=None),
        )
        return answer, unit

    def _from_unit(self, question: str, standalone: str, unit: Unit, *, cached: bool) -> Answer:
        with self._db.connection() as conn:
            synced = synced_at(conn, [c.artifact_id for c in unit.citations])
        sources = tuple(
            SourceRef(c.n, c.artifact_id, c.title, c.url, synced.get(c.artifact_id))
            for c in unit.citations
        )
        mode: AnswerMode = "extractive" if unit.mode == "extractive" else "claude"
        return Answer(
            question=question,
            standalone_question=standalone,
            text=unit.answer,
            sources=sources,
            mode=mode,
            cached=cached,
            unit_id=unit.unit_id,
            sources_checked_at=min((s.synced_at for s in sources if s.synced_at), default=None),
        )


def _renumber(
    draft: Draft, passages: Sequence[Passage]
) -> tuple[str, tuple[SourceRef, ...], list[Passage]]:
    """Number the cited passages 1..m in order of first citation and rewrite the markers."""
    order = [n for n in dict.fromkeys(draft.cited) if 1 <= n <= len(passages)]
    mapping = {old: new for new, old in enumerate(order, 1)}

    def rewrite(segment: str) -> str:
        return _MARKER.sub(
            lambda m: f"[{mapping[int(m[1])]}]" if int(m[1]) in mapping else "", segment
        )

    # Code (``x[1]``) is quoted as written; only prose carries citation markers.
    text = "".join(
        part if _CODE.fullmatch(part) else rewrite(part) for part in _CODE.split(draft.text)
    )
    cited = [passages[n - 1] for n in order]
    sources = tuple(
        SourceRef(mapping[n], p.artifact_id, p.title, p.url, p.synced_at)
        for n, p in zip(order, cited, strict=True)
    )
    return text, sources, cited
