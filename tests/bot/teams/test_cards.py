"""Adaptive Card rendering, reading activities, and the TEAMS_* settings."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from fakes.flow import SOURCES
from fakes.teams import BOT, CHANNEL, channel_message, personal_message

from bot.answers import Answer
from bot.teams.activity import mentions_of, parse_activity, question_text
from bot.teams.cards import answer_activity, markdown_blocks
from core.errors import SettingsError
from kb.settings import TEAMS_OPENID_METADATA_URL, load_settings
from store.scope import Scope

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def _answer(text: str = "See [1].", **changes: object) -> Answer:
    fields: dict[str, object] = {
        "question": "q?",
        "standalone_question": "the standalone q?",
        "text": text,
        "sources": SOURCES,
        "mode": "claude",
        "cached": False,
        "unit_id": "u1",
    }
    fields.update(changes)
    return Answer(**fields)  # type: ignore[arg-type]


def test_markdown_is_reduced_to_what_a_textblock_renders() -> None:
    blocks = markdown_blocks(
        "## Steps\nRun `vpn up` [1], see [docs](https://x.example/a_(b)) or "
        "[evil](javascript:alert(1)).<br>Done <b>now</b>.\n```bash\nvpn up --force\n```\nAfter."
    )
    assert blocks[0]["text"] == (
        "**Steps**\nRun `vpn up` [1], see [docs](https://x.example/a_%28b%29) or evil. Done now."
    )
    assert blocks[1] == {
        "type": "TextBlock",
        "text": "vpn up --force",
        "wrap": True,
        "fontType": "Monospace",
    }
    assert blocks[2]["text"] == "After."


def test_answer_card_labels_cache_and_modes() -> None:
    cached = answer_activity(
        _answer(cached=True, sources_checked_at=NOW - timedelta(minutes=5)), now=NOW
    )
    card = cached["attachments"][0]["content"]
    assert card["body"][-1]["text"] == "Answered from cache · sources checked 5 minutes ago"
    data = json.loads(card["actions"][0]["data"]["kb"])
    assert data == {"u": "u1", "q": "the standalone q?"}  # Refresh needs no thread history
    down = answer_activity(_answer("", mode="unavailable", unit_id=None), now=NOW)
    card = down["attachments"][0]["content"]
    assert card["body"][0]["text"].startswith("⚠️ I couldn't reach Claude")
    assert [a["verb"] for a in card["actions"]] == ["kb_refresh"]  # no votes on a failure
    extractive = answer_activity(_answer(mode="extractive"), now=NOW)
    assert "without an AI summary" in json.dumps(extractive, ensure_ascii=False)


def test_only_answers_with_a_unit_to_rate_ask_for_teams_thumbs() -> None:
    assert answer_activity(_answer(), now=NOW)["channelData"] == {"feedbackLoopEnabled": True}
    for unratable in (
        _answer(unit_id=None),  # not cached: no unit a vote could land on
        _answer("", mode="unavailable", unit_id="u1"),
    ):
        activity = answer_activity(unratable, now=NOW)
        assert "channelData" not in activity
        assert [a["verb"] for a in activity["attachments"][0]["content"]["actions"]] == [
            "kb_refresh"
        ]


def test_a_rated_answer_still_plants_no_link_from_content() -> None:
    planted = _answer(
        "Reset it at [Reset your VPN password](https://evil.example/reset) or "
        "<https://evil.example/auto> [1]."
    )
    activity = answer_activity(planted, now=NOW)
    assert activity["channelData"] == {"feedbackLoopEnabled": True}
    card = activity["attachments"][0]["content"]
    answer_text = card["body"][0]["text"]
    assert "](https://evil.example" not in json.dumps(activity)
    assert "Reset your VPN password" in answer_text
    # The citations the bot builds stay live.
    assert "[VPN setup](https://wiki.example/pages/101)" in json.dumps(card)


def test_a_huge_answer_still_fits_one_teams_message() -> None:
    huge = "\n\n".join(f"Paragraph {n} " + "word " * 200 for n in range(60))
    activity = answer_activity(_answer(huge), now=NOW)
    assert len(json.dumps(activity).encode()) < 28_000
    texts = [b["text"] for b in activity["attachments"][0]["content"]["body"]]
    assert any("too long for one Teams message" in t for t in texts)


def test_question_text_strips_only_the_bots_mention() -> None:
    activity = replace(
        parse_activity(channel_message("https://smba.example/", "ignored")),
        text="<p><at>kb</at>&nbsp;what does <at>Bob Smith</at> mean by &lt;x&gt;?</p>",
    )
    mentions = mentions_of(activity, frozenset({BOT}))
    assert len(mentions) == 1
    assert question_text(activity, mentions) == "what does @Bob Smith mean by <x>?"


def test_threads_and_chats_are_told_apart() -> None:
    post = parse_activity(channel_message("https://s/", "q", id="100"))
    assert (post.base_conversation, post.thread, post.is_thread_reply) == (CHANNEL, "100", False)
    reply = parse_activity(channel_message("https://s/", "q", id="101", root="100"))
    assert reply.thread == "100" and reply.is_thread_reply
    assert reply.reply_conversation == f"{CHANNEL};messageid=100"
    chat = parse_activity(personal_message("https://s/", "q"))
    assert chat.thread == chat.base_conversation == chat.reply_conversation
    with pytest.raises(ValueError):
        parse_activity({"type": "message"})


TEAMS = {
    "TEAMS_APP_ID": "11111111-2222-3333-4444-555555555555",
    "TEAMS_APP_PASSWORD": "secret-value",
    "TEAMS_TENANT_ID": "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE",
}


def test_teams_settings() -> None:
    assert load_settings({}).teams is None
    teams = load_settings(TEAMS).teams
    assert teams is not None
    assert teams.tenant_id == "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    assert teams.openid_metadata_url == TEAMS_OPENID_METADATA_URL
    assert teams.client_token_url == (
        "https://login.microsoftonline.com/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee/oauth2/v2.0/token"
    )
    assert "secret-value" not in repr(teams)
    with pytest.raises(SettingsError, match="TEAMS_TENANT_ID: is not set"):
        load_settings({k: v for k, v in TEAMS.items() if k != "TEAMS_TENANT_ID"})
    with pytest.raises(SettingsError, match="TEAMS_TENANT_ID: should be a GUID"):
        load_settings({**TEAMS, "TEAMS_TENANT_ID": "common"})
    with pytest.raises(SettingsError, match="TEAMS_TOKEN_URL"):
        load_settings({**TEAMS, "TEAMS_TOKEN_URL": "not a url"})


def test_channel_scopes_take_teams_conversation_ids() -> None:
    settings = load_settings(
        {"KB_CHANNEL_SCOPES": f"{CHANNEL}=confluence:ENG;a:1chat=jira:OPS;C0123=*"}
    )
    assert settings.scope_for(CHANNEL) == Scope.parse("confluence:ENG")
    assert settings.scope_for("a:1chat") == Scope.parse("jira:OPS")
    assert settings.scope_for("C0123").is_everything
