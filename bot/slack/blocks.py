"""Block Kit rendering and Markdown -> Slack mrkdwn conversion.

Slack's limits shape this module: a section's text holds at most 3000 characters, a message
at most 50 blocks, a context block at most 10 elements, a button value 2000 characters. Text is
escaped (``&``, ``<``, ``>``) so nothing an answer contains can ping ``<!channel>`` or forge a
link; only the links we build ourselves are live.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from bot import markdown as md
from bot.answers import UNAVAILABLE_TEXT, Answer, SourceRef
from bot.platform import ActionValue, SourceNotice
from bot.wording import (
    FEEDBACK_LABELS,
    UNAVAILABLE_WARNING,
    answer_buttons,
    answer_notes,
    notice_text,
    warns_unreachable,
)

Block = dict[str, Any]
ANSWER_ACTIONS = "kb_answer_actions"
ANSWER_FEEDBACK = "kb_answer_feedback"
# Slack's native thumbs under an answer; the pressed button's value is ``up:<unit>`` or
# ``down:<unit>``. Answers posted before them carry kb_helpful / kb_not_helpful buttons, which
# still work.
ACTION_FEEDBACK = "kb_feedback"
FEEDBACK_UP, FEEDBACK_DOWN = "up:", "down:"

SECTION_LIMIT = 3000
MESSAGE_BLOCK_LIMIT = 50
CONTEXT_ELEMENT_LIMIT = 10
FALLBACK_TEXT_LIMIT = 3500  # notifications show little; the blocks carry the full answer

TRUNCATED_NOTE = "_…the answer was too long for one Slack message and was cut here._"

_PLACEHOLDER = re.compile(r"\x00(\d+)\x00")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_QUOTE = re.compile(r"^\s{0,3}>\s?(.*)$")
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]+?)(?<=[^\s*])\*(?![\w*])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")


def escape(text: str) -> str:
    """Slack's three control characters; everything else is literal."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    """``<url|label>``, with what would break the link syntax neutralised."""
    safe_url = escape(url).replace("|", "%7C").replace(" ", "%20")
    safe_label = escape(" ".join(label.split())).replace("|", "¦")
    return f"<{safe_url}|{safe_label}>" if safe_label else f"<{safe_url}>"


class SlackMarkup:
    """:class:`bot.platform.Markup` for Slack mrkdwn."""

    def text(self, value: str) -> str:
        return escape(value)

    def bold(self, value: str) -> str:
        return f"*{escape(value)}*"

    def link(self, url: str, label: str) -> str:
        return link(url, label)


def to_mrkdwn(markdown: str) -> str:
    """Markdown-ish answer text to Slack mrkdwn, keeping ``[n]`` markers and code fences; the
    text's own links become plain text (only :func:`link` makes live ones)."""
    out: list[str] = []
    in_fence = False
    text = md.unlink(markdown.replace("\x00", "").replace("\r\n", "\n"))
    for line in text.split("\n"):
        if md.FENCE.match(line):
            in_fence = not in_fence
            out.append("```")  # Slack ignores a language tag; drop it rather than show it
            continue
        if in_fence:
            out.append(escape(line))
            continue
        out.append(_convert_line(line))
    if in_fence:
        out.append("```")
    return "\n".join(out).strip("\n")


def _convert_line(line: str) -> str:
    if _RULE.match(line):
        return "──────────"
    heading = md.HEADING.match(line)
    if heading:
        inner = _BOLD.sub(r"\2", heading[1])
        return f"*{_inline(inner)}*" if inner else ""
    quote = _QUOTE.match(line)
    if quote:
        return f">{_inline(quote[1])}"
    bullet = _BULLET.match(line)
    if bullet:
        return f"{bullet[1]}• {_inline(bullet[2])}"
    return _inline(line)


def _inline(text: str) -> str:
    kept: list[str] = []

    def keep(value: str) -> str:
        kept.append(value)
        return f"\x00{len(kept) - 1}\x00"

    def code(match: re.Match[str]) -> str:
        return keep(f"`{escape(match[2].replace('`', ''))}`")

    # Links were made plain text by md.unlink in to_mrkdwn: none in an answer is live.
    text = _CODE_SPAN.sub(code, text)
    text = md.HTML_BREAK.sub(" ", text)
    text = md.HTML_TAG.sub("", text)
    text = escape(text)
    text = _BOLD.sub(lambda m: f"\x01{m[2]}\x01", text)
    text = _ITALIC.sub(r"_\1_", text)
    text = _STRIKE.sub(r"~\1~", text)
    text = text.replace("\x01", "*")
    return _PLACEHOLDER.sub(lambda m: kept[int(m[1])], text)


def split_sections(text: str, limit: int = SECTION_LIMIT - 100) -> list[str]:
    """Cut mrkdwn into pieces under ``limit``, at paragraph or line breaks where possible; a
    code block cut in two is closed and reopened so both halves render as code."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    in_fence = False

    def flush() -> None:
        nonlocal current, size
        body = "\n".join(current).strip("\n")
        if in_fence:
            body += "\n```"
        if body.strip() and body.strip() != "```\n```":
            chunks.append(body)
        current = ["```"] if in_fence else []
        size = 4 if in_fence else 0

    for line in text.split("\n"):
        for piece in _hard_split(line, limit - 10):
            if size + len(piece) + 1 > limit - 4:
                flush()
            current.append(piece)
            size += len(piece) + 1
            if piece.strip() == "```":
                in_fence = not in_fence
    in_fence = False
    flush()
    return chunks


def _hard_split(line: str, size: int) -> list[str]:
    """A line longer than a section, cut at spaces where there are any."""
    pieces: list[str] = []
    while len(line) > size:
        cut = line.rfind(" ", size // 2, size)
        cut = cut if cut > 0 else size
        pieces.append(line[:cut])
        line = line[cut:].lstrip(" ")
    pieces.append(line)
    return pieces


def sources_line(sources: tuple[SourceRef, ...]) -> str:
    return " · ".join(link(s.url, f"[{s.n}] {s.title}") for s in sources)


def _context(texts: list[str]) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": t} for t in texts]}


def _sources_context(sources: tuple[SourceRef, ...]) -> Block:
    elements: list[str] = []
    current = "Sources:"
    for i, source in enumerate(sources):
        piece = " " + link(source.url, f"[{source.n}] {source.title[:200]}")
        if current and current != "Sources:":
            piece = " ·" + piece
        if len(current) + len(piece) > SECTION_LIMIT:
            if len(elements) == CONTEXT_ELEMENT_LIMIT - 1:
                current += f" …and {len(sources) - i} more"
                break
            elements.append(current)
            current, piece = "", piece.removeprefix(" ·")
        current += piece
    elements.append(current.strip())
    return _context(elements)


def _button(action_id: str, label: str, value: str) -> Block:
    return {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": label, "emoji": True},
        "value": value,
    }


def _actions(block_id: str, unit_id: str | None, question: str, *, votes: bool = True) -> Block:
    value = ActionValue(unit_id, question).encode()
    buttons = answer_buttons(votes=votes and bool(unit_id))
    elements = [_button(action, label, value) for action, label in buttons]
    return {"type": "actions", "block_id": block_id, "elements": elements}


def feedback_block(unit_id: str) -> Block:
    """Slack's native thumbs (``feedback_buttons`` in a ``context_actions`` block)."""
    positive, negative = FEEDBACK_LABELS
    return {
        "type": "context_actions",
        "block_id": ANSWER_FEEDBACK,
        "elements": [
            {
                "type": "feedback_buttons",
                "action_id": ACTION_FEEDBACK,
                "positive_button": {
                    "text": {"type": "plain_text", "text": positive},
                    "value": FEEDBACK_UP + unit_id,
                },
                "negative_button": {
                    "text": {"type": "plain_text", "text": negative},
                    "value": FEEDBACK_DOWN + unit_id,
                },
            }
        ],
    }


def answer_controls(unit_id: str | None, question: str, *, votes: bool) -> list[Block]:
    """Under an answer: the native thumbs (when it can be rated) and a Refresh button.
    ``context_actions`` takes only feedback and icon buttons, so Refresh, a labelled button,
    has its own ``actions`` block right below."""
    refresh = _actions(ANSWER_ACTIONS, unit_id, question, votes=False)
    if votes and unit_id:
        return [feedback_block(unit_id), refresh]
    return [refresh]


def read_feedback(value: object) -> tuple[str, bool] | None:
    """(unit id, helpful?) from a feedback button's value, or None if it is not ours."""
    if not isinstance(value, str):
        return None
    for prefix, helpful in ((FEEDBACK_UP, True), (FEEDBACK_DOWN, False)):
        if value.startswith(prefix) and len(value) > len(prefix):
            return value[len(prefix) :], helpful
    return None


def render_answer(answer: Answer, *, now: datetime | None = None) -> tuple[list[Block], str]:
    """Blocks and the plain-text fallback (answer plus source links) for one answer."""
    now = now or datetime.now(UTC)
    body = to_mrkdwn(answer.text)
    unavailable = answer.mode == "unavailable"
    head = [_section(escape(UNAVAILABLE_WARNING))] if warns_unreachable(answer) else []
    notes = answer_notes(answer, now)
    tail: list[Block] = []
    if answer.sources:
        tail.append(_sources_context(answer.sources))
    if notes:
        tail.append(_context(notes))
    question = answer.standalone_question or answer.question
    tail.extend(answer_controls(answer.unit_id, question, votes=not unavailable))

    room = MESSAGE_BLOCK_LIMIT - len(head) - len(tail)
    sections = split_sections(body) if body.strip() else []
    if len(sections) > room:
        sections = [*sections[: room - 1], TRUNCATED_NOTE]
    blocks = head + [_section(s) for s in sections] + tail

    fallback = UNAVAILABLE_TEXT if warns_unreachable(answer) else ""
    if body:
        clipped = body if len(body) <= FALLBACK_TEXT_LIMIT else body[:FALLBACK_TEXT_LIMIT] + "…"
        fallback = f"{fallback}\n\n{clipped}".strip()
    if answer.sources:
        fallback += "\n\nSources: " + sources_line(answer.sources)
    return blocks, fallback or "(no answer)"


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def render_error(text: str, question: str | None) -> tuple[list[Block], str]:
    blocks: list[Block] = [_section(f":warning: {escape(text)}")]
    if question:
        blocks.append(_actions(ANSWER_ACTIONS, None, question, votes=False))
    return blocks, text


def render_notice(notice: SourceNotice) -> tuple[list[Block], str]:
    text = notice_text(notice, SlackMarkup())
    actions = _actions("kb_notice_actions", notice.unit_id, notice.question, votes=False)
    return [_section(text), actions], text


def replace_actions_with_note(blocks: list[Block], note: str) -> list[Block]:
    """The message's blocks with its buttons swapped for a context line (e.g. Refreshing…)."""
    kept = [b for b in blocks if b.get("type") not in ("actions", "context_actions")]
    return [*kept, _context([note])][:MESSAGE_BLOCK_LIMIT]


_SLACK_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")


def slack_to_plain(text: str, *, bot_user_id: str | None) -> str:
    """A Slack message's text as plain words for the answer flow: the bot's own mention
    removed, other mentions, channels and links reduced to readable text, entities decoded."""

    def replace(match: re.Match[str]) -> str:
        target, label = match[1], match[2]
        if target.startswith("@"):
            if bot_user_id and target[1:] == bot_user_id:
                return ""
            return f"@{label}" if label else "@someone"
        if target.startswith("#"):
            return f"#{label}" if label else "#channel"
        if target.startswith("!"):
            return ""
        return f"{label} ({target})" if label and label != target else target

    plain = _SLACK_LINK.sub(replace, text)
    plain = plain.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return " ".join(plain.split())
