"""Splitting an artifact's text into overlapping chunks of about 400 cl100k tokens.

Chunks end on heading and paragraph boundaries where possible (a code block is never split
unless it alone exceeds the budget), carry the heading they sit under, and overlap the previous
chunk by up to 80 tokens so a fact on a boundary is whole in at least one chunk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from store.tokens import TokenCounter

_HEADING = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")
_FENCE = re.compile(r"^(`{3,})")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


@dataclass(frozen=True)
class Chunk:
    ord: int
    heading: str
    text: str
    token_count: int


@dataclass(frozen=True)
class _Block:
    text: str
    heading: str
    tokens: int
    is_heading: bool


class Chunker:
    def __init__(self, counter: TokenCounter, *, size: int = 400, overlap: int = 80) -> None:
        if not 0 <= overlap < size:
            raise ValueError("overlap must be smaller than the chunk size")
        self._counter = counter
        self.size = size
        self.overlap = overlap

    def split(self, text: str) -> list[Chunk]:
        chunks: list[Chunk] = []
        current: list[_Block] = []
        used = 0
        fresh = False  # whether ``current`` holds anything beyond the previous chunk's tail

        def emit() -> None:
            body = "\n\n".join(b.text for b in current)
            heading = next((b.heading for b in current if not b.is_heading), current[0].heading)
            chunks.append(Chunk(len(chunks), heading, body, self._counter.count(body)))

        for block in self._blocks(text):
            has_content = any(not b.is_heading for b in current)
            new_section = block.is_heading and used > self.size // 2
            # +1 per block: the blank line joining blocks costs a token.
            if fresh and has_content and (used + block.tokens + 1 > self.size or new_section):
                emit()
                # A new section starts clean; otherwise carry the tail for overlap.
                current = [] if block.is_heading else self._overlap_tail(current)
                used = sum(b.tokens + 1 for b in current)
                if used + block.tokens + 1 > self.size:
                    current, used = [], 0
            current.append(block)
            used += block.tokens + 1
            fresh = True
        if fresh and any(not b.is_heading for b in current):
            emit()
        return chunks

    def _overlap_tail(self, blocks: list[_Block]) -> list[_Block]:
        """The trailing blocks (or the tail of the last one) worth at most ``overlap`` tokens."""
        if self.overlap == 0:
            return []
        tail: list[_Block] = []
        budget = self.overlap
        for block in reversed(blocks):
            if block.is_heading:
                break
            if block.tokens <= budget:
                tail.insert(0, block)
                budget -= block.tokens
                continue
            if not tail:
                ids = self._counter.encoding.encode(block.text, disallowed_special=())
                piece = self._counter.encoding.decode(ids[-self.overlap :]).lstrip()
                tail.insert(0, _Block(piece, block.heading, self._counter.count(piece), False))
            break
        return tail

    def _blocks(self, text: str) -> list[_Block]:
        """Paragraph-level blocks with their heading; oversized ones split into pieces."""
        blocks: list[_Block] = []
        heading = ""
        for raw in _paragraphs(text):
            match = _HEADING.match(raw) if "\n" not in raw else None
            if match:
                heading = match.group(2)
                blocks.append(_Block(raw, heading, self._counter.count(raw), True))
                continue
            tokens = self._counter.count(raw)
            if tokens <= self.size:
                blocks.append(_Block(raw, heading, tokens, False))
                continue
            for piece in self._split_long(raw):
                blocks.append(_Block(piece, heading, self._counter.count(piece), False))
        return blocks

    def _split_long(self, text: str) -> list[str]:
        """Split an oversized paragraph on lines, then sentences, then raw token windows."""
        pieces: list[str] = []
        # Leave room for the overlap carried in front, and for re-tokenisation drift.
        budget = self.size - self.overlap - 8
        for unit in _units(text):
            if self._counter.count(unit) <= budget:
                if pieces and self._counter.count(pieces[-1] + "\n" + unit) <= budget:
                    pieces[-1] = pieces[-1] + "\n" + unit
                else:
                    pieces.append(unit)
                continue
            pieces.extend(self._split_words(unit, budget))
        return pieces

    def _split_words(self, text: str, budget: int) -> list[str]:
        """Greedy word windows; a single word longer than the budget is cut by tokens."""
        pieces: list[str] = []
        words: list[str] = []
        used = 0
        for word in text.split(" "):
            cost = self._counter.count(" " + word)
            if cost > budget:
                ids = self._counter.encoding.encode(word, disallowed_special=())
                pieces.extend(
                    self._counter.encoding.decode(ids[i : i + budget])
                    for i in range(0, len(ids), budget)
                )
                continue
            if words and used + cost > budget:
                pieces.append(" ".join(words))
                words, used = [], 0
            words.append(word)
            used += cost
        if words:
            pieces.append(" ".join(words))
        return pieces


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, keeping fenced code blocks whole."""
    out: list[str] = []
    buf: list[str] = []
    fence = ""  # the opening fence while inside a code block; a longer fence nests shorter ones
    for line in text.splitlines():
        marker = _FENCE.match(line.strip())
        if marker and not fence:
            fence = marker.group(1)
        elif marker and len(marker.group(1)) >= len(fence) and set(line.strip()) == {"`"}:
            fence = ""  # only a bare fence at least as long as the opening one closes it
        in_fence = bool(fence) or bool(marker)
        if not line.strip() and not in_fence:
            if buf:
                out.append("\n".join(buf).strip("\n"))
                buf = []
            continue
        if _HEADING.match(line) and not in_fence:
            if buf:
                out.append("\n".join(buf).strip("\n"))
                buf = []
            out.append(line.strip())
            continue
        buf.append(line)
    if buf:
        out.append("\n".join(buf).strip("\n"))
    return [p for p in out if p.strip()]


def _units(text: str) -> list[str]:
    units: list[str] = []
    for line in text.splitlines():
        units.extend(s for s in _SENTENCE_END.split(line) if s.strip())
    return units


_MIN_WORDS = 4  # shorter lines (list bullets, headings, labels) join the next unit
_MAX_UNITS = 32  # more (long lists, code) are merged into this many runs

Span = tuple[int, int]


def sentence_spans(text: str) -> tuple[tuple[Span, ...], ...]:
    """The sentence units of ``text`` as character spans: each unit is its pieces (sentences
    of one line, stripped) in order; fragments under four words are joined to their
    neighbour, and more than 32 units are merged into 32 runs."""
    units: list[list[Span]] = []
    carry: list[Span] = []
    line_start = 0
    for line in text.split("\n"):
        at = 0
        for match in [*_SENTENCE_END.finditer(line), None]:
            end = match.start() if match else len(line)
            piece = line[at:end]
            lead = len(piece) - len(piece.lstrip())
            stripped = piece.strip()
            if match:
                at = match.end()
            if stripped:
                start = line_start + (end - len(piece)) + lead
                carry = [*carry, (start, start + len(stripped))]
            words = sum(len(text[a:b].split()) for a, b in carry)
            if not carry or words < _MIN_WORDS:
                continue
            units.append(carry)
            carry = []
        line_start += len(line) + 1
    if carry:
        if units:
            units[-1] = units[-1] + carry
        else:
            units.append(carry)
    if len(units) > _MAX_UNITS:
        step = len(units) / _MAX_UNITS
        units = [
            [span for unit in units[round(i * step) : round((i + 1) * step)] for span in unit]
            for i in range(_MAX_UNITS)
        ]
    return tuple(tuple(unit) for unit in units)


def sentence_units(text: str) -> tuple[str, ...]:
    """What is embedded, one by one, beside a chunk: its sentences (lines, split at sentence
    ends), fragments under four words joined to their neighbour, at most 32 per chunk."""
    return tuple(" ".join(text[a:b] for a, b in unit) for unit in sentence_spans(text))
