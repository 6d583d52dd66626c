"""Fault class 3: Postgres stopped and restarted under a running ``kb bot`` and ``kb daemon``.

Real processes against a fake Slack and a Postgres of their own that the test stops (fast
shutdown) and starts again. While it is down: a signed mention is acked within 3 s (a replay
of it is still dropped), the asker is told in the thread that the knowledge store cannot be
reached, the ops channel gets one alert however many people ask, both ``/healthz`` answer 503
within 1 s, and each process logs the outage in one line, with no traceback. Once it is back,
with no restart: both ``/healthz`` answer 200, a mention is answered, the ops channel hears
that it is back, and the daemon delivers what is queued in its outbox again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import psycopg
from fakes.postgres_outage import KbProcess, StoppablePostgres, free_port
from fakes.slack_api import (
    BASE_ENV,
    BOT_USER,
    FakeSlack,
    signed_mention,
)

from bot.wording import STORE_DOWN
from store.outage import FRESH_FOR

ACK_DEADLINE = 3.0  # Slack's
HEALTH_DEADLINE = 1.0
OPS = BASE_ENV["KB_OPS_CHANNEL"]
UNREACHABLE_LINE = "the store (Postgres) is unreachable"
BACK_LINE = "the store (Postgres) is reachable again"


def _env(
    slack: FakeSlack, postgres: StoppablePostgres, port: int, webhook_port: int
) -> dict[str, str]:
    env = {
        **BASE_ENV,
        "SLACK_API_URL": slack.url + "/",
        "DATABASE_URL": postgres.url,
        "KB_DATA_DIR": str(postgres.root / "kb"),
        "PORT": str(port),
        "KB_WEBHOOK_PORT": str(webhook_port),
        "KB_SYNC_EVERY": "600",
    }
    for key in [k for k in env if k.startswith(("CONFLUENCE_", "JIRA_"))]:
        del env[key]  # no source: the daemon's jobs here are its outbox and its probes
    return env


def _mention(url: str, ts: str, event_id: str) -> httpx.Response:
    question = "how do I rotate the VPN certificate?"
    body, headers = signed_mention(question, bot_user=BOT_USER, ts=ts, event_id=event_id)
    return httpx.post(f"{url}/slack/events", content=body, headers=headers, timeout=30)


def _timed(call: object) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    assert callable(call)
    response = call()
    return response, time.monotonic() - started


def _replies(slack: FakeSlack, thread: str) -> list[str]:
    return [
        str(c.args.get("text") or "")
        for c in slack.calls_to("chat.postMessage")
        if c.args.get("thread_ts") == thread
    ]


def _ops(slack: FakeSlack) -> list[str]:
    return [
        str(c.args.get("text") or "")
        for c in slack.calls_to("chat.postMessage")
        if c.args.get("channel") == OPS
    ]


def test_postgres_down_and_back_under_a_running_bot_and_daemon(
    postgres: StoppablePostgres,
) -> None:
    with FakeSlack() as slack:
        port, webhook_port = free_port(), free_port()
        env = _env(slack, postgres, port, webhook_port)
        folder = postgres.root
        bot_health = f"http://127.0.0.1:{port}/healthz"
        daemon_health = f"http://127.0.0.1:{webhook_port}/healthz"
        bot_url = f"http://127.0.0.1:{port}"
        daemon = KbProcess("daemon", env, folder)
        bot = KbProcess("bot", env, Path(folder))
        try:
            daemon.wait_healthy(daemon_health)
            bot.wait_healthy(bot_health)

            postgres.stop()
            time.sleep(FRESH_FOR)  # a probe's answer is reused for this long

            # /healthz: 503 within 1 s, from both processes.
            for url in (bot_health, daemon_health):
                for _ in range(3):
                    health, took = _timed(lambda u=url: httpx.get(u, timeout=10))
                    assert health.status_code == 503, (url, health.text)
                    assert took < HEALTH_DEADLINE, (url, took)

            # Three people ask (and Slack replays the first): every ack within 3 s.
            threads = [f"1700000{i}.000100" for i in range(3)]
            for i, ts in enumerate(threads):
                acked, took = _timed(lambda t=ts, n=i: _mention(bot_url, t, f"EvOUT{n}"))
                assert acked.status_code == 200, acked.text
                assert took < ACK_DEADLINE, took
            replay, took = _timed(lambda: _mention(bot_url, threads[0], "EvOUT0"))
            assert replay.status_code == 200 and took < ACK_DEADLINE

            # Each asker is told, once, in their thread.
            assert slack.wait_for(lambda: all(_replies(slack, t) for t in threads), 30)
            for ts in threads:
                assert slack.wait_for(lambda t=ts: STORE_DOWN in _replies(slack, t), 10)
            time.sleep(3)  # a replay answered twice or a second alert would show by now
            assert _replies(slack, threads[0]) == [STORE_DOWN]
            # One alert for the outage, not one per question.
            assert len(_ops(slack)) == 1, _ops(slack)
            assert "unreachable" in _ops(slack)[0]

            postgres.start()

            # Back without a restart.
            for proc, url in ((bot, bot_health), (daemon, daemon_health)):
                proc.wait_healthy(url, timeout=30)
            assert slack.wait_for(lambda: len(_ops(slack)) == 2, 20), _ops(slack)
            assert "reachable again" in _ops(slack)[1]
            after = "17000009.000100"
            assert _mention(bot_url, after, "EvBACK").status_code == 200
            assert slack.wait_for(lambda: bool(_replies(slack, after)), 40)
            assert STORE_DOWN not in _replies(slack, after)
            # The daemon's jobs resumed: its outbox deliverer sends what is queued now.
            with psycopg.connect(postgres.url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO outbox (kind, dedupe_key, payload) VALUES (%s, %s, %s)",
                    (
                        "ops_alert",
                        "ops_alert:confluence:after-outage",
                        json.dumps(
                            {"source": "confluence", "error": "after the outage", "run_id": None}
                            | {"ongoing": False}
                        ),
                    ),
                )
            assert slack.wait_for(lambda: any("after the outage" in t for t in _ops(slack)), 20)
        finally:
            codes = {"bot": bot.stop(), "daemon": daemon.stop()}
        assert codes == {"bot": 0, "daemon": 0}, codes
        for name, proc in (("bot", bot), ("daemon", daemon)):
            output = proc.output()
            assert "Traceback" not in output, f"{name}:\n{output[-4000:]}"
            assert output.count(UNREACHABLE_LINE) == 1, f"{name}:\n{output[-4000:]}"
            assert output.count(BACK_LINE) == 1, f"{name}:\n{output[-4000:]}"
