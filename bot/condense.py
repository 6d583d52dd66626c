"""Follow-ups to standalone questions, so each gets its own retrieval and cache entry.

"and on Windows?" after "How do I connect to the VPN on macOS?" must become "How do I connect to
the VPN on Windows?": looked up as is, it would retrieve nothing useful and, worse, could hit
the cache entry of an unrelated question. Claude does the rewrite when a key is configured;
:func:`condense_without_model` is the offline fallback and the rescue when Claude fails.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.answers import Turn
from bot.prompts import CONDENSE_SYSTEM, fence_conversation, neutralise
from core.errors import AnswerError

if TYPE_CHECKING:
    import anthropic

log = logging.getLogger(__name__)

CONDENSE_MAX_TOKENS = 100
# A rewrite is a small favour: fail fast and fall back rather than delay the answer.
CONDENSE_TIMEOUT_S = 10.0
HISTORY_TURNS = 6
TURN_CHARS = 400
# Longer than any sensible question: the model answered or rambled instead of rewriting.
MAX_STANDALONE_CHARS = 500


def condense(
    client: anthropic.Anthropic,
    model: str,
    question: str,
    history: Sequence[Turn],
    *,
    timeout: float = CONDENSE_TIMEOUT_S,
) -> str:
    """One standalone question from ``question`` and the thread so far (oldest first)."""
    # The SDK is imported only by a process that condenses with a model.
    from bot.answerer import complete

    if not history:
        return question
    turns = [(t.role, _clip(t.text)) for t in history if t.text.strip()][-HISTORY_TURNS:]
    user = (
        f"{fence_conversation(turns)}\n\n"
        f"<follow_up>{neutralise(question.strip())}</follow_up>\n\n"
        "Rewrite the follow-up as one standalone question."
    )
    try:
        raw = complete(
            client,
            model=model,
            system=CONDENSE_SYSTEM,
            user=user,
            max_tokens=CONDENSE_MAX_TOKENS,
            timeout=timeout,
        )
    except AnswerError as err:
        log.info("condensing with Claude failed (%s); using the heuristic", err)
        return condense_without_model(question, history)
    return _cleaned(raw) or condense_without_model(question, history)


_PREFIX_RE = re.compile(r"^(?:standalone question|question|rewritten question)\s*:\s*", re.I)


def _cleaned(raw: str) -> str:
    lines = [line.strip() for line in raw.splitlines() if line.strip()]
    if not lines:
        return ""
    line = _PREFIX_RE.sub("", lines[0]).strip().strip("\"'`“”").strip()
    return line if len(line) <= MAX_STANDALONE_CHARS else ""


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= TURN_CHARS else text[: TURN_CHARS - 1] + "…"


# --- the model-free heuristic ------------------------------------------------------------------

# Entity kinds a follow-up typically swaps, most specific first (a span matched by an earlier
# kind is not matched again by a later one: "Windows 11" is an OS, not a number).
_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("ticket", re.compile(r"\b[A-Z][A-Z0-9]{1,9}-\d+\b")),
    (
        "os",
        re.compile(
            r"\b(?:mac\s?os(?:\s?x)?|os\s?x|macs?|windows(?:\s?(?:10|11))?|linux|ubuntu|"
            r"debian|fedora|rhel|centos|chrome\s?os|ios|ipados|android)\b",
            re.I,
        ),
    ),
    (
        "env",
        re.compile(
            r"\b(?:prod(?:uction)?|staging|dev(?:elopment)?|qa|uat|sandbox|pre-?prod)\b", re.I
        ),
    ),
    (
        "region",
        re.compile(r"\b[a-z]{2}-(?:north|south|east|west|central)(?:east|west)?-\d\b", re.I),
    ),
    ("browser", re.compile(r"\b(?:chrome|firefox|safari|edge)\b", re.I)),
    ("priority", re.compile(r"\b(?:p[0-4]|sev-?[0-4])\b", re.I)),
    ("version", re.compile(r"\bv?\d+(?:\.\d+){1,3}\b|\bv\d+\b", re.I)),
    ("number", re.compile(r"\b\d+\b")),
)
# Conjunctions are dropped when a follow-up is appended; "what about"-style openers are kept
# there (they carry meaning) but skipped when looking for entities and new words.
_CONJUNCTIONS_RE = re.compile(r"^(?:(?:and|but|also|or|so|then|ok(?:ay)?|thanks)\b[\s,!.]*)+", re.I)
_OPENER_RE = re.compile(r"^(?:(?:what|how)\s+about|what\s+if|same\s+(?:for|with|on))\b\s*", re.I)


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


_PRONOUNS = _wordset(
    "it its it's that this they them their those these there one ones he she him her"
)
_STOPWORDS = _wordset(
    """a an the and or but also so then to of in on at for with from by via under using into
    is are was were be been do does did can could should would will may might must i we you my
    our your me us what which who whom whose when where why how about if any some same just
    please thanks ok okay there here not no yes get got use used need needs have has had
    environment env version release os ticket issue machine laptop browser region one"""
)
_PREPOSITIONS = _wordset("on in for with under using at from to via into")
_WORD_RE = re.compile(r"[\w'.-]+")
_MENTION_RE = re.compile(r"<@[A-Z0-9]+>\s*")


@dataclass(frozen=True)
class _Entity:
    kind: str
    start: int
    end: int
    text: str


def condense_without_model(question: str, history: Sequence[Turn]) -> str:
    """Rule-based condensation, used without ANTHROPIC_API_KEY or when Claude fails.

    Earlier user turns are folded in order, so a follow-up to a follow-up still resolves.
    A short or elliptical follow-up that names an entity of a kind the previous question also
    has (OS, environment, version, ticket, region, ...) swaps it in; one that only adds a
    prepositional phrase is appended; any other elliptical one becomes "previous — follow-up".
    """
    previous: str | None = None
    for turn in history:
        text = _MENTION_RE.sub("", turn.text).strip()
        if turn.role == "user" and text:
            previous = text if previous is None else _merge(previous, text)
    question = _MENTION_RE.sub("", question).strip()
    return question if previous is None else _merge(previous, question)


def _merge(previous: str, follow_up: str) -> str:
    if not _elliptical(follow_up):
        return follow_up
    bare = _strip(_CONJUNCTIONS_RE, follow_up)
    follow_up = bare if re.search(r"\w", bare) else follow_up  # "and then?" stays whole
    core = _strip(_OPENER_RE, follow_up)
    mentioned = _entities(core)
    result, swapped = previous, False
    for kind in dict.fromkeys(e.kind for e in mentioned):
        new = next(e for e in mentioned if e.kind == kind)
        old = next((e for e in _entities(result) if e.kind == kind), None)
        if old is not None:
            swapped = swapped or old.text.lower() != new.text.lower()
            result = result[: old.start] + new.text + result[old.end :]
    known = {w.lower() for w in _WORD_RE.findall(previous)}
    entity_words = {w.lower() for e in mentioned for w in _WORD_RE.findall(e.text)}
    residual = [w for w in _content_words(core) if w not in known and w not in entity_words]
    if swapped:
        return result if not residual else f"{result} — {core}"
    first = core.split(maxsplit=1)[0].lower() if core else ""
    if mentioned and not residual and first in _PREPOSITIONS:
        # "and on Windows?" after a question with no OS at all: it qualifies that question.
        return f"{previous.rstrip(' ?.!')} {core.rstrip(' ?.!')}?"
    return f"{previous} — {follow_up}"


def _elliptical(text: str) -> bool:
    words = [w.lower() for w in _WORD_RE.findall(text)]
    if len(words) <= 3 or _CONJUNCTIONS_RE.match(text) or _OPENER_RE.match(text):
        return True
    # "How do I restart it?": a pronoun standing for a thing the question never names.
    return any(w in _PRONOUNS for w in words) and len(_content_words(text)) <= 3


def _strip(pattern: re.Pattern[str], text: str) -> str:
    return pattern.sub("", text, count=1).strip()


def _content_words(text: str) -> list[str]:
    words = (w.lower().strip(".'") for w in _WORD_RE.findall(text))
    return [w for w in words if w and w not in _STOPWORDS and w not in _PRONOUNS]


def _entities(text: str) -> list[_Entity]:
    found: list[_Entity] = []
    for kind, pattern in _KINDS:
        for match in pattern.finditer(text):
            if all(match.end() <= e.start or match.start() >= e.end for e in found):
                found.append(_Entity(kind, match.start(), match.end(), match.group()))
    return sorted(found, key=lambda e: e.start)
