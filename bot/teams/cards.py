"""Adaptive Cards for Teams: answers, errors and "source updated" notices.

Cards are version 1.5 (what Teams renders for bots) with an ``Action.Execute`` Refresh
button: a click arrives as an ``adaptiveCard/action`` invoke that the bot answers in the same
HTTP response, so the person who clicked gets a private reply instead of a message everyone in
the channel sees. Votes use Teams' own thumbs, not card buttons: an answer that can be rated
is sent with ``channelData.feedbackLoopEnabled`` and a click arrives as a
``message/submitAction`` invoke (:mod:`bot.teams.feedback`). Cards posted before carry
Helpful / Not helpful buttons, which the handler still honours.

Teams renders a small Markdown subset in a TextBlock (bold, italic, lists, links) and no HTML
or code blocks, so answers are reduced to that subset: headings become bold lines, code
fences become monospace blocks, the answer's own links become plain text (only the source
links the bot builds are live), and tags are dropped.
An ``<at>`` tag in a card pings nobody without a matching mention entity, which we never add.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from bot import markdown as md
from bot.answers import UNAVAILABLE_TEXT, Answer, SourceRef
from bot.platform import ActionValue, SourceNotice
from bot.wording import (
    UNAVAILABLE_WARNING,
    answer_buttons,
    answer_notes,
    notice_text,
    warns_unreachable,
)

Element = dict[str, Any]
Activity = dict[str, Any]

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_VERSION = "1.5"
# Teams refuses messages over about 28 KB; leave room for the JSON around the text.
CARD_TEXT_LIMIT = 18_000
FALLBACK_TEXT_LIMIT = 3_500
SOURCES_SHOWN = 15
DATA_KEY = "kb"

TRUNCATED_NOTE = "…the answer was too long for one Teams message and was cut here."

# bot.wording writes emoji as Slack's shortcodes; Teams would show them raw.
_EMOJI = {
    ":thumbsup:": "👍",
    ":thumbsdown:": "👎",
    ":arrows_counterclockwise:": "🔄",
    ":wastebasket:": "🗑️",
    ":rotating_light:": "🚨",
    ":white_check_mark:": "✅",
    ":warning:": "⚠️",
    ":information_source:": "\N{INFORMATION SOURCE}\ufe0f",
    ":mag:": "🔍",
}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def emojify(text: str) -> str:
    for code, emoji in _EMOJI.items():
        text = text.replace(code, emoji)
    return text


def link(url: str, label: str) -> str:
    """``[label](url)`` with what would end the label or the URL early neutralised."""
    safe_label = " ".join(label.split()).replace("[", "(").replace("]", ")") or url
    safe_url = url.strip().replace(" ", "%20").replace("(", "%28").replace(")", "%29")
    if not md.SAFE_URL.match(safe_url):
        return safe_label
    return f"[{safe_label}]({safe_url})"


class TeamsMarkup:
    """:class:`bot.platform.Markup` for a Teams TextBlock."""

    def text(self, value: str) -> str:
        return _CONTROL.sub("", value)

    def bold(self, value: str) -> str:
        return f"**{_CONTROL.sub('', value).strip()}**"

    def link(self, url: str, label: str) -> str:
        return link(url, label)


def _text_block(text: str, **props: Any) -> Element:
    return {"type": "TextBlock", "text": text, "wrap": True, **props}


def markdown_blocks(markdown: str) -> list[Element]:
    """Answer text as TextBlocks: prose keeps Teams' Markdown subset, code goes monospace."""
    blocks: list[Element] = []
    prose: list[str] = []
    code: list[str] = []
    in_fence = False

    def flush_prose() -> None:
        text = "\n".join(prose).strip("\n")
        if text.strip():
            blocks.append(_text_block(text))
        prose.clear()

    def flush_code() -> None:
        if any(line.strip() for line in code):
            blocks.append(_text_block("\n".join(code), fontType="Monospace"))
        code.clear()

    for line in _CONTROL.sub("", markdown).replace("\r\n", "\n").split("\n"):
        if md.FENCE.match(line):
            if in_fence:
                flush_code()
            else:
                flush_prose()
            in_fence = not in_fence
            continue
        if in_fence:
            code.append(line)
        else:
            prose.append(_convert_line(line))
    flush_code()
    flush_prose()
    return blocks


def _convert_line(line: str) -> str:
    heading = md.HEADING.match(line)
    if heading:
        return f"**{heading[1].replace('**', '')}**" if heading[1] else ""
    line = md.LINK.sub(lambda m: link(m[2], m[1]), line)
    line = md.HTML_BREAK.sub(" ", line)
    return md.HTML_TAG.sub("", line)


def _clip_blocks(blocks: list[Element], limit: int) -> list[Element]:
    kept: list[Element] = []
    used = 0
    for block in blocks:
        text = str(block["text"])
        if used + len(text) > limit:
            room = limit - used
            if room > 200:
                kept.append({**block, "text": text[:room] + "…"})
            kept.append(_text_block(TRUNCATED_NOTE, isSubtle=True, size="Small"))
            break
        kept.append(block)
        used += len(text)
    return kept


def _execute(verb: str, title: str, value: str) -> Element:
    return {"type": "Action.Execute", "title": title, "verb": verb, "data": {DATA_KEY: value}}


def answer_actions(unit_id: str | None, question: str) -> list[Element]:
    """The card's buttons: Refresh only (votes are Teams' own thumbs, see the module doc)."""
    value = ActionValue(unit_id, question).encode()
    return [_execute(verb, emojify(label), value) for verb, label in answer_buttons(votes=False)]


def _card(body: list[Element], actions: list[Element], fallback: str) -> Element:
    return {
        "contentType": CARD_CONTENT_TYPE,
        "content": {
            "type": "AdaptiveCard",
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "version": CARD_VERSION,
            "msteams": {"width": "Full"},
            "fallbackText": fallback,
            "body": body,
            "actions": actions,
        },
    }


def message(card: Element, summary: str, *, feedback: bool = False) -> Activity:
    """A message activity carrying one card; ``summary`` is what notifications and clients
    that cannot draw cards show. ``feedback``: Teams draws its thumbs under it."""
    activity: Activity = {
        "type": "message",
        "summary": _clip(summary, 200),
        "attachments": [card],
    }
    if feedback:
        # Only this flag: Teams refuses a message that also sets channelData.feedbackLoop.
        activity["channelData"] = {"feedbackLoopEnabled": True}
    return activity


def rated(answer: Answer) -> bool:
    """Whether an answer gets Teams' thumbs: it must be a unit a vote can be recorded on."""
    return bool(answer.unit_id) and answer.mode != "unavailable"


def sources_blocks(sources: tuple[SourceRef, ...]) -> list[Element]:
    lines = [f"[{s.n}] {link(s.url, s.title[:200])}" for s in sources[:SOURCES_SHOWN]]
    if len(sources) > SOURCES_SHOWN:
        lines.append(f"…and {len(sources) - SOURCES_SHOWN} more")
    # Two trailing spaces are a Markdown line break: one source per line, one block.
    return [
        _text_block("**Sources**", size="Small", spacing="Medium", separator=True),
        _text_block("  \n".join(lines), size="Small", spacing="Small"),
    ]


def plain_text(answer: Answer) -> str:
    """The answer with its source links, for clients that cannot draw the card."""
    parts = [UNAVAILABLE_TEXT] if warns_unreachable(answer) else []
    if answer.text.strip():
        body = answer.text.strip()
        parts.append(body if len(body) <= FALLBACK_TEXT_LIMIT else body[:FALLBACK_TEXT_LIMIT] + "…")
    if answer.sources:
        parts.append(
            "Sources:\n" + "\n".join(f"[{s.n}] {s.title}: {s.url}" for s in answer.sources)
        )
    return "\n\n".join(parts) or "(no answer)"


def answer_activity(answer: Answer, *, now: datetime | None = None) -> Activity:
    now = now or datetime.now(UTC)
    # The answer's own links become plain text, card and fallback alike; only the source
    # links built below are live (docs/ARCHITECTURE.md, "Security stance").
    answer = replace(answer, text=md.unlink(answer.text))
    warn = warns_unreachable(answer)
    head = [_text_block(emojify(UNAVAILABLE_WARNING), color="Warning")] if warn else []
    notes = [emojify(note) for note in answer_notes(answer, now)]
    body = head + _clip_blocks(markdown_blocks(answer.text), CARD_TEXT_LIMIT)
    if answer.sources:
        body += sources_blocks(answer.sources)
    body += [_text_block(note, size="Small", isSubtle=True) for note in notes]
    actions = answer_actions(answer.unit_id, answered_question(answer))
    fallback = plain_text(answer)
    return message(_card(body, actions, fallback), fallback, feedback=rated(answer))


def answered_question(answer: Answer) -> str:
    """The question a Refresh regenerates: the standalone one when the flow condensed it."""
    return answer.standalone_question or answer.question


def error_activity(text: str, question: str | None) -> Activity:
    actions = answer_actions(None, question) if question else []
    card = _card([_text_block(f"⚠️ {text}", color="Warning")], actions, text)
    return message(card, text)


def notice_activity(notice: SourceNotice) -> Activity:
    text = emojify(notice_text(notice, TeamsMarkup()))
    fallback = text if not notice.url else f"{text}\n{notice.url}"
    refresh = answer_actions(notice.unit_id, notice.question)
    card = _card([_text_block(text)], refresh, fallback)
    return message(card, fallback)


def text_activity(markdown: str) -> Activity:
    """A plain Markdown message (ops alerts, sync results): no card, no buttons."""
    return {"type": "message", "textFormat": "markdown", "text": emojify(markdown)}


def invoke_message(text: str) -> dict[str, Any]:
    """An ``adaptiveCard/action`` answer that shows ``text`` to the person who clicked."""
    return {"statusCode": 200, "type": "application/vnd.microsoft.activity.message", "value": text}


def action_value(data: Any) -> ActionValue | None:
    """The :class:`ActionValue` carried by a button's ``data``."""
    if not isinstance(data, dict):
        return None
    raw = data.get(DATA_KEY)
    return ActionValue.decode(raw if isinstance(raw, str) else None)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
