"""Soak: minutes of mixed load against ``kb up``; nothing may be lost, memory must not climb.

Run (from the repository root): .venv/bin/python -m bench.soak [--minutes 30] [--out F]
Prints one JSON object (and writes it to ``--out``); figures go to docs/BENCHMARKS.md ("Soak").

``kb up`` (a ``kb bot`` and a ``kb daemon`` child) runs as a subprocess on a Postgres this
script starts (embedded, in a temporary folder), against the fake Slack, Confluence and
Messages API of the tests on 127.0.0.1. The load, on one thread, paced by the clock:

* a mention in a new thread every ``--mention-every`` seconds (questions drawn from a small
  set, so some are cache hits), across four channels;
* a follow-up (a thread reply without a mention) in an answered thread every
  ``--follow-up-every`` seconds;
* a page edit plus its signed webhook delivery every ``--webhook-every`` seconds, and a page
  edited *without* a webhook as often, which only the scheduled sync (``KB_SYNC_EVERY``,
  3 minutes) picks up.

At the end the load stops, the processes get ``--drain`` seconds to finish, and the script
counts from the fake Slack and the database: questions without an answer (lost), answers
posted twice, deliveries accepted but not processed, notices sent twice or left pending, and
sync runs. RSS and private (anonymous) memory of each process (bot, daemon, the Postgres server
and its backends, summed) are sampled every 10 s; growth is the last sample minus the first
taken after the warm-up minute. The run's own baseline for latency: answer p95 in the first
five minutes after the warm-up against the last five.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
sys.path.append(str(ROOT / "tests"))

import httpx  # noqa: E402
import psycopg  # noqa: E402
from fakes.anthropic_api import fake_anthropic, text  # noqa: E402
from fakes.atlassian import FAKE_EMAIL, FAKE_TOKEN, FakeConfluence  # noqa: E402
from fakes.slack_api import SECRET as SLACK_SECRET  # noqa: E402
from fakes.slack_api import TEAM, FakeSlack, signed_headers  # noqa: E402

from bench.soak_measure import (  # noqa: E402
    latency_drift,
    memory,
    memory_summary,
    percentile,
    processes,
    store_counts,
)
from store.db import start_embedded  # noqa: E402
from sync._webhook_auth import sign  # noqa: E402

WEBHOOK_SECRET = "soak-webhook-secret-0123456789abcdef"
CHANNELS = ("CSOAK1", "CSOAK2", "CSOAK3", "CSOAK4")
TOPICS = (
    ("VPN on Windows", "Windows laptops connect to the VPN with the NWP-AOVPN profile."),
    ("VPN on macOS", "Mac laptops connect to the VPN with the WireGuard app."),
    ("Deploy trains", "Deploy trains leave on Tuesdays and Thursdays at 10:00."),
    ("On-call handover", "The on-call handover happens on Mondays at 09:30 in #ops."),
    ("Password resets", "Reset a password at the self-service portal; it needs your badge."),
    ("Expense reports", "Expense reports are due on the fifth working day of each month."),
    ("Laptop refresh", "Laptops are refreshed every three years; order through the IT shop."),
    ("Incident severity", "SEV1 means customers cannot work; page the incident commander."),
)
QUESTIONS = (
    "How do I connect to the VPN on Windows?",
    "How do Mac laptops connect to the VPN?",
    "When do deploy trains leave?",
    "When is the on-call handover?",
    "How do I reset my password?",
    "When are expense reports due?",
    "How often are laptops refreshed?",
    "What does SEV1 mean?",
)


@dataclass
class Asked:
    channel: str
    thread: str
    sent_at: float
    nth: int  # the nth question of this thread (1: the mention)


@dataclass
class Load:
    asked: list[Asked] = field(default_factory=list)
    ack_seconds: list[float] = field(default_factory=list)
    webhook_seconds: list[float] = field(default_factory=list)
    webhooks_accepted: int = 0
    non_2xx: Counter[str] = field(default_factory=Counter)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Soak:
    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args = args
        self.folder = folder
        self.random = random.Random(13)
        self.load = Load()
        self.http = httpx.Client(timeout=30)
        self.threads: dict[str, int] = {}  # thread ts -> questions asked in it
        self.ts = int(time.time()) * 1000

    def _next_ts(self) -> str:
        self.ts += 1
        return f"{self.ts // 1000}.{self.ts % 1000:06d}"

    def event(self, port: int, event: dict[str, Any]) -> None:
        envelope = {
            "token": "legacy",
            "team_id": TEAM,
            "api_app_id": "AKB",
            "type": "event_callback",
            "event": event,
            "event_id": f"Ev{uuid.uuid4().hex[:16].upper()}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM, "user_id": self.slack.bot_user, "is_bot": True}],
        }
        body = json.dumps(envelope).encode()
        began = time.monotonic()
        response = self.http.post(
            f"http://127.0.0.1:{port}/slack/events",
            content=body,
            headers=signed_headers(body, content_type="application/json"),
        )
        self.load.ack_seconds.append(time.monotonic() - began)
        if response.status_code != 200:
            self.load.non_2xx[f"slack {response.status_code}"] += 1

    def mention(self, port: int) -> None:
        channel, ts = self.random.choice(CHANNELS), self._next_ts()
        question = f"<@{self.slack.bot_user}> {self.random.choice(QUESTIONS)}"
        self.slack.add_message(channel, ts, question)
        self.threads[ts] = 1
        self.load.asked.append(Asked(channel, ts, time.monotonic(), 1))
        event = {"type": "app_mention", "user": "UHUMAN", "text": question, "ts": ts}
        self.event(port, {**event, "channel": channel, "event_ts": ts})

    def follow_up(self, port: int) -> None:
        answered = [a for a in self.load.asked[-200:] if a.nth == 1 and self._answers(a) >= 1]
        if not answered:
            return
        first = self.random.choice(answered)
        ts, text_ = self._next_ts(), "and what if that does not work?"
        self.slack.add_message(first.channel, ts, text_, thread_ts=first.thread)
        self.threads[first.thread] += 1
        nth = self.threads[first.thread]
        self.load.asked.append(Asked(first.channel, first.thread, time.monotonic(), nth))
        event = {"type": "message", "user": "UHUMAN", "text": text_, "ts": ts}
        event |= {"thread_ts": first.thread, "channel": first.channel, "channel_type": "channel"}
        self.event(port, event)

    def edit(self, webhook_port: int | None) -> None:
        page = self.random.choice(self.pages)
        _, body = TOPICS[self.pages.index(page) % len(TOPICS)]
        stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")
        self.wiki.edit_page(page.id, body=f"<p>{body}</p><p>Reviewed at {stamp}.</p>")
        if webhook_port is None:
            return  # only the scheduled sync will see this edit
        payload = json.dumps({"page": {"id": page.id}}).encode()
        began = time.monotonic()
        response = self.http.post(
            f"http://127.0.0.1:{webhook_port}/webhooks/confluence/page_updated",
            content=payload,
            headers={
                "Content-Type": "application/json",
                "X-Hub-Signature": sign(WEBHOOK_SECRET, payload),
                "X-Atlassian-Webhook-Identifier": f"soak-{uuid.uuid4().hex}",
            },
        )
        self.load.webhook_seconds.append(time.monotonic() - began)
        if response.status_code == 202:
            self.load.webhooks_accepted += 1
        else:
            self.load.non_2xx[f"webhook {response.status_code}"] += 1

    def _answers(self, asked: Asked) -> int:
        return len(self._thread_answers(asked.thread))

    def _thread_answers(self, thread: str) -> list[Any]:
        return [
            c
            for c in self.slack.calls_to("chat.postMessage")
            if c.args.get("thread_ts") == thread and "kb_outbox" not in json.dumps(c.args)
        ]

    def run(self) -> dict[str, Any]:
        with FakeSlack() as self.slack, FakeConfluence(cloud=True) as self.wiki:
            self.pages = [self.wiki.add_page("ENG", t, f"<p>{b}</p>") for t, b in TOPICS]
            with fake_anthropic(text("Per the runbook, do what it says [1].", delay=0.3)) as api:
                return self._run(api.key, api.url)

    def _run(self, model_key: str, model_url: str) -> dict[str, Any]:
        args = self.args
        database_url = start_embedded(self.folder / "store", ephemeral=True)
        port, webhook_port = _free_port(), _free_port()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DATABASE_URL": database_url,
            "KB_DATA_DIR": str(self.folder / "data"),
            "PORT": str(port),
            "KB_WEBHOOK_PORT": str(webhook_port),
            "KB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "KB_SYNC_EVERY": str(args.sync_every),
            "KB_OPS_CHANNEL": "COPS",
            "SLACK_BOT_TOKEN": "xoxb-soak",
            "SLACK_SIGNING_SECRET": SLACK_SECRET,
            "SLACK_API_URL": self.slack.url + "/",
            "CONFLUENCE_BASE_URL": self.wiki.base_url,
            "CONFLUENCE_EMAIL": FAKE_EMAIL,
            "CONFLUENCE_API_TOKEN": FAKE_TOKEN,
            "CONFLUENCE_SPACES": "ENG",
            "ANTHROPIC_API_KEY": model_key,
            "ANTHROPIC_BASE_URL": model_url,
        }
        log_path = self.folder / "kb-up.log"
        with log_path.open("wb") as log:
            up = subprocess.Popen(
                [sys.executable, "-m", "kb.cli", "up"],
                env=env,
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready(up, port, webhook_port, database_url)
            result = self._drive(up, port, webhook_port, database_url)
        finally:
            up.terminate()
            try:
                up.wait(60)
            except subprocess.TimeoutExpired:
                up.kill()
        output = log_path.read_text(errors="replace")
        result["tracebacks_in_log"] = output.count("Traceback")
        result["up_exit_code"] = up.returncode
        return result

    def _wait_ready(self, up: subprocess.Popen[bytes], port: int, hook: int, url: str) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if up.poll() is not None:
                raise SystemExit(f"kb up exited ({up.returncode}) before it was ready")
            try:
                ready = all(
                    self.http.get(f"http://127.0.0.1:{p}/healthz").status_code == 200
                    for p in (port, hook)
                )
                with psycopg.connect(url) as conn:
                    synced = conn.execute("SELECT count(*) FROM artifacts").fetchone()
                if ready and synced and synced[0] == len(self.pages):
                    return
            except (httpx.HTTPError, psycopg.Error):
                pass
            time.sleep(0.5)
        raise SystemExit("kb up never became ready (initial sync)")

    def _drive(self, up: subprocess.Popen[bytes], port: int, hook: int, url: str) -> dict[str, Any]:
        args = self.args
        started = time.monotonic()
        end = started + args.minutes * 60
        pgdata = self.folder / "store" / "pg"
        samples: list[tuple[float, dict[str, dict[str, float]]]] = []
        due = {"mention": started, "follow": started + 5, "hook": started + 2, "edit": started + 7}
        every = {
            "mention": args.mention_every,
            "follow": args.follow_up_every,
            "hook": args.webhook_every,
            "edit": args.webhook_every,
        }
        next_sample = started
        while time.monotonic() < end:
            if up.poll() is not None:
                raise SystemExit(f"kb up exited ({up.returncode}) under load")
            now = time.monotonic()
            if now >= next_sample:
                by_name = processes(up.pid, pgdata)
                samples.append((now - started, {n: memory(pids) for n, pids in by_name.items()}))
                next_sample += 10
            for name, when in sorted(due.items(), key=lambda kv: kv[1]):
                if now < when:
                    continue
                due[name] = when + every[name]
                if name == "mention":
                    self.mention(port)
                elif name == "follow":
                    self.follow_up(port)
                else:
                    self.edit(hook if name == "hook" else None)
            time.sleep(max(0.0, min(due.values()) - time.monotonic()))
        return self._tally(started, url, samples)

    def _tally(
        self, started: float, url: str, samples: list[tuple[float, dict[str, dict[str, float]]]]
    ) -> dict[str, Any]:
        deadline = time.monotonic() + self.args.drain
        unanswered = self.load.asked
        while time.monotonic() < deadline:
            unanswered = [a for a in self.load.asked if self._answers(a) < a.nth]
            if not unanswered and store_counts(url)["webhooks_pending"] == 0:
                break
            time.sleep(1)
        answer_seconds: list[float] = []
        timed: list[tuple[float, float]] = []  # (asked at, seconds since the start), answer
        duplicates = 0
        by_thread: dict[str, list[Asked]] = {}
        for asked in self.load.asked:
            by_thread.setdefault(asked.thread, []).append(asked)
        for thread, questions in by_thread.items():
            answers = self._thread_answers(thread)
            duplicates += max(0, len(answers) - len(questions))
            for question, answer in zip(questions, answers, strict=False):
                answer_seconds.append(answer.at - question.sent_at)
                timed.append((question.sent_at - started, answer.at - question.sent_at))
        notices = [
            c for c in self.slack.calls_to("chat.postMessage") if "kb_outbox" in json.dumps(c.args)
        ]
        notice_ids = Counter(
            json.dumps(c.args.get("metadata", {}).get("event_payload", {}), sort_keys=True)
            for c in notices
        )
        store = store_counts(url)
        processed_p95 = store.pop("webhook_processed_p95_ms")
        memory = memory_summary(samples)
        drift = latency_drift(timed, self.args.minutes * 60)
        mentions = sum(1 for a in self.load.asked if a.nth == 1)
        lost = len(unanswered) + store["webhooks_pending"] + store["webhooks_dead"]
        return {
            "bench": "soak",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()} {os.cpu_count()} cpu, {platform.system()}",
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "minutes": self.args.minutes,
            "mentions": mentions,
            "follow_ups": len(self.load.asked) - mentions,
            "answers_posted": len(answer_seconds),
            "webhooks_accepted": self.load.webhooks_accepted,
            "requests_served": len(self.load.ack_seconds) + len(self.load.webhook_seconds),
            "non_2xx": dict(self.load.non_2xx),
            "events_lost": lost,
            "questions_unanswered": len(unanswered),
            "answers_duplicated": duplicates,
            "notices_sent": len(notices),
            "notices_duplicated": sum(n - 1 for n in notice_ids.values() if n > 1),
            **store,
            "p95_ms": {
                "slack_ack": percentile(self.load.ack_seconds, 0.95),
                "answer_posted": percentile(answer_seconds, 0.95),
                "webhook_accept": percentile(self.load.webhook_seconds, 0.95),
                "webhook_processed": processed_p95,
            },
            "p50_ms": {
                "slack_ack": percentile(self.load.ack_seconds, 0.5),
                "answer_posted": percentile(answer_seconds, 0.5),
            },
            "latency_drift": drift,
            "memory": memory,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--mention-every", type=float, default=2.0)
    parser.add_argument("--follow-up-every", type=float, default=5.0)
    parser.add_argument("--webhook-every", type=float, default=10.0)
    parser.add_argument("--sync-every", type=int, default=3, help="KB_SYNC_EVERY (minutes)")
    parser.add_argument("--drain", type=float, default=120.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="kb-soak-"))
    result = Soak(args, folder).run()
    result["work_dir"] = str(folder)
    text_ = json.dumps(result, indent=2)
    print(text_)
    if args.out:
        args.out.write_text(text_ + "\n")


if __name__ == "__main__":
    main()
