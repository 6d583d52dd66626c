"""The admin part of the App Home through the real Bolt app, opened with Slack's own
``app_home_opened`` fixture: 7-day answer and cache figures, the Helpful ratio, the least
helpful answers with links to their threads (only links the bot built), and Slack's view
limits at any size."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.flow import FakeFlow
from fakes.slack_api import RunningBot, new_trigger_id, reset_bot_tables, running_bot

from bot import bot_state
from store import answer_stats
from store.answer_stats import Served
from store.db import Database

AI_APPS = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "slack" / "ai_apps"
if not AI_APPS.is_dir():
    pytest.skip(f"shared Slack fixtures not found at {AI_APPS}", allow_module_level=True)

OPENED = json.loads((AI_APPS / "app_home_opened.json").read_text())
THUMBS = json.loads((AI_APPS / "block_actions_feedback_buttons.json").read_text())
ADMIN = OPENED["event"]["user"]
BOT = OPENED["authed_users"][0]
TEAM_URL = "https://kb-test.slack.com/"  # what the fake Web API's auth.test reports
_LIVE_LINK = re.compile(r"<(https?://[^|>]*)")


@pytest.fixture
def db(module_db: Database) -> Database:
    reset_bot_tables(module_db)
    with module_db.connection() as conn:
        conn.execute("TRUNCATE artifacts, sync_runs, webhook_events RESTART IDENTITY CASCADE")
    return module_db


@pytest.fixture
def bot(db: Database) -> Iterator[RunningBot]:
    with running_bot(db, FakeFlow(cache=True), bot_user=BOT, KB_ADMINS=ADMIN) as running:
        yield running


def _open_home(bot: RunningBot, user: str = ADMIN) -> list[dict[str, Any]]:
    envelope: dict[str, Any] = json.loads(json.dumps(OPENED))
    envelope["event_id"] = f"Ev{uuid.uuid4().hex[:12].upper()}"
    envelope["event_time"] = int(time.time())
    envelope["event"]["user"] = user
    before = len(bot.slack.calls_to("views.publish"))
    assert bot.post(json.dumps(envelope).encode(), "application/json").status_code == 200
    call = bot.slack.wait_calls("views.publish", before + 1)[-1]
    assert call.args["user_id"] == user and call.args["view"]["type"] == "home"
    blocks: list[dict[str, Any]] = call.args["view"]["blocks"]
    return blocks


def _ask(bot: RunningBot, question: str, channel: str) -> tuple[str, dict[str, Any]]:
    """Mention the bot; the thread it answered in and the answer it posted there."""
    ts = f"{time.time():.6f}"
    before = len(bot.slack.calls_to("chat.postMessage"))
    bot.mention(question, channel=channel, ts=ts)
    post = bot.slack.wait_calls("chat.postMessage", before + 1)[-1].args
    assert post["thread_ts"] == ts
    return ts, post


def _thumb(bot: RunningBot, post: dict[str, Any], *, up: bool, user: str) -> None:
    """Slack's feedback_buttons payload, pressed on ``post`` by ``user``."""
    [block] = [b for b in post["blocks"] if b["type"] == "context_actions"]
    [element] = block["elements"]
    value = element["positive_button" if up else "negative_button"]["value"]
    payload: dict[str, Any] = json.loads(json.dumps(THUMBS))
    payload["user"]["id"] = user
    payload["trigger_id"] = new_trigger_id()
    payload["actions"][0].update(value=value, block_id=block["block_id"])
    payload["container"].update(channel_id=post["channel"], thread_ts=post["thread_ts"])
    before = len(bot.slack.calls_to("chat.postEphemeral"))
    assert bot.action(payload).status_code == 200
    bot.slack.wait_calls("chat.postEphemeral", before + 1)


def _text(blocks: list[dict[str, Any]]) -> str:
    return "\n".join(
        str((b.get("text") or {}).get("text", "")) for b in blocks if b["type"] == "section"
    ) + json.dumps([b for b in blocks if b["type"] == "context"])


def test_admins_see_seven_day_figures_and_the_least_helpful_answers_threads(
    bot: RunningBot, db: Database
) -> None:
    _, deploy = _ask(bot, "How do I deploy?", "CENG")
    _ask(bot, "How do I deploy?", "CENG")  # from the cache
    _ask(bot, "How do I deploy?", "CENG")  # from the cache
    vpn_thread, vpn = _ask(bot, "Where is the VPN guide?", "CALL")
    assert bot.slack.wait_for(lambda: len(bot.slack.calls_to("reactions.remove")) == 4)
    with db.connection() as conn:  # a week and a day ago: outside every 7-day figure
        answer_stats.record_served(conn, Served("slack", "CENG", "1.1", "*", "old", "Old?", True))
        conn.execute(
            "UPDATE answers_served SET served_at = now() - interval '8 days' WHERE unit_id = 'old'"
        )
    _thumb(bot, vpn, up=False, user="UA")
    _thumb(bot, vpn, up=False, user="UB")
    _thumb(bot, deploy, up=True, user="UA")

    text = _text(_open_home(bot))
    assert (
        "*Last 7 days:* 4 answers served, 2 from the cache (50% cache hit rate). "
        "Votes: 1 helpful, 2 not helpful (33% helpful)."
    ) in text
    link = f"<{TEAM_URL}archives/CALL/p{vpn_thread.replace('.', '')}|open the thread>"
    assert f"• _Where is the VPN guide?_ — 2 not helpful, 0 helpful · {link}" in text
    assert "How do I deploy?" not in text  # voted helpful only

    plain = _text(_open_home(bot, "UPLAIN"))
    assert "Last 7 days" not in plain and "Least helpful" not in plain
    assert "VPN guide" not in plain and "archives" not in plain


def test_only_links_the_bot_built_are_live_in_the_admin_home(bot: RunningBot, db: Database) -> None:
    planted = "see https://evil.example/login <!channel> <https://evil.example|click> <@U1>"
    with db.connection() as conn:
        for unit, channel, thread in (
            ("u-chan", "CENG", "1700000001.000100"),
            ("u-dm", "D0SOMEONE", "1700000002.000100"),
            ("u-odd", "CENG", "not-a-ts"),
        ):
            served = Served("slack", channel, thread, "*", unit, f"{planted} {unit}", False)
            answer_stats.record_served(conn, served)
            bot_state.record_vote(conn, unit, "slack", "UA", "not_helpful")
    text = _text(_open_home(bot))
    assert _LIVE_LINK.findall(text) == [f"{TEAM_URL}archives/CENG/p1700000001000100"]
    assert "<!channel>" not in text and "<@U1>" not in text and "&lt;!channel&gt;" in text
    assert "u-dm_ — 1 not helpful, 0 helpful · in a direct message" in text
    assert "u-odd_ — 1 not helpful, 0 helpful · <#CENG>" in text


def test_a_home_of_500_rows_of_everything_stays_within_slacks_limits(
    bot: RunningBot, db: Database
) -> None:
    long = "How do I " + "really " * 60 + "deploy https://evil.example?"
    with db.connection() as conn:
        conn.execute(
            "INSERT INTO artifacts (artifact_id, source, scope_key, title, url, version,"
            " content_hash, body) SELECT 'confluence:S' || n || '-0', 'confluence',"
            " 'S' || lpad(n::text, 3, '0'), 't', 'https://x', '1', 'h', 'b'"
            " FROM generate_series(1, 500) AS n"
        )
        conn.execute(
            "INSERT INTO sync_runs (source, scopes, mode, status, finished_at)"
            " SELECT 'src' || n, '{K}', 'incremental', 'failed', now()"
            " FROM generate_series(1, 500) AS n"
        )
        conn.execute(
            "INSERT INTO bot_threads (platform, channel, thread)"
            " SELECT 'slack', 'C' || lpad(n::text, 8, '0'), '1.1' FROM generate_series(1, 500) n"
        )
        for n in range(500):
            unit = f"u{n:03d}"
            served = Served("slack", "CENG", f"1700000{n:03d}.000100", "*", unit, long, False)
            answer_stats.record_served(conn, served)
            for voter in range(1 + n % 4):
                bot_state.record_vote(conn, unit, "slack", f"U{voter}", "not_helpful")
    blocks = _open_home(bot)
    assert len(blocks) <= 100
    for block in blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        for element in block.get("elements", []):
            assert len(element.get("text", {}).get("text", "")) <= 75 or block["type"] != "actions"
    text = _text(blocks)
    assert text.count("items, last synced") + 460 == 500 and "…and 460 more" in text
    # 500 sources that ran, and the two configured ones.
    assert text.count("sync runs in 7 days") + 482 == 502 and "…and 482 more" in text
    worst = [line for line in text.split("\n") if line.startswith("• ")]
    assert len(worst) == 10 and all("— 4 not helpful" in line for line in worst)
    assert "…and 490 more" in text
    assert all(link.startswith(f"{TEAM_URL}archives/CENG/p") for link in _LIVE_LINK.findall(text))
    # The admin's buttons survive the cut: every configured source can still be synced.
    [actions] = [b for b in blocks if b["type"] == "actions"]
    assert [e["text"]["text"] for e in actions["elements"]] == [
        "Sync now: Confluence",
        "Sync now: Jira",
    ]
