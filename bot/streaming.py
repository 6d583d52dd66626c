"""Model text made fit to show while it is still arriving (docs/ARCHITECTURE.md,
"Streamed answers").

:class:`CitationGate` sits between the model's raw text deltas and a platform's stream. It
shows text as it comes, except for what could still turn out to be unsafe:

* a ``[`` is held until the bracket closes: a citation marker whose numbers name retrieved
  passages is shown, already renumbered in order of first citation (the order the final answer
  uses, so the numbers do not change at the end); a marker naming no retrieved passage is
  dropped, never shown, not even for a moment; a Markdown link ``[label](url)`` is shown as
  plain text, like every link in answer text (``bot.markdown.unlink``);
* the word being written is held until it ends, so a URL is made inert whole.

:class:`Pace` spaces a platform's stream updates (at most one per interval).

Code spans and fences are passed through as written (``items[0]`` is code, not a citation).
The final answer replaces everything streamed, so what the gate shows is a faithful preview,
not the record.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from bot import markdown as md

TextSink = Callable[[str], None]

_NUMBER_LIST = r"\d+(?:\s*[,\-\u2013]\s*\d+)*"
_MARKER = re.compile(rf"\[\s*{_NUMBER_LIST}\s*\]")
# What a marker looks like before its ``]`` has arrived.
_MARKER_PREFIX = re.compile(r"\[\s*(?:\d+(?:\s*[,\-\u2013]\s*(?:\d+)?)*)?\s*")
_NUMBERS = re.compile(r"(\d+)(?:\s*[\-\u2013]\s*(\d+))?")
_LINK_PREFIX = re.compile(r"\[[^\]\n]*(?:\](?:\((?:[^\s()]|\([^\s()]*\))*(?:\s+\"[^\"\n]*)?)?)?")
_LAST_GAP = re.compile(r"\s+\S*$")
# A bracket longer than this with no ``]`` is prose, not a link label worth waiting for.
_HOLD_LIMIT = 400


class Pace:
    """When a stream's next update may go: at most one per ``every`` seconds of ``clock``."""

    def __init__(self, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every
        self._clock = clock
        self._sent_at = 0.0

    def due(self) -> bool:
        return self._clock() - self._sent_at >= self._every

    def sent(self) -> None:
        self._sent_at = self._clock()


class CitationGate:
    """Feeds ``sink`` the shown form of a stream of raw model text (see the module docstring).

    ``sources`` is how many passages the model was given: markers outside 1..sources are
    invented. Not thread-safe: one gate per answer, fed from the thread reading the model.
    """

    def __init__(self, sources: int, sink: TextSink) -> None:
        self._sources = sources
        self._sink = sink
        self._raw = ""  # undecided model text, from its first undecided character
        self._decided = ""  # decided text whose last word may still be growing
        self._shown_numbers: dict[int, int] = {}
        self._fence = False
        self._inline = False
        self.shown = ""  # everything handed to the sink so far

    def feed(self, delta: str) -> None:
        self._raw += delta
        decided = self._decide()  # first: dropping a marker may trim _decided
        self._decided += decided
        # Up to the last whitespace, kept back with the word after it: a dropped marker
        # takes the space before it along ("x [9]." shows "x.").
        last = _LAST_GAP.search(self._decided)
        if last is None or last.start() == 0:
            return
        ready, self._decided = self._decided[: last.start()], self._decided[last.start() :]
        text = md.unlink(ready)
        if text:
            self.shown += text
            self._sink(text)

    def _decide(self) -> str:
        """Consume what can be decided from the start of ``_raw``; keep the rest."""
        raw, out, i = self._raw, "", 0
        while i < len(raw):
            char = raw[i]
            if char == "`":
                end = i
                while end < len(raw) and raw[end] == "`":
                    end += 1
                if end == len(raw):
                    break  # a fence or a span? wait for the run to end
                run = end - i
                if run >= 3 and not self._inline:
                    self._fence = not self._fence
                elif not self._fence:
                    self._inline = not self._inline
                out += raw[i:end]
                i = end
                continue
            if char == "\n":
                self._inline = False
            if char != "[" or self._fence or self._inline:
                out += char
                i += 1
                continue
            marker = _MARKER.match(raw, i)
            if marker:
                label = self._citation(marker.group())
                if not label:  # invented: gone, with the space before it
                    out = out.rstrip(" \t")
                    if not out:
                        self._decided = self._decided.rstrip(" \t")
                out += label
                i = marker.end()
                continue
            if _MARKER_PREFIX.fullmatch(raw, i):
                break  # the marker is still being written
            link = md.LINK.match(raw, i)
            if link:
                out += md.unlink(link.group())
                i = link.end()
                continue
            if _LINK_PREFIX.fullmatch(raw, i) and len(raw) - i < _HOLD_LIMIT:
                break  # may still become a link
            out += char
            i += 1
        self._raw = raw[i:]
        return out

    def _citation(self, marker: str) -> str:
        """A marker as shown: its known passages renumbered, nothing for an invented one."""
        shown: list[str] = []
        for first, last in _NUMBERS.findall(marker):
            low, high = sorted((int(first), int(last) if last else int(first)))
            for n in range(max(low, 1), min(high, self._sources) + 1):
                number = self._shown_numbers.setdefault(n, len(self._shown_numbers) + 1)
                label = f"[{number}]"
                if label not in shown:
                    shown.append(label)
        return "".join(shown)
