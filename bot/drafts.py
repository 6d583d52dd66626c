"""The answerer seam (docs/ARCHITECTURE.md, "Seams"): what an answerer is given and returns.

Kept apart from :mod:`bot.answerer` (Claude) so that the flow, the extractive answerer and the
fallback never import the Anthropic SDK: a process without a model does not pay for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.answers import AnswerMode, Turn
from core.errors import AnswerError
from store.passages import Passage

NO_SOURCES_TEXT = (
    "I couldn't find anything about that in the indexed Confluence spaces and Jira projects."
)


@dataclass(frozen=True)
class Draft:
    """An answer before the flow maps citations to artifacts.

    ``cited`` lists the passage numbers (1-based, in the order the passages were given) that
    the text cites, in order of first appearance. Every marker in ``text`` has the canonical
    form ``[n]`` (one number per bracket) and refers to a number in ``cited``.
    """

    text: str
    cited: tuple[int, ...]
    mode: AnswerMode


class Answerer(Protocol):
    def answer(
        self,
        question: str,
        passages: Sequence[Passage],
        history: Sequence[Turn] = (),
        *,
        on_text: Callable[[str], None] | None = None,
    ) -> Draft:
        """``on_text``, when given, sees the raw text as it is generated (an answerer that
        does not stream may ignore it: its answer is then posted whole)."""
        ...


class ClaudeUnavailable(AnswerError):
    """A transient failure (overload, 5xx, rate limit, timeout, network): Refresh may work."""


class ClaudeMisconfigured(AnswerError):
    """An operator fault (a refused key, a model the key may not use or that does not exist):
    no retry helps until someone changes a setting."""
