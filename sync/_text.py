"""Plain-text building blocks shared by the Confluence and Jira content converters.

All three converters (storage format, ADF, wiki markup) emit the same conventions, so the
chunker, keyword search and answer quoting see one dialect whatever the source was.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# Upper bound for colspan/rowspan: a hostile or corrupt value must not blow up memory.
_MAX_SPAN = 100

_FENCE_RE = re.compile(r"^\s*(`{3,})")
_SPACE_LIKE_RE = re.compile(r"[\u00a0\u2000-\u200a\u202f\u205f\u3000]")
_INNER_SPACES_RE = re.compile(r"(?<=\S)[ \t]{2,}")
_WS_RE = re.compile(r"\s+")
_ABSOLUTE_URL_RE = re.compile(r"^(?:https?|ftp)://", re.IGNORECASE)


def collapse(text: str) -> str:
    """Collapse every whitespace run (NBSP and newlines included) to one space."""
    return _WS_RE.sub(" ", text)


def heading(level: int, text: str) -> str:
    """A Markdown ATX heading, so the chunker can split on it."""
    level = min(max(level, 1), 6)
    text = collapse(text).strip()
    return f"{'#' * level} {text}" if text else ""


def fence(code: str, language: str | None = None) -> str:
    """A fenced code block holding ``code`` verbatim; empty code renders as nothing.

    The fence is longer than any backtick run inside the code so it can never close early.
    """
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    marks = "`" * max(3, longest + 1)
    lang = collapse(language or "").strip()
    if lang.lower() in {"none", "text", "plain", "plaintext"}:
        lang = ""
    lines = code.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    # Blank edge lines are an artefact of how editors wrap code; inner ones are content.
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return ""
    body = "\n".join(lines)
    return f"{marks}{lang}\n{body}\n{marks}"


def list_item(marker: str, body: str) -> str:
    """Prefix the first line of ``body`` with ``marker`` and indent the rest under it."""
    lines = body.split("\n")
    pad = " " * len(marker)
    rest = [f"{pad}{line}" if line.strip() else "" for line in lines[1:]]
    return "\n".join([f"{marker}{lines[0]}", *rest])


def quote(body: str) -> str:
    """A Markdown block quote."""
    return "\n".join(f"> {line}" if line.strip() else ">" for line in body.split("\n"))


def labelled(label: str, title: str | None, blocks: Sequence[str]) -> str:
    """A panel-like block: ``Label: title`` then the body, kept together as one block.

    Without a title the first body paragraph joins the label line (``Note: text``) unless it
    is structured (list, code, heading) or merely repeats the label.
    """
    body = [b for b in blocks if b.strip()]
    title = collapse(title or "").strip()
    if title:
        return "\n".join([f"{label}: {title}", *body])
    if body and body[0].strip().rstrip(":").lower() == label.lower():
        body = body[1:]  # a first line that only repeats the label ("Note") says nothing new
    if body:
        first = body[0]
        if not re.match(r"^(#|`{3}|- |\d+\. |>)", first):
            return "\n".join([f"{label}: {first}", *body[1:]])
    return "\n".join([f"{label}:", *body])


def link(text: str, href: str | None) -> str:
    """Link text, followed by ``(url)`` when the URL is absolute and adds information."""
    text = collapse(text).strip()
    href = (href or "").strip()
    if not _ABSOLUTE_URL_RE.match(href):
        if text:
            return text
        return href.removeprefix("mailto:") if href and not href.startswith("#") else ""
    if not text or text.rstrip("/") == href.rstrip("/"):
        return href
    return f"{text} ({href})"


def one_line(text: str) -> str:
    """Flatten rendered blocks to one line for a table cell (code fence lines dropped)."""
    lines = [line.strip() for line in text.split("\n")]
    return " ".join(line for line in lines if line and not _FENCE_RE.match(line))


@dataclass(frozen=True)
class Cell:
    """One table cell as rendered text, with its header flag and spans."""

    text: str
    header: bool = False
    colspan: int = 1
    rowspan: int = 1


# A grid slot: the cell's text, or None where a colspan continues the cell to its left.
_Slot = tuple[str | None, bool]


def _grid(rows: Sequence[Sequence[Cell]]) -> list[list[_Slot]]:
    """Lay the cells out on a grid so merged cells keep every value in its column."""
    carried: dict[int, tuple[_Slot, int]] = {}  # column -> (slot, rows it still covers)
    grid: list[list[_Slot]] = []
    for row in rows:
        queue = list(row)
        line: list[_Slot] = []
        col = 0
        while queue or any(c >= col for c in carried):
            if col in carried:
                slot, left = carried.pop(col)
                if left > 1:
                    carried[col] = (slot, left - 1)
                line.append(slot)
            elif queue:
                cell = queue.pop(0)
                span = min(max(cell.colspan, 1), _MAX_SPAN)
                down = min(max(cell.rowspan, 1), _MAX_SPAN)
                for k in range(span):
                    slot = (one_line(cell.text) if k == 0 else None, cell.header)
                    line.append(slot)
                    if down > 1:
                        carried[col + k] = (slot, down - 1)
                col += span
                continue
            else:
                line.append(("", False))  # a gap before a column still covered from above
            col += 1
        grid.append(line)
    return grid


def _header_labels(header_rows: list[list[_Slot]]) -> list[str]:
    """Column labels; stacked header rows combine as ``Group / Column``."""
    width = max(len(r) for r in header_rows)
    labels: list[str] = []
    for col in range(width):
        parts: list[str] = []
        for row in header_rows:
            text = ""
            start = col if col < len(row) else -1
            for c in range(start, -1, -1):  # a colspan continuation inherits from its left
                if row[c][0] is not None:
                    text = row[c][0] or ""
                    break
            if text and text not in parts:
                parts.append(text)
        labels.append(" / ".join(parts))
    return labels


def _plain_row(row: list[_Slot]) -> str:
    values = [text for text, _ in row if text is not None]
    while values and not values[-1]:
        values.pop()
    # Empty cells keep their place so the columns after them do not shift.
    return " |".join(f" {v}" if v else "" for v in values).strip()


def render_table(rows: Sequence[Sequence[Cell]]) -> str:
    """Render a table one line per row.

    With a header row each body row reads ``Header: value | Header: value``; without one the
    cells are joined by `` | ``. Empty rows are dropped.
    """
    grid = [r for r in _grid(rows) if any(text for text, _ in r)]
    header_rows: list[list[_Slot]] = []
    while grid and all(is_header for _, is_header in grid[0]):
        header_rows.append(grid.pop(0))
    if not header_rows:
        return "\n".join(_plain_row(r) for r in grid)
    if not grid:
        return "\n".join(_plain_row(r) for r in header_rows)
    labels = _header_labels(header_rows)
    lines: list[str] = []
    for row in grid:
        pairs: list[str] = []
        for col, (text, _) in enumerate(row):
            if not text:
                continue
            label = labels[col] if col < len(labels) else ""
            pairs.append(f"{label}: {text}" if label else text)
        lines.append(" | ".join(pairs))
    return "\n".join(lines)


def normalize(text: str) -> str:
    """Final whitespace clean-up, leaving fenced code untouched apart from trailing spaces.

    Outside code: space-like characters become spaces, inner space runs collapse, runs of
    blank lines become one. Everywhere: no trailing spaces, no leading/trailing blank lines.
    """
    out: list[str] = []
    fence_marks: str | None = None
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.rstrip()
        match = _FENCE_RE.match(line)
        if fence_marks is not None:
            if match and line.strip() == fence_marks:
                fence_marks = None
            out.append(line)
            continue
        if match:
            fence_marks = match.group(1)
            out.append(line)
            continue
        line = _INNER_SPACES_RE.sub(" ", _SPACE_LIKE_RE.sub(" ", line)).rstrip()
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)


def join_blocks(blocks: Sequence[str]) -> str:
    """Join rendered blocks with one blank line between them."""
    return "\n\n".join(b for b in blocks if b.strip())
