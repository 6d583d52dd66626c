"""Fault class 6: synced content and model output plant no live link.

A page saying ``[Reset your VPN password](https://evil.example/x)``, an autolink
``<https://evil.example/auto>`` or a bare ``https://evil.example/bare`` is quoted by the
extractive answerer or echoed by the model; the Slack blocks and the Teams card show each as
plain text, while the bot's own citations to the wiki and Jira stay links.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from fakes.flow import SOURCES

from bot.answers import Answer, AnswerMode
from bot.extractive import ExtractiveAnswerer
from bot.slack.blocks import render_answer
from bot.teams.cards import answer_activity
from store.passages import Passage

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
PLANTED = (
    "To reset the VPN password use [Reset your VPN password](https://evil.example/x), "
    "or <https://evil.example/auto>, or https://evil.example/bare, or www.evil.example/w."
)
EVIL = re.compile(r"(https?://|www\.)?evil\.example")


def _extractive_text() -> str:
    passage = Passage(
        artifact_id="confluence:101",
        title="VPN setup",
        url="https://wiki.example/pages/101",
        heading="Reset",
        text=PLANTED,
        chunk_ids=(1,),
        score=1.0,
        content_hash="h",
        version="1",
    )
    draft = ExtractiveAnswerer().answer("How do I reset the VPN password?", [passage])
    assert "evil.example/x" in draft.text  # the planted link really reaches the answer
    return draft.text


def _answer(mode: AnswerMode) -> Answer:
    text = _extractive_text() if mode == "extractive" else f"Here is how [1]. {PLANTED}"
    return Answer(
        question="How do I reset the VPN password?",
        standalone_question=None,
        text=text,
        sources=SOURCES,
        mode=mode,
        cached=False,
        unit_id="u-1",
    )


def _slack_links(mrkdwn: str) -> list[str]:
    return re.findall(r"<([^<>|]+)(?:\|[^<>]*)?>", mrkdwn)


@pytest.mark.parametrize("mode", ["extractive", "claude"])
def test_slack_shows_planted_links_as_plain_text_and_keeps_citations(mode: AnswerMode) -> None:
    blocks, fallback = render_answer(_answer(mode), now=NOW)
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    context = [e["text"] for b in blocks if b["type"] == "context" for e in b["elements"]]
    for mrkdwn in [*texts, fallback]:
        assert not any("evil" in target for target in _slack_links(mrkdwn))
        assert not EVIL.search(mrkdwn)  # no URL or domain a linkifier would pick up
        assert "Reset your VPN password" in mrkdwn and "evil" in mrkdwn  # still readable
    citations = [t for text in context for t in _slack_links(text)]
    assert citations == ["https://wiki.example/pages/101", "https://jira.example/browse/OPS-7"]
    assert "<https://wiki.example/pages/101|[1] VPN setup>" in fallback


@pytest.mark.parametrize("mode", ["extractive", "claude"])
def test_teams_card_shows_planted_links_as_plain_text_and_keeps_citations(
    mode: AnswerMode,
) -> None:
    activity = answer_activity(_answer(mode), now=NOW)
    card = activity["attachments"][0]["content"]
    shown = json.dumps(card, ensure_ascii=False)
    assert not re.search(r"\]\(\s*<?(https?://)?evil", shown)
    assert not EVIL.search(shown)
    assert "Reset your VPN password" in shown and "evil" in shown
    links = re.findall(r"\]\(([^)\s]+)\)", shown)
    assert links == ["https://wiki.example/pages/101", "https://jira.example/browse/OPS-7"]
    assert not EVIL.search(activity["summary"])


def test_mentions_stay_escaped_alongside_unlinked_text() -> None:
    answer = _answer("claude")
    answer = Answer(**{**answer.__dict__, "text": "<!channel> <@U1> <https://evil.example/a>"})
    blocks, _ = render_answer(answer, now=NOW)
    section = blocks[0]["text"]["text"]
    assert section.startswith("&lt;!channel&gt; &lt;@U1&gt; ")
    assert _slack_links(section) == []
