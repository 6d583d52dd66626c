"""Suggested questions for a private pane (Slack's assistant pane; docs/ARCHITECTURE.md,
"Slack AI surface").

First the questions people asked most in the same scope and got answered from the cache
(:func:`store.answer_stats.popular_cached_questions`, scope compared in SQL), then the
configured ones (``KB_SUGGESTED_PROMPTS``) or, when none are configured,
:data:`bot.wording.DEFAULT_PROMPTS`; at most :data:`MAX_PROMPTS`, no question twice. A
configured list is the operator's choice: it is never padded with the generic defaults.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bot import wording
from store import answer_stats
from store.cache import normalise
from store.db import Database
from store.scope import Scope

log = logging.getLogger(__name__)

MAX_PROMPTS = 4  # Slack's assistant pane shows at most four


def for_scope(db: Database, scope: Scope, configured: Sequence[str]) -> tuple[str, ...]:
    """The prompts for a pane answering with ``scope``; with the store unreachable, the
    configured ones (or the defaults): a pane opening is no place to report an outage."""
    asked: tuple[str, ...] = ()
    try:
        with db.connection() as conn:
            asked = answer_stats.popular_cached_questions(conn, scope.key(), limit=MAX_PROMPTS)
    except Exception as exc:
        # The class only: a connection error's text may carry the database URL.
        log.warning("suggested prompts without the questions asked: %s", type(exc).__name__)
    return first_distinct(MAX_PROMPTS, asked, configured or wording.DEFAULT_PROMPTS)


def first_distinct(limit: int, *groups: Sequence[str]) -> tuple[str, ...]:
    """Up to ``limit`` texts, in order, skipping blanks and repeats (as the cache compares)."""
    out: list[str] = []
    seen: set[str] = set()
    for text in (t.strip() for group in groups for t in group):
        key = normalise(text)
        if key and key not in seen and len(out) < limit:
            seen.add(key)
            out.append(text)
    return tuple(out)
