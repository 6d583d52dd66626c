"""Resident memory of the real processes: ``kb daemon`` after a full sync, ``kb bot`` after
answering mentions (issue 14's targets: <= 500 MB and <= 400 MB).

Run: .venv/bin/python bench/memory.py [--pages 2000] [--answers 100]

Both are real ``python -m kb.cli`` processes against fakes from ``tests/fakes`` on loopback:
a generated Confluence Cloud space (the pages of bench/sync_throughput.py), a fake Slack Web
API and a fake Anthropic Messages API. One embedded Postgres (a temporary data dir, its memory
not counted) holds the store both share, as in production. The daemon syncs at start; its RSS
is sampled every 0.2 s until the sync's log line, then read again after a 5 s settle. The bot
then receives ``--answers`` signed ``app_mention`` events, each a distinct question (no answer
cache hits: every one embeds a query, searches and calls the model); its RSS is read after the
last answer is posted. VmHWM is the process's peak resident set. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
sys.path.append(str(ROOT / "tests"))

import httpx  # noqa: E402
from fakes.anthropic_api import fake_anthropic, text  # noqa: E402
from fakes.atlassian import FAKE_EMAIL, FAKE_TOKEN, FakeConfluence  # noqa: E402
from fakes.slack_api import BOT_USER, SECRET, TEAM, FakeSlack, signed_headers  # noqa: E402

from store.db import start_embedded  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from sync_throughput import WORDS, page_body  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def memory_mb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in MB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) // 1024
    return out


class Process:
    """A ``kb`` command as a child process; its stderr is kept (and scanned) line by line."""

    def __init__(self, command: str, env: dict[str, str], cwd: Path) -> None:
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kb.cli", command],
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._seen:
                self.lines.append(line.rstrip())
                self._seen.notify_all()

    def wait_for_line(self, needle: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                for line in self.lines:
                    if needle in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    tail = "\n".join(self.lines[-20:])
                    raise RuntimeError(f"no {needle!r} from kb (exit {self.proc.poll()}):\n{tail}")
                self._seen.wait(min(left, 1.0))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def sampled(pid: int) -> Iterator[list[int]]:
    """Sample VmRSS every 0.2 s while the block runs (the peak shows when memory grows)."""
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            try:
                samples.append(memory_mb(pid)["VmRSS"])
            except (FileNotFoundError, KeyError):
                return

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def quarters(samples: list[int]) -> list[int]:
    if len(samples) < 4:
        return samples
    q = len(samples) // 4
    return [max(samples[i * q : (i + 1) * q if i < 3 else None]) for i in range(4)]


def mention(http: httpx.Client, question: str, ts: str) -> None:
    event = {
        "type": "app_mention",
        "user": "UHUMAN",
        "text": f"<@{BOT_USER}> {question}",
        "ts": ts,
        "channel": "CGEN",
        "event_ts": ts,
    }
    envelope = {
        "token": "legacy",
        "team_id": TEAM,
        "api_app_id": "AKB",
        "type": "event_callback",
        "event": event,
        "event_id": f"Ev{uuid.uuid4().hex[:16].upper()}",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
    }
    body = json.dumps(envelope).encode()
    response = http.post(
        "/slack/events", content=body, headers=signed_headers(body, content_type="application/json")
    )
    response.raise_for_status()


def wait_until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--answers", type=int, default=100)
    parser.add_argument("--sync-timeout", type=float, default=3600)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kb-memory-"))
    url = os.environ.get("KB_BENCH_DATABASE_URL") or start_embedded(work / "pg", ephemeral=True)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "pages": args.pages,
        "answers": args.answers,
    }
    rng = random.Random(11)
    with FakeConfluence(cloud=True) as wiki, FakeSlack() as slack:
        for n in range(args.pages):
            wiki.add_page("ENG", f"Generated page {n}", page_body(rng, n))
        base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(work),
            "DATABASE_URL": url,
            "KB_DATA_DIR": str(work / "data"),
            "KB_LOG_LEVEL": "INFO",
            "CONFLUENCE_BASE_URL": wiki.base_url,
            "CONFLUENCE_EMAIL": FAKE_EMAIL,
            "CONFLUENCE_API_TOKEN": FAKE_TOKEN,
            "CONFLUENCE_SPACES": "ENG",
        }
        daemon_env = {
            **base,
            "KB_WEBHOOK_PORT": str(free_port()),
            "KB_WEBHOOK_SECRET": "bench-webhook-secret",
            "KB_SYNC_EVERY": "600",
        }
        daemon = Process("daemon", daemon_env, work)
        started = time.perf_counter()
        try:
            with sampled(daemon.proc.pid) as samples:
                line = daemon.wait_for_line("incremental sync:", args.sync_timeout)
            synced_at = time.perf_counter() - started
            after_sync = memory_mb(daemon.proc.pid)
            time.sleep(5)
            settled = memory_mb(daemon.proc.pid)
        finally:
            daemon.stop()
        report["daemon"] = {
            "sync_log": line.split("incremental sync:", 1)[1].strip(),
            "sync_seconds_from_start": round(synced_at, 1),
            "rss_mb_during_sync_max_sampled": max(samples, default=-1),
            # Max RSS in each quarter of the sync: flat quarters mean memory does not grow
            # with the number of pages (batches are capped), only with the largest batch.
            "rss_mb_max_by_quarter_of_sync": quarters(samples),
            "rss_mb_after_sync": after_sync["VmRSS"],
            "rss_mb_after_5s_settle": settled["VmRSS"],
            "peak_rss_mb_vmhwm": settled["VmHWM"],
            "target_mb": 500,
        }
        with fake_anthropic(text("Rotate the certificate from the vault runbook [1].")) as claude:
            port = free_port()
            bot_env = {
                **base,
                "PORT": str(port),
                "SLACK_BOT_TOKEN": "xoxb-test-token",
                "SLACK_SIGNING_SECRET": SECRET,
                "SLACK_API_URL": slack.url + "/",
                "ANTHROPIC_API_KEY": claude.key,
                "ANTHROPIC_BASE_URL": claude.url,
            }
            bot = Process("bot", bot_env, work)
            try:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                    if not wait_until(lambda: _up(http), 120):
                        raise RuntimeError("kb bot did not start:\n" + "\n".join(bot.lines[-20:]))
                    at_start = memory_mb(bot.proc.pid)
                    for n in range(args.answers):
                        words = rng.sample(WORDS, 3)
                        question = f"How do we handle {words[0]} {words[1]} and {words[2]} ({n})?"
                        mention(http, question, f"{1700000000 + n}.000100")
                    answered = wait_until(
                        lambda: (
                            len(claude.requests) >= args.answers
                            and len(slack.calls_to("chat.postMessage")) >= args.answers
                        ),
                        600,
                    )
                    time.sleep(2)
                    after = memory_mb(bot.proc.pid)
            finally:
                bot.stop()
        report["bot"] = {
            "all_answered": answered,
            "model_calls": len(claude.requests),
            "chat_post_messages": len(slack.calls_to("chat.postMessage")),
            "rss_mb_after_start": at_start["VmRSS"],
            "rss_mb_after_answers": after["VmRSS"],
            "peak_rss_mb_vmhwm": after["VmHWM"],
            "target_mb": 400,
        }
    print(json.dumps(report, indent=2))


def _up(http: httpx.Client) -> bool:
    try:
        http.get("/healthz")
    except httpx.HTTPError:
        return False
    return True


if __name__ == "__main__":
    main()
