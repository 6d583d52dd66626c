"""Markdown -> mrkdwn, Block Kit limits, button values."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fakes.flow import SOURCES

from bot.answers import Answer, SourceRef
from bot.platform import ActionValue
from bot.slack.blocks import (
    MESSAGE_BLOCK_LIMIT,
    SECTION_LIMIT,
    render_answer,
    replace_actions_with_note,
    slack_to_plain,
    split_sections,
    to_mrkdwn,
)


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and __bold__", "*bold* and *bold*"),
        ("*italic* and _italic_", "_italic_ and _italic_"),
        ("~~gone~~", "~gone~"),
        (
            "see [the guide](https://x.example/a?b=1&c=2) [1]",
            "see the guide (https\u2236//x\u2024example/a?b=1&amp;c=2) [1]",
        ),
        ("[evil](javascript:alert(1)) text", "evil text"),
        ("# Heading **one**", "*Heading one*"),
        ("- item\n* other", "• item\n• other"),
        (
            "a < b & c > d <!channel> <@U123>",
            "a &lt; b &amp; c &gt; d &lt;!channel&gt; &lt;@U123&gt;",
        ),
        ("use `<tag> **x**` here", "use `&lt;tag&gt; **x**` here"),
        ("```python\nif a < b:\n    **x**\n```", "```\nif a &lt; b:\n    **x**\n```"),
        ("line<br>next <b>bold</b>", "line next bold"),
        ("auto <https://x.example/p>", "auto https\u2236//x\u2024example/p"),
        ("> quoted [2]", ">quoted [2]"),
        ("```\nunterminated", "```\nunterminated\n```"),
    ],
)
def test_markdown_to_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


def test_split_keeps_sections_under_the_limit_and_code_blocks_closed() -> None:
    text = to_mrkdwn("intro\n\n```\n" + "x = 1\n" * 1500 + "```\n" + "word " * 1500)
    parts = split_sections(text)
    assert len(parts) > 3
    for part in parts:
        assert len(part) <= SECTION_LIMIT
        assert part.count("```") % 2 == 0


def _answer(text: str, **changes: object) -> Answer:
    fields: dict[str, object] = dict(
        question="q?",
        standalone_question="the question?",
        text=text,
        sources=SOURCES,
        mode="claude",
        cached=False,
        unit_id="u-1",
    )
    fields.update(changes)
    return Answer(**fields)  # type: ignore[arg-type]


def test_long_answers_fit_slacks_block_limits() -> None:
    blocks, fallback = render_answer(_answer("paragraph of text. " * 20000))
    assert len(blocks) <= MESSAGE_BLOCK_LIMIT
    assert all(len(b["text"]["text"]) <= SECTION_LIMIT for b in blocks if b["type"] == "section")
    assert "too long for one Slack message" in json.dumps(blocks)
    assert len(fallback) < 5000 and "https://wiki.example/pages/101" in fallback


def test_cached_answer_says_how_old_its_sources_are() -> None:
    now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    answer = _answer("x [1]", cached=True, sources_checked_at=now - timedelta(minutes=7))
    blocks, _ = render_answer(answer, now=now)
    notes = [e["text"] for b in blocks if b["type"] == "context" for e in b["elements"]]
    assert "Answered from cache · sources checked 7 minutes ago" in notes


def test_extractive_answers_are_labelled_and_values_carry_the_question() -> None:
    blocks, _ = render_answer(_answer("quoted text", mode="extractive"))
    assert "without an AI summary" in json.dumps(blocks)
    value = blocks[-1]["elements"][0]["value"]
    assert ActionValue.decode(value) == ActionValue("u-1", "the question?")


def test_many_sources_stay_within_context_limits() -> None:
    sources = tuple(
        SourceRef(n, f"confluence:{n}", "A long title " * 10, f"https://wiki.example/{n}")
        for n in range(1, 80)
    )
    blocks, _ = render_answer(_answer("x", sources=sources))
    context = next(b for b in blocks if b["type"] == "context")
    assert len(context["elements"]) <= 10
    assert all(len(e["text"]) <= SECTION_LIMIT for e in context["elements"])


def test_action_value_fits_slack_and_round_trips() -> None:
    value = ActionValue("u-9", "ü" * 5000 + '"\\').encode()
    assert len(value) <= 2000
    decoded = ActionValue.decode(value)
    assert decoded is not None and decoded.unit_id == "u-9" and decoded.question.startswith("ü")
    assert ActionValue.decode("clicked") is None
    assert ActionValue.decode('{"q": 3}') is None


def test_slack_text_to_plain_question() -> None:
    text = "<@UBOT> why is <#C1|ops> on <https://x.example|the page> &amp; <@U2>? <!here>"
    assert slack_to_plain(text, bot_user_id="UBOT") == (
        "why is #ops on the page (https://x.example) & @someone?"
    )


def test_an_answer_that_cannot_be_rated_has_refresh_but_no_thumbs() -> None:

    answer = Answer(
        question="q",
        standalone_question="q",
        text="",
        sources=(),
        mode="unavailable",
        cached=False,
        unit_id=None,
    )
    blocks, _ = render_answer(answer)
    assert [b["type"] for b in blocks][-1] == "actions"
    assert all(b["type"] != "context_actions" for b in blocks)
    assert [e["action_id"] for e in blocks[-1]["elements"]] == ["kb_refresh"]


def test_refreshing_note_replaces_both_the_thumbs_and_the_buttons() -> None:

    answer = Answer(
        question="q",
        standalone_question="q",
        text="An answer [1].",
        sources=(),
        mode="claude",
        cached=False,
        unit_id="u1",
    )
    blocks, _ = render_answer(answer)
    assert {"context_actions", "actions"} <= {b["type"] for b in blocks}
    kept = replace_actions_with_note(blocks, "Refreshing…")
    assert not {"context_actions", "actions"} & {b["type"] for b in kept}
    assert kept[-1]["elements"][0]["text"] == "Refreshing…"
