"""Outbox delivery to a fake Slack: notices, ops alerts, sync results, 429s, restarts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.flow import FakeFlow
from fakes.slack_api import FakeSlack, reset_bot_tables, running_bot
from slack_sdk import WebClient

from bot.outbox import OutboxDeliverer, OutboxPolicy
from bot.platform import ActionValue, SourceNotice
from bot.slack.platform import SlackPlatform
from store import outbox, sync_state
from store.db import Database
from store.metrics import series, store_metrics


@pytest.fixture
def db(module_db: Database) -> Database:
    return reset_bot_tables(module_db)


FAST = OutboxPolicy(base_delay=0.05, max_delay=0.2, max_attempts=3, lease_seconds=60)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def _platform(slack: FakeSlack) -> SlackPlatform:
    client = WebClient(token="xoxb-test", base_url=slack.url + "/", retry_handlers=[], timeout=5)
    return SlackPlatform(client, webhook_timeout=5)


def _deliverer(
    db: Database, platform: Any, *, ops: str | None = "COPS", policy: OutboxPolicy = FAST
) -> OutboxDeliverer:
    return OutboxDeliverer(db, {"slack": platform}, ops, policy=policy)


def _notice(n: int = 1, **changes: Any) -> dict[str, Any]:
    payload = {
        "platform": "slack",
        "channel": "CGEN",
        "thread": f"1700000000.{n:06d}",
        "artifact_id": "confluence:101",
        "title": "VPN setup & <access>",
        "url": "https://wiki.example/pages/101",
        "change": "updated",
        "old_version": "3",
        "new_version": "4",
        "question": "how do I get VPN access?",
        "unit_id": f"unit-{n}",
    }
    payload.update(changes)
    return payload


def _enqueue(db: Database, kind: str, payload: dict[str, Any], key: str | None = None) -> None:
    with db.connection() as conn:
        outbox.enqueue_json(
            conn, kind, key or f"{kind}:{json.dumps(payload, sort_keys=True)}", payload
        )


def _row(db: Database, kind: str | None = None) -> dict[str, Any]:
    with db.connection() as conn:
        row = conn.execute(
            "SELECT * FROM outbox WHERE %s::text IS NULL OR kind = %s ORDER BY message_id LIMIT 1",
            (kind, kind),
        ).fetchone()
    assert row is not None
    return row


def test_notice_names_links_and_offers_refresh(db: Database, slack: FakeSlack) -> None:
    _enqueue(db, "notice", _notice())
    _enqueue(db, "notice", _notice(2, change="deleted", new_version=None))
    assert _deliverer(db, _platform(slack)).deliver_due(10) == 2
    updated, deleted = (c.args for c in slack.calls_to("chat.postMessage"))
    assert (updated["channel"], updated["thread_ts"]) == ("CGEN", "1700000000.000001")
    assert "<https://wiki.example/pages/101|VPN setup &amp; &lt;access&gt;>" in updated["text"]
    assert "changed (version 3 → 4)" in updated["text"]
    button = updated["blocks"][-1]["elements"][0]
    assert button["action_id"] == "kb_refresh"
    assert ActionValue.decode(button["value"]) == ActionValue("unit-1", "how do I get VPN access?")
    assert updated["metadata"]["event_type"] == "kb_outbox"
    assert "Source deleted" in deleted["text"] and "no longer exists" in deleted["text"]
    assert _row(db)["sent_at"] is not None
    assert _deliverer(db, _platform(slack)).deliver_due(10) == 0


def test_refresh_on_a_notice_replaces_it_with_a_fresh_answer(db: Database) -> None:
    flow = FakeFlow(text="Fresh steps [1].")
    with running_bot(db, flow) as bot:
        _enqueue(db, "notice", _notice())
        assert _deliverer(db, _platform(bot.slack)).deliver_due(10) == 1
        notice = bot.slack.calls_to("chat.postMessage")[0].args
        notice_ts = bot.slack.messages["CGEN"][-1]["ts"]
        value = notice["blocks"][-1]["elements"][0]["value"]
        payload = {
            "type": "block_actions",
            "user": {"id": "UHUMAN"},
            "team": {"id": "T0KB"},
            "channel": {"id": "CGEN"},
            "container": {"type": "message", "message_ts": notice_ts, "channel_id": "CGEN"},
            "message": {
                "ts": notice_ts,
                "thread_ts": notice["thread_ts"],
                "blocks": notice["blocks"],
                "text": notice["text"],
            },
            "actions": [{"action_id": "kb_refresh", "value": value, "type": "button"}],
        }
        assert bot.action(payload).status_code == 200
        final = bot.slack.wait_calls("chat.update", 2)[-1].args
        assert final["ts"] == notice_ts and "Fresh steps [1]." in final["text"]
        assert flow.calls[0].fresh and flow.calls[0].question == "how do I get VPN access?"
        assert bot.slack.wait_for(lambda: len(flow.posts) == 1)
        assert flow.posts[0].thread == "1700000000.000001"


def test_ops_alert_after_failed_run_then_quiet_then_recovery(
    db: Database, slack: FakeSlack
) -> None:
    deliverer = _deliverer(db, _platform(slack))
    with db.connection() as conn:
        sync_state.record_failure(conn, "confluence", "HTTP 503 from wiki.example <html>", 41)
    assert deliverer.deliver_due(10) == 1
    alert = slack.calls_to("chat.postMessage")[0].args
    assert alert["channel"] == "COPS"
    assert "Sync of confluence failed" in alert["text"] and "(run 41)" in alert["text"]
    assert "HTTP 503 from wiki.example &lt;html&gt;" in alert["text"]
    with db.connection() as conn:
        sync_state.record_failure(conn, "confluence", "still 503", 42)  # within the hour
    assert deliverer.deliver_due(10) == 0
    with db.connection() as conn:
        sync_state.record_success(conn, "confluence", 43)
    assert deliverer.deliver_due(10) == 1
    recovery = slack.calls_to("chat.postMessage")[1].args
    assert recovery["channel"] == "COPS"
    assert "Sync of confluence has recovered" in recovery["text"]
    assert "still 503" in recovery["text"]


def test_ops_alert_without_ops_channel_is_dropped_with_a_warning(
    db: Database, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    _enqueue(db, "ops_alert", {"source": "jira", "error": "boom", "run_id": 1, "ongoing": False})
    assert _deliverer(db, _platform(slack), ops=None).deliver_due(10) == 0
    assert slack.calls_to("chat.postMessage") == []
    assert "KB_OPS_CHANNEL is not set" in caplog.text
    assert _row(db)["dead_at"] is not None


def _sync_result(response_url: str | None) -> dict[str, Any]:
    return {
        "request_id": 7,
        "requested_by": {"user": "UADMIN", "channel": "COPS", "response_url": response_url},
        "reports": [
            {
                "source": "confluence",
                "status": "ok",
                "synced": 3,
                "unchanged": 10,
                "deleted": 1,
                "skipped": 0,
                "failed": 0,
                "errors": [],
                "seconds": 12.5,
            },
            {
                "source": "jira",
                "status": "partial",
                "synced": 1,
                "unchanged": 0,
                "deleted": 0,
                "skipped": 0,
                "failed": 1,
                "errors": ["OPS-9: HTTP 500"],
                "seconds": 2.0,
            },
        ],
    }


def test_sync_result_goes_to_the_response_url(db: Database, slack: FakeSlack) -> None:
    _enqueue(db, "sync_result", _sync_result(slack.response_url("sync")))
    assert _deliverer(db, _platform(slack)).deliver_due(10) == 1
    assert len(slack.responses) == 1
    body = slack.responses[0].args
    assert body["response_type"] == "ephemeral"
    assert "finished with problems" in body["text"]
    assert "Confluence*: ok — 3 synced, 10 unchanged, 1 deleted" in body["text"]
    assert "OPS-9: HTTP 500" in body["text"]
    assert slack.calls_to("chat.postEphemeral") == []


@pytest.mark.parametrize("expired", [True, False])
def test_sync_result_falls_back_to_an_ephemeral_message(
    db: Database, slack: FakeSlack, expired: bool
) -> None:
    slack.response_url_status = 404
    _enqueue(db, "sync_result", _sync_result(slack.response_url("old") if expired else None))
    assert _deliverer(db, _platform(slack)).deliver_due(10) == 1
    ephemeral = slack.calls_to("chat.postEphemeral")[0].args
    assert (ephemeral["channel"], ephemeral["user"]) == ("COPS", "UADMIN")
    assert "Your sync finished" in ephemeral["text"]


def test_429_retry_after_is_honoured_then_delivered_once(db: Database, slack: FakeSlack) -> None:
    slack.fail("chat.postMessage", status=429, retry_after=1)
    _enqueue(db, "notice", _notice())
    deliverer = _deliverer(db, _platform(slack))
    assert deliverer.deliver_due(10) == 0
    assert deliverer.deliver_due(10) == 0  # not due yet: no second call
    assert len(slack.calls_to("chat.postMessage", ok_only=False)) == 1
    row = _row(db)
    assert row["attempts"] == 0 and "rate limited" in row["last_error"]
    deadline = time.monotonic() + 5
    while deliverer.deliver_due(10) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    first, second = slack.calls_to("chat.postMessage", ok_only=False)
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.0
    assert len(slack.calls_to("chat.postMessage")) == 1


def test_failures_back_off_then_die_and_permanent_errors_die_at_once(
    db: Database, slack: FakeSlack
) -> None:
    slack.fail("chat.postMessage", status=200, error="channel_not_found")
    _enqueue(db, "notice", _notice(1))
    deliverer = _deliverer(db, _platform(slack))
    deliverer.deliver_due(10)
    assert _row(db)["dead_at"] is not None and "channel_not_found" in _row(db)["last_error"]

    slack.fail("chat.postMessage", status=200, error="fatal_error", times=5)
    _enqueue(db, "notice", _notice(2))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        deliverer.deliver_due(10)
        with db.connection() as conn:
            row = conn.execute("SELECT * FROM outbox ORDER BY message_id DESC LIMIT 1").fetchone()
        if row is not None and row["dead_at"] is not None:
            break
        time.sleep(0.02)
    assert row is not None and row["attempts"] == 3 and row["dead_at"] is not None
    assert len(slack.calls_to("chat.postMessage", ok_only=False)) == 4
    assert store_metrics(db)[series("kb_outbox_messages", kind="notice", state="dead")] == 2


class SimulatedCrash(BaseException):
    """The process dying: not an Exception, so nothing in the deliverer catches it."""


class CrashingPlatform(SlackPlatform):
    def __init__(self, inner: SlackPlatform, *, after_send: bool) -> None:
        self.__dict__.update(inner.__dict__)
        self._after_send = after_send

    def send_notice(self, notice: SourceNotice, *, message_id: int) -> None:
        if self._after_send:
            super().send_notice(notice, message_id=message_id)
        raise SimulatedCrash


@pytest.mark.parametrize("after_send", [True, False])
def test_restart_mid_send_sends_nothing_twice_and_loses_nothing(
    db: Database, slack: FakeSlack, after_send: bool
) -> None:
    _enqueue(db, "notice", _notice())
    crashing = _deliverer(db, CrashingPlatform(_platform(slack), after_send=after_send))
    with pytest.raises(SimulatedCrash):
        crashing.deliver_due(10)
    posted_before = len(slack.calls_to("chat.postMessage"))
    assert posted_before == (1 if after_send else 0)
    # A live deliverer leaves a fresh claim alone ...
    assert _deliverer(db, _platform(slack)).deliver_due(10) == 0
    # ... and the next process, once the lease has run out, checks Slack before resending.
    restarted = _deliverer(db, _platform(slack), policy=OutboxPolicy(lease_seconds=0))
    restarted.deliver_due(10)
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert _row(db)["sent_at"] is not None
    assert restarted.deliver_due(10) == 0


def test_unknown_outcome_is_checked_not_blindly_resent(db: Database, slack: FakeSlack) -> None:
    slack.fail("chat.postMessage", status=500, error="internal_error")
    _enqueue(db, "notice", _notice())
    assert _deliverer(db, _platform(slack)).deliver_due(10) == 0
    with db.connection() as conn:
        assert store_metrics(db)["kb_outbox_in_flight"] == 1
        assert conn.execute("SELECT count(*) AS n FROM outbox_claims").fetchone() == {"n": 1}
    later = _deliverer(db, _platform(slack), policy=OutboxPolicy(lease_seconds=0))
    assert later.deliver_due(10) == 1
    assert len(slack.calls_to("chat.postMessage")) == 1


def test_ephemeral_with_unknown_outcome_is_given_up_not_duplicated(
    db: Database, slack: FakeSlack
) -> None:
    slack.fail("chat.postEphemeral", status=500, error="internal_error")
    _enqueue(db, "sync_result", _sync_result(None))
    _deliverer(db, _platform(slack)).deliver_due(10)
    _deliverer(db, _platform(slack), policy=OutboxPolicy(lease_seconds=0)).deliver_due(10)
    assert slack.calls_to("chat.postEphemeral") == []
    assert "outcome unknown" in _row(db)["last_error"]


def test_restart_between_batches_and_concurrent_deliverers(db: Database, slack: FakeSlack) -> None:
    for n in range(1, 21):
        _enqueue(db, "notice", _notice(n))
    assert _deliverer(db, _platform(slack)).deliver_due(5) == 5
    deliverers = [_deliverer(db, _platform(slack)) for _ in range(3)]
    threads = [threading.Thread(target=d.deliver_due, args=(50,)) for d in deliverers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    threads_posted = [c.args["thread_ts"] for c in slack.calls_to("chat.postMessage")]
    assert sorted(threads_posted) == sorted(f"1700000000.{n:06d}" for n in range(1, 21))
    assert store_metrics(db)[series("kb_outbox_messages", kind="notice", state="sent")] == 20


def test_run_forever_delivers_until_stopped(db: Database, slack: FakeSlack) -> None:
    stop = threading.Event()
    deliverer = _deliverer(db, _platform(slack), policy=OutboxPolicy(poll_seconds=0.05))
    worker = threading.Thread(target=deliverer.run_forever, args=(stop,))
    worker.start()
    try:
        _enqueue(db, "notice", _notice())
        assert slack.wait_calls("chat.postMessage")
    finally:
        stop.set()
        worker.join(timeout=5)
    assert not worker.is_alive()


def test_malformed_payloads_die_with_a_reason(db: Database, slack: FakeSlack) -> None:
    _enqueue(db, "notice", {"platform": "slack", "channel": "C1"})
    _enqueue(db, "notice", _notice(3, platform="teams"))
    assert _deliverer(db, _platform(slack)).deliver_due(10) == 0
    with db.connection() as conn:
        errors = [
            r["last_error"]
            for r in conn.execute("SELECT last_error FROM outbox ORDER BY message_id").fetchall()
        ]
    assert "notice payload has no 'change'" in errors[0]
    assert "no 'teams' platform is configured" in errors[1]
