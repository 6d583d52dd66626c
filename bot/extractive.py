"""Answers without a language model: the passages' best sentences, quoted with their ``[n]``.

Used when no ANTHROPIC_API_KEY is configured (``kb demo`` out of the box). Each passage is cut
into units: sentences of prose, list items and table rows, and groups of code lines (never
split mid-line). Units are scored BM25-style against the question, over the units of the
passages at hand, so a sentence holding the question's rare terms (a port, a ticket key, a
command name) beats one that only shares the common ones.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.answers import Turn
from bot.drafts import NO_SOURCES_TEXT, Draft
from store.passages import Passage

LABEL = "No language model is configured, so here are the most relevant passages:"
MAX_PASSAGES = 5
MAX_PICKS = 3
# A further pick must add at least this share of the best pick's score in uncovered terms.
MIN_SHARE = 0.35
MAX_PROSE_CHARS = 400
MAX_CODE_LINES = 12
K1, B = 1.2, 0.5
SHORT_UNIT = 8  # words

_FENCE_OPEN_RE = re.compile(r"^(`{3,})([^`]*)$")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[@#`*])")
_LIST_MARK_RE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_TOKEN_RE = re.compile(r"[a-z0-9]+(?:[-_./:@][a-z0-9]+)*")


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


_STOPWORDS = _wordset(
    """a an the and or but if then else of to in on at for with from by via into onto about
    is are was were be been being am do does did doing have has had can could should would
    will shall may might must i me my we our you your he she it its they them their this that
    these those there here what which who whom whose when where why how not no yes all any
    some each so than too very just also please get got use using used need needs want"""
)


@dataclass(frozen=True)
class _Unit:
    n: int  # passage number, 1-based
    rank: int  # passage position, 0 = best retrieved
    order: int  # position within its passage
    text: str
    code_lang: str | None  # None for prose
    terms: Counter[str]
    heading: frozenset[str]  # terms of the section heading the unit sits under
    title: frozenset[str]  # terms of the artifact's title


class ExtractiveAnswerer:
    """Quotes the best 1-3 units of the top passages; implements bot.answerer.Answerer."""

    def answer(
        self,
        question: str,
        passages: Sequence[Passage],
        history: Sequence[Turn] = (),
        *,
        on_text: Callable[[str], None] | None = None,
    ) -> Draft:
        # Quotes are posted whole (never streamed): on_text is unused. So is history: the
        # flow condenses a follow-up into ``question`` beforehand.
        if not passages:
            return Draft(NO_SOURCES_TEXT, (), "no_sources")
        units = [u for rank, p in enumerate(passages[:MAX_PASSAGES]) for u in _units(rank, p)]
        if not units:
            return Draft(NO_SOURCES_TEXT, (), "no_sources")
        picks = pick(question, units)
        # Shown in reading order within each passage (runbook steps stay in sequence),
        # passages in the order of their best pick.
        first = {n: i for i, n in reversed(list(enumerate(u.n for u in picks)))}
        picks = sorted(picks, key=lambda u: (first[u.n], u.order))
        at = {(u.n, u.order): u for u in units}
        blocks = [_render(u, passages[u.n - 1].title, at, picks) for u in picks]
        blocks = [b for b in blocks if b]
        cited = tuple(dict.fromkeys(unit.n for unit in picks))
        return Draft("\n\n".join([LABEL, *blocks]), cited, "extractive")


def pick(question: str, units: Sequence[_Unit]) -> list[_Unit]:
    """The best units for ``question``, greedily, each adding terms the others lack."""
    wanted = Counter(_terms(question))
    if not wanted:
        return [units[0]]
    df: Counter[str] = Counter()
    for unit in units:
        df.update(set(unit.terms))
    average = sum(sum(u.terms.values()) for u in units) / len(units)
    weight = {t: _idf(df[t], len(units)) * (2.0 if _specific(t) else 1.0) for t in wanted}
    picks: list[_Unit] = []
    best = 0.0
    remaining = list(units)
    while remaining and len(picks) < MAX_PICKS:
        scored = [(_score(u, weight, average), u) for u in remaining]
        score, unit = max(scored, key=lambda su: (su[0], -su[1].rank, -su[1].order))
        if not picks:
            best = score
        if score <= 0 or score < MIN_SHARE * best:
            break
        picks.append(unit)
        remaining.remove(unit)
        # Terms a pick already covers count for much less in the next one: no near-duplicates.
        weight = {t: w * (0.2 if t in unit.terms else 1.0) for t, w in weight.items()}
    # No overlap at all: retrieval still ranked the first passage best, so show its opening.
    return picks or [min(units, key=lambda u: (u.rank, u.order))]


def _score(unit: _Unit, weight: dict[str, float], average: float) -> float:
    length = sum(unit.terms.values()) or 1
    norm = K1 * (1 - B + B * length / (average or 1))
    score = sum(
        w * unit.terms[t] * (K1 + 1) / (unit.terms[t] + norm)
        for t, w in weight.items()
        if unit.terms[t]
    )
    # Under a matching heading a unit is likelier on topic; code seldom repeats the question's
    # words ("## Roll back" over "conveyor rollback ..."), so it leans on its heading more.
    # The title is shared by every unit of a passage: it only separates passages, gently.
    share = 0.8 if unit.code_lang is not None else 0.4
    for t, w in weight.items():
        if not unit.terms[t]:
            score += w * (share if t in unit.heading else 0.15 if t in unit.title else 0.0)
    if unit.code_lang is None:
        # BM25 favours short units, but a label or a bare link text says nothing by itself.
        words = len(unit.text.split())
        score *= min(1.0, words / SHORT_UNIT)
        if words < SHORT_UNIT and unit.text[-1] not in ".!?:":
            score *= 0.5
    # Retrieval already weighed every passage against the question with more signals than
    # word overlap; a lower-ranked passage needs clearly better words to be quoted first.
    return score / (1.0 + 0.35 * unit.rank)


def _idf(df: int, n: int) -> float:
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def _specific(term: str) -> bool:
    """Numbers, keys, hostnames, paths: exact and rare, so a match is strong evidence."""
    return any(c.isdigit() for c in term) or any(c in term for c in "_./:@")


def _terms(text: str) -> list[str]:
    terms: list[str] = []
    for token in _TOKEN_RE.findall(text.lower()):
        parts = re.split(r"[-_./:@]", token)
        # "OPS-412", "vpn.example.com" also count whole; "peak-season" is just two words.
        if len(parts) > 1 and _specific(token):
            terms.append(token)
        terms += [_stem(p) for p in parts if p and p not in _STOPWORDS]
    return terms


def _stem(word: str) -> str:
    """A deliberately crude stemmer: enough that "paging", "pages" and "paged" meet."""
    if len(word) <= 3 or word.isdigit():
        return word
    for suffix, replacement in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            word = word[: -len(suffix)] + replacement
            if word[-1] == word[-2] and word[-1] not in "aeiouls":
                word = word[:-1]  # "running" -> "runn" -> "run", but "rolled" -> "roll"
            break
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


# --- cutting passages into units ---------------------------------------------------------------


def _units(rank: int, passage: Passage) -> list[_Unit]:
    title = frozenset(_terms(passage.title))
    pieces: list[tuple[str, str | None, frozenset[str]]] = []
    under = frozenset(_terms(passage.heading))  # then the latest heading inside the text
    lines = passage.text.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        opener = _FENCE_OPEN_RE.match(line)
        if opener:
            marks, body = opener.group(1), []
            while i < len(lines) and not re.fullmatch(marks + "`*", lines[i].strip()):
                body.append(lines[i])
                i += 1
            i += 1  # the closing fence (or the end of a chunk that cut the block)
            lang = opener.group(2).strip()
            code = textwrap.dedent("\n".join(body))  # a block nested in a list item is indented
            pieces += [(group, lang, under) for group in _code_groups(code)]
        elif line.startswith("#"):
            under = frozenset(_terms(line.lstrip("# ")))
        elif line:
            body_text = _LIST_MARK_RE.sub("", line)
            # List items and table rows stand alone; paragraphs split into sentences.
            whole = body_text != line or " | " in line
            sentences = [body_text] if whole else _SENTENCE_END_RE.split(body_text)
            pieces += [(s.strip(), None, under) for s in sentences if s.strip()]
    return [
        _Unit(rank + 1, rank, order, text, lang, Counter(_terms(text)), heading, title)
        for order, (text, lang, heading) in enumerate(pieces)
        if lang is not None or len(text.split()) >= 3 or text.endswith(":")
    ]


def _code_groups(code: str) -> list[str]:
    """Blank-line separated groups of whole lines, long groups cut into windows."""
    groups: list[str] = []
    for block in re.split(r"\n[ \t]*\n", code):
        lines = block.split("\n")
        groups += [
            "\n".join(lines[i : i + MAX_CODE_LINES]) for i in range(0, len(lines), MAX_CODE_LINES)
        ]
    return [g for g in groups if g.strip()]


def _render(
    unit: _Unit, title: str, at: dict[tuple[int, int], _Unit], picks: Sequence[_Unit]
) -> str:
    """A prose unit as a quote, a code unit as a fenced block; each keeps its ``[n]``.

    A sentence ending in ":" and the code right after it belong together ("restart it with:"),
    so picking either shows both.
    """
    before, after = at.get((unit.n, unit.order - 1)), at.get((unit.n, unit.order + 1))
    if unit.code_lang is None:
        quote = _quote(unit)
        if unit.text.endswith(":") and after is not None and after.code_lang is not None:
            return f"{quote}\n{_code(after)}"
        return quote
    if before is not None and before.code_lang is None and before.text.endswith(":"):
        # Its intro renders it (picked too) or is pulled in as its label (not picked).
        return "" if before in picks else f"{_quote(before)}\n{_code(unit)}"
    return f"From {title} [{unit.n}]:\n{_code(unit)}"


def _quote(unit: _Unit) -> str:
    text = unit.text
    if len(text) > MAX_PROSE_CHARS:
        text = text[:MAX_PROSE_CHARS].rsplit(" ", 1)[0] + " …"
    return f"> {text} [{unit.n}]"


def _code(unit: _Unit) -> str:
    # Longer than any backtick run inside, so the code cannot close its own fence.
    longest = max((len(run) for run in re.findall(r"`+", unit.text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{unit.code_lang or ''}\n{unit.text}\n{fence}"
