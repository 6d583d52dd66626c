"""Fault class 10: a replayed signed slash command or click is acted on once.

A signed request stays valid for five minutes, so the same bytes with the same signature can
arrive twice (a replay, or a proxy retrying). Against the real Bolt app over HTTP: the second
``/kb-sync`` queues nothing, the second Refresh regenerates nothing; distinct invocations
still each count.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fakes.flow import FakeFlow
from fakes.slack_api import (
    ADMIN,
    TEAM,
    RunningBot,
    new_trigger_id,
    reset_bot_tables,
    running_bot,
    signed_headers,
)

from store.db import Database

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def flow() -> FakeFlow:
    return FakeFlow()


@pytest.fixture
def bot(module_db: Database, flow: FakeFlow) -> Iterator[RunningBot]:
    with running_bot(reset_bot_tables(module_db), flow) as running:
        yield running


def _sync_requests(db: Database) -> int:
    with db.connection() as conn:
        row = conn.execute("SELECT count(*) AS n FROM sync_requests").fetchone()
    assert row is not None
    return int(row["n"])


def _command_body(bot: RunningBot, *, trigger_id: str | None) -> bytes:
    form = {
        "token": "legacy",
        "team_id": TEAM,
        "channel_id": "COPS",
        "user_id": ADMIN,
        "command": "/kb-sync",
        "text": "all",
        "response_url": bot.slack.response_url("cmd"),
    }
    if trigger_id is not None:
        form["trigger_id"] = trigger_id
    return urlencode(form).encode()


def _twice(bot: RunningBot, body: bytes) -> tuple[httpx.Response, httpx.Response]:
    headers = signed_headers(body, content_type=FORM)  # one signature, sent twice
    first = bot.http.post("/slack/events", content=body, headers=headers)
    again = bot.http.post("/slack/events", content=body, headers=headers)
    return first, again


@pytest.mark.parametrize("trigger", ["with a trigger_id", "without one"])
def test_a_replayed_kb_sync_queues_one_sync(
    bot: RunningBot, module_db: Database, trigger: str
) -> None:
    trigger_id = new_trigger_id() if trigger == "with a trigger_id" else None
    first, again = _twice(bot, _command_body(bot, trigger_id=trigger_id))
    assert first.status_code == 200 and first.json()["text"].startswith("Queued a sync")
    assert again.status_code == 200  # acked, so nobody retries it
    assert _sync_requests(module_db) == 1


def test_distinct_kb_sync_invocations_each_queue(bot: RunningBot, module_db: Database) -> None:
    for _ in range(2):
        assert bot.command("all", channel="COPS").status_code == 200
    assert _sync_requests(module_db) == 2


def _refresh_payload(bot: RunningBot) -> dict[str, Any]:
    bot.mention("how do I rotate the VPN cert?", ts="1700000100.000001")
    post = bot.slack.wait_calls("chat.postMessage")[0].args
    message_ts = bot.slack.messages["CGEN"][-1]["ts"]
    button = next(
        e
        for b in post["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == "kb_refresh"
    )
    return {
        "type": "block_actions",
        "user": {"id": "UHUMAN"},
        "team": {"id": TEAM},
        "channel": {"id": post["channel"]},
        "container": {"type": "message", "message_ts": message_ts, "channel_id": "CGEN"},
        "message": {"ts": message_ts, "thread_ts": post["thread_ts"], "blocks": post["blocks"]},
        "actions": [{"action_id": "kb_refresh", "value": button["value"], "type": "button"}],
        "response_url": bot.slack.response_url("action"),
        "trigger_id": new_trigger_id(),
    }


def test_a_replayed_refresh_click_regenerates_once(bot: RunningBot, flow: FakeFlow) -> None:
    payload = _refresh_payload(bot)
    assert bot.slack.wait_for(lambda: len(flow.posts) == 1)
    first, again = _twice(bot, urlencode({"payload": json.dumps(payload)}).encode())
    assert first.status_code == 200 and again.status_code == 200
    assert bot.slack.wait_for(lambda: len(flow.posts) == 2)
    assert not bot.slack.wait_for(lambda: len(flow.posts) > 2, timeout=1.5)
    assert [call.fresh for call in flow.calls] == [False, True]
