"""Jira wiki markup (Server/Data Center, REST v2, webhook bodies) to normalised plain text."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable
from posixpath import basename
from urllib.parse import unquote, urlsplit

from sync._text import (
    Cell,
    fence,
    heading,
    join_blocks,
    labelled,
    link,
    normalize,
    quote,
    render_table,
)

# Code and noformat bodies are cut out first and stand in as NUL-delimited placeholder
# lines, so no later rule can touch them.
_CONTROL_RE = re.compile(r"[\x00-\x02]")
_CODE_TOKEN_RE = re.compile(r"\{(code|noformat)(?::([^}\n]*))?\}", re.IGNORECASE)
_CODE_LINE_RE = re.compile(r"^\x00(\d+)\x00$")
_BLOCK_MACROS = "quote|panel|info|note|warning|tip"
_BLOCK_TOKEN_RE = re.compile(rf"\{{(?:{_BLOCK_MACROS})(?::[^}}\n]*)?\}}", re.IGNORECASE)
_BLOCK_OPEN_RE = re.compile(rf"^\{{({_BLOCK_MACROS})(?::([^}}]*))?\}}$", re.IGNORECASE)
_HEADING_RE = re.compile(r"^h([1-6])\.\s*(.*)$")
_BQ_RE = re.compile(r"^bq\.\s+(.*)$")
_RULE_RE = re.compile(r"^-{4,}$")
_LIST_RE = re.compile(r"^([*#]+|-)\s+(.*)$")
# Bounded lengths keep pathological lines ("[[[[...") linear; real tokens are short.
_CELL_TOKEN_RE = re.compile(
    r"\\.|\[[^\]\n]{0,500}\]|\{\{.{0,500}?\}\}|\{[^}\n]{0,500}\}|![^!\s|][^!\n]{0,500}!"
    r"|\|\||\||[^|\\\[{!]+|.",
)

_PROTECTED_RE = re.compile(r"\x01(\d+)\x02")
_ESCAPE_RE = re.compile(r"\\([^\s\\])")
_MONO_RE = re.compile(r"\{\{(.{1,500}?)\}\}")
_LINK_RE = re.compile(r"\[([^\[\]\n]+)\]")
_LINK_TARGET_RE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|\^|#|~|[A-Z][A-Z0-9_]+-\d+$)", re.IGNORECASE)
_IMAGE_RE = re.compile(
    r"!((?:https?|ftp)://[^!\s|]+|[^!\s|][^!|\n]*?\.[A-Za-z0-9]{2,5})(?:\|[^!\n]*)?!"
)
_URL_RE = re.compile(r"(?:https?|ftp)://[^\s<>\"|\[\]]+")
_STYLE_MACRO_RE = re.compile(r"\{(?:color(?::[^}\n]*)?|anchor:[^}\n]*)\}", re.IGNORECASE)
_MARKS = ("*", "_", "-", "+", "^", "~", "??")
# The span is bounded so a long line full of markers cannot backtrack quadratically.
_MARK_RES = tuple(
    re.compile(
        rf"(?<![\w{re.escape(m[0])}]){re.escape(m)}(?=\S)(.{{1,300}}?)(?<=\S)"
        rf"{re.escape(m)}(?![\w{re.escape(m[0])}])"
    )
    for m in _MARKS
)
_PANEL_LABELS = {
    "panel": "Panel",
    "info": "Info",
    "note": "Note",
    "warning": "Warning",
    "tip": "Tip",
}


def wiki_to_text(
    markup: str | None, *, user_name: Callable[[str], str | None] | None = None
) -> str:
    """Convert Jira wiki markup to plain text with Markdown-style structure.

    ``user_name`` resolves ``[~accountid:...]`` / ``[~username]`` mentions to display names;
    unresolved user names read as ``@username`` and unresolved account ids as ``@user``.
    """
    if not markup or not markup.strip():
        return ""
    # \x00-\x02 delimit internal placeholders; they carry no meaning in real markup.
    text = _CONTROL_RE.sub("", markup).replace("\r\n", "\n").replace("\r", "\n")
    converter = _Converter(user_name)
    text = converter.cut_code(text)
    text = _BLOCK_TOKEN_RE.sub(lambda m: f"\n{m.group(0)}\n", text)
    return normalize(join_blocks(converter.blocks(text.split("\n"))))


class _Converter:
    """Holds the cut-out code blocks of one document and the caller's user-name lookup."""

    def __init__(self, user_name: Callable[[str], str | None] | None) -> None:
        self._user_name = user_name
        self._code: list[str] = []

    def cut_code(self, text: str) -> str:
        """Replace each closed {code}/{noformat} block with a placeholder line.

        Openers are paired with the next bare closer of the same name by bisection, so
        unclosed openers cost no rescans; an unclosed block stays as literal text.
        """
        tokens = list(_CODE_TOKEN_RE.finditer(text))
        closers = {
            name: [
                i for i, t in enumerate(tokens) if t.group(1).lower() == name and t.group(2) is None
            ]
            for name in ("code", "noformat")
        }
        out: list[str] = []
        pos = k = 0
        while k < len(tokens):
            opener = tokens[k]
            name = opener.group(1).lower()
            after = closers[name]
            n = bisect_right(after, k)
            if n == len(after):
                k += 1
                continue
            close = tokens[after[n]]
            out += [
                text[pos : opener.start()],
                self._code_block(name, opener.group(2), text[opener.end() : close.start()]),
            ]
            pos, k = close.end(), after[n] + 1
        out.append(text[pos:])
        return "".join(out)

    def _code_block(self, name: str, params: str | None, body: str) -> str:
        language, title = "", ""
        for param in (p.strip() for p in (params or "").split("|")):
            key, sep, value = param.partition("=")
            if not sep and key and name == "code":
                language = key
            elif key.lower() in ("language", "lang"):
                language = value
            elif key.lower() == "title":
                title = value
        block = fence(body, language)
        self._code.append(f"{title}\n\n{block}" if title else block)
        return f"\n\x00{len(self._code) - 1}\x00\n"

    # -- blocks ----------------------------------------------------------------------------

    def blocks(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        para: list[str] = []

        def flush() -> None:
            text = "\n".join(p for p in (s.strip() for s in para) if p)
            if text:
                out.append(text)
            para.clear()

        i = 0
        while i < len(lines):
            line = lines[i].strip()
            opener = _BLOCK_OPEN_RE.match(line)
            if not _is_paragraph_line(line):
                flush()
            if not line:
                i += 1
            elif code := _CODE_LINE_RE.match(line):
                out.append(self._code[int(code.group(1))])
                i += 1
            elif opener:
                name = opener.group(1).lower()
                close = next(
                    (
                        j
                        for j in range(i + 1, len(lines))
                        if lines[j].strip().lower() == f"{{{name}}}"
                    ),
                    len(lines),
                )
                inner = self.blocks(lines[i + 1 : close])
                if name == "quote":
                    out.append(quote(join_blocks(inner)))
                else:
                    out.append(labelled(_PANEL_LABELS[name], _title(opener.group(2)), inner))
                i = close + 1
            elif match := _HEADING_RE.match(line):
                out.append(heading(int(match.group(1)), self.inline(match.group(2))))
                i += 1
            elif match := _BQ_RE.match(line):
                out.append(quote(self.inline(match.group(1))))
                i += 1
            elif _RULE_RE.match(line):
                out.append("---")
                i += 1
            elif line.startswith("|"):
                i = self._table(lines, i, out)
            elif _LIST_RE.match(line):
                i = self._list(lines, i, out)
            else:
                para.append(self.inline(line))
                i += 1
        flush()
        return out

    def _list(self, lines: list[str], i: int, out: list[str]) -> int:
        counters: list[tuple[str, int]] = []  # (marker kind, current number) per depth
        rendered: list[str] = []
        while i < len(lines) and (match := _LIST_RE.match(lines[i].strip())):
            markers, body = match.group(1), match.group(2)
            depth = len(markers)
            kind = markers[-1]
            counters = counters[:depth]
            while len(counters) < depth - 1:  # a skipped level still needs an indent
                counters.append((markers[len(counters)], 0))
            if len(counters) == depth and counters[-1][0] == kind:
                counters[-1] = (kind, counters[-1][1] + 1)
            else:
                counters = [*counters[: depth - 1], (kind, 1)]
            indent = sum(len(f"{n}. ") if k == "#" else 2 for k, n in counters[:-1])
            marker = f"{counters[-1][1]}. " if kind == "#" else "- "
            rendered.append(f"{' ' * indent}{marker}{self.inline(body)}")
            i += 1
        out.append("\n".join(rendered))
        return i

    def _table(self, lines: list[str], i: int, out: list[str]) -> int:
        rows: list[list[Cell]] = []
        while i < len(lines) and lines[i].strip().startswith("|"):
            row = lines[i].strip()
            i += 1
            # A cell may run over several lines; the row ends on a line ending with "|".
            while not row.endswith("|") and i < len(lines) and _is_paragraph_line(lines[i].strip()):
                row += "\n" + lines[i].strip()
                i += 1
            rows.append(self._cells(row))
        out.append(render_table(rows))
        return i

    def _cells(self, row: str) -> list[Cell]:
        cells: list[tuple[str, bool]] = []
        current: list[str] = []
        header = False
        started = False
        for token in _CELL_TOKEN_RE.findall(row):
            if token in ("|", "||"):
                if started:
                    cells.append(("".join(current), header))
                current, header, started = [], token == "||", True
            else:
                current.append(token)
        if "".join(current).strip():
            cells.append(("".join(current), header))
        return [Cell(" ".join(self.inline(t).split()), h) for t, h in cells]

    # -- inline ----------------------------------------------------------------------------

    def inline(self, text: str) -> str:
        kept: list[str] = []

        def keep(value: str) -> str:
            kept.append(value)
            return f"\x01{len(kept) - 1}\x02"

        text = text.replace("\\\\", keep("\n"))  # a forced line break
        text = _ESCAPE_RE.sub(lambda m: keep(m.group(1)), text)
        text = _MONO_RE.sub(lambda m: keep(m.group(1)), text)
        text = _LINK_RE.sub(lambda m: self._link(m, keep), text)
        text = _IMAGE_RE.sub(lambda m: keep(_file_name(m.group(1))), text)
        text = _URL_RE.sub(lambda m: keep(m.group(0)), text)
        text = _STYLE_MACRO_RE.sub("", text)
        text = _strip_marks(text)
        # Kept values may hold placeholders themselves (a link label with an escape).
        while _PROTECTED_RE.search(text):
            text = _PROTECTED_RE.sub(lambda m: kept[int(m.group(1))], text)
        return text

    def _link(self, match: re.Match[str], keep: Callable[[str], str]) -> str:
        inner = match.group(1)
        label, bar, target = inner.rpartition("|") if "|" in inner else ("", "", inner)
        if "|" in label:  # [label|target|tooltip]
            label, _, target = label.partition("|")
        label, target = _strip_marks(label.strip()), target.strip()
        if not bar and not _LINK_TARGET_RE.match(target):
            return match.group(0)  # plain brackets, e.g. "[x]" or "[WIP]"
        if target.startswith("~"):
            return keep(label or self._mention(target[1:]))
        if target.startswith("^"):
            name = target[1:]
            return keep(f"{label} ({name})" if label and label != name else name)
        if target.startswith("#"):
            return keep(label or target[1:])
        return keep(link(label, target) or label)

    def _mention(self, user: str) -> str:
        account = user[len("accountid:") :] if user.lower().startswith("accountid:") else None
        key = account if account is not None else user
        display = self._user_name(key) if self._user_name is not None and key else None
        if display:
            return f"@{display}"
        return "@user" if account is not None or not user else f"@{user}"


def _is_paragraph_line(line: str) -> bool:
    """False for blank lines and lines that start a block of their own."""
    return bool(line) and not (
        line.startswith("|")
        or any(
            r.match(line)
            for r in (_CODE_LINE_RE, _BLOCK_OPEN_RE, _HEADING_RE, _BQ_RE, _RULE_RE, _LIST_RE)
        )
    )


def _strip_marks(text: str) -> str:
    """Remove *bold*, _italic_, -strike-, +under+, ^sup^, ~sub~ and ??cite?? markers."""
    for pattern in _MARK_RES:
        text = pattern.sub(r"\1", text)
    return text


def _title(params: str | None) -> str | None:
    for param in (params or "").split("|"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "title":
            return value.strip()
    return None


def _file_name(target: str) -> str:
    if "://" in target:
        return unquote(basename(urlsplit(target).path)) or target
    return target.strip()
