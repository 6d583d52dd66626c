"""Scoring candidates from a chunk's tsvector text: BM25 with field weights, and proximity.

Postgres full-text ranking knows nothing of how rare a word is; BM25 does. The tsvector
already holds every lexeme's positions and field (A title, B heading, C body), so both
signals are computed from it without another pass over the text.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

_TSV_ENTRY = re.compile(r"'((?:[^']|'')+)':([0-9A-D,]+)")
_POSITION = re.compile(r"(\d+)([A-D]?)")
# A title or heading hit says more than a body hit.
_FIELD_WEIGHT = {"A": 3.0, "B": 1.5, "C": 1.0, "D": 1.0, "": 1.0}


@dataclass(frozen=True)
class ParsedVector:
    """Field-weighted term frequencies, positions per lexeme, and length."""

    tf: dict[str, float]
    positions: dict[str, tuple[int, ...]]
    length: int


def parse_tsvector(text: str) -> ParsedVector:
    tf: dict[str, float] = {}
    positions: dict[str, tuple[int, ...]] = {}
    length = 0
    for raw, spec in _TSV_ENTRY.findall(text):
        lexeme = raw.replace("''", "'")
        hits = _POSITION.findall(spec)
        length += len(hits)
        tf[lexeme] = sum(_FIELD_WEIGHT[weight] for _, weight in hits)
        positions[lexeme] = tuple(int(pos) for pos, _ in hits)
    return ParsedVector(tf, positions, length)


def pick_lexemes(tsvector_text: str, lexemes: Sequence[str], length: int) -> ParsedVector:
    """A ParsedVector of just ``lexemes`` from a tsvector's text form (``'word':1A,5``
    entries), found by substring search: candidates hold hundreds of lexemes, questions a
    handful. ``length`` is the document length BM25 normalises by."""
    tf: dict[str, float] = {}
    positions: dict[str, tuple[int, ...]] = {}
    for lexeme in lexemes:
        key = "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "':"
        if tsvector_text.startswith(key):
            start = len(key)
        else:
            at = tsvector_text.find(" " + key)
            if at < 0:
                continue
            start = at + 1 + len(key)
        stop = tsvector_text.find(" ", start)
        hits = _POSITION.findall(tsvector_text[start : stop if stop >= 0 else None])
        if hits:
            tf[lexeme] = sum(_FIELD_WEIGHT[weight] for _, weight in hits)
            positions[lexeme] = tuple(int(pos) for pos, _ in hits)
    return ParsedVector(tf, positions, length)


def idf(total: int, df: int) -> float:
    return math.log(1 + (total - df + 0.5) / (df + 0.5))


def bm25(
    doc: ParsedVector,
    weights: dict[str, float],
    avg_length: float,
    *,
    k1: float,
    b: float,
) -> float:
    norm = k1 * (1 - b + b * doc.length / max(avg_length, 1.0))
    return sum(
        w * doc.tf[lex] * (k1 + 1) / (doc.tf[lex] + norm)
        for lex, w in weights.items()
        if lex in doc.tf
    )


def proximity(doc: ParsedVector, ordered: list[str], weights: dict[str, float]) -> float:
    """Sum of the weights of consecutive question lexeme pairs found within 2 positions,
    in order, in the chunk: phrases the question shares with the text."""
    score = 0.0
    for first, second in itertools.pairwise(ordered):
        a, b = doc.positions.get(first), doc.positions.get(second)
        if not a or not b:
            continue
        later = set(b)
        if any(p + 1 in later or p + 2 in later for p in a):
            score += weights.get(first, 0.0) + weights.get(second, 0.0)
    return score


def densest_window(doc: ParsedVector, weights: dict[str, float], width: int) -> float:
    """The most weight of distinct question lexemes found within ``width`` positions of each
    other: a sentence that shares many rare words with the question is likely the answer."""
    hits = sorted((pos, lexeme) for lexeme in weights for pos in doc.positions.get(lexeme, ()))
    best = 0.0
    counts: dict[str, int] = {}
    current = 0.0
    start = 0
    for pos, lexeme in hits:
        counts[lexeme] = counts.get(lexeme, 0) + 1
        if counts[lexeme] == 1:
            current += weights[lexeme]
        while pos - hits[start][0] >= width:
            gone = hits[start][1]
            counts[gone] -= 1
            if counts[gone] == 0:
                current -= weights[gone]
            start += 1
        best = max(best, current)
    return best
