"""Slack: mention -> chat.postMessage latency, and 50 concurrent mentions, over real HTTP.

Run: .venv/bin/python bench/slack.py [--mentions 200] [--concurrent 50] [--generation-ms 200]
(or ``python -m bench.slack``).

The real Bolt app (``build_slack_app``) is served by waitress on 127.0.0.1 and receives signed
Events API requests; its Web API client talks to the fake Slack from ``tests/fakes``, which
timestamps each ``chat.postMessage`` as it arrives. The answer flow is a fake:

* latency: it returns a cached answer at once, so the figure is kb-bot's Slack layer alone
  (verification, dedupe insert, ack, reaction, rendering, post, bookkeeping). The real flow's
  cache-hit latency (lookup + provenance check) adds to it.
* concurrency: half the mentions ask one question, half ask distinct ones; the fake caches
  like the real answer cache (one generation per question, ``--generation-ms`` each) so the
  figure shows acks stay fast while answers are being generated.

Uses the embedded Postgres (a temporary data dir) unless KB_BENCH_DATABASE_URL is set.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

# Run as a script, bench/ is first on sys.path and bench/store.py would shadow the store
# package; the fakes live under tests/.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent / "tests"))

from fakes.flow import FakeFlow  # noqa: E402
from fakes.slack_api import RunningBot, running_bot  # noqa: E402

from store.db import Database, start_embedded  # noqa: E402
from store.migrate import migrate  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def post_time(bot: RunningBot, thread_ts: str, timeout: float = 10.0) -> float:
    calls: list[float] = []

    def seen() -> bool:
        calls[:] = [
            c.at
            for c in bot.slack.calls_to("chat.postMessage")
            if c.args.get("thread_ts") == thread_ts
        ]
        return bool(calls)

    if not bot.slack.wait_for(seen, timeout):
        raise SystemExit(f"no answer for {thread_ts} within {timeout} s")
    return calls[0]


def latency(db: Database, mentions: int) -> dict[str, object]:
    flow = FakeFlow(cached=True)
    ack_ms: list[float] = []
    post_ms: list[float] = []
    with running_bot(db, flow) as bot:
        for i in range(mentions + 10):
            ts = f"1800000000.{i:06d}"
            started = time.monotonic()
            response = bot.mention("how do I rotate the VPN cert?", ts=ts)
            acked = time.monotonic()
            posted = post_time(bot, ts)
            assert response.status_code == 200
            if i >= 10:  # warm-up: first connections, JIT-free but cache-cold paths
                ack_ms.append((acked - started) * 1000)
                post_ms.append((posted - started) * 1000)
    return {
        "mentions": mentions,
        "mention_to_post_ms": {
            "p50": round(percentile(post_ms, 0.5), 2),
            "p95": round(percentile(post_ms, 0.95), 2),
            "mean": round(statistics.fmean(post_ms), 2),
        },
        "http_ack_ms": {
            "p50": round(percentile(ack_ms, 0.5), 2),
            "p95": round(percentile(ack_ms, 0.95), 2),
        },
    }


def concurrency(db: Database, count: int, generation_ms: float) -> dict[str, object]:
    flow = FakeFlow(cache=True, delay=generation_ms / 1000)
    questions = [
        "how do I rotate the VPN cert?" if i % 2 == 0 else f"what is runbook step {i}?"
        for i in range(count)
    ]
    with running_bot(db, flow) as bot:
        started = time.monotonic()

        def send(i: int) -> float:
            sent = time.monotonic()
            response = bot.mention(questions[i], ts=f"1800000100.{i:06d}")
            assert response.status_code == 200, response.text
            return time.monotonic() - sent

        with ThreadPoolExecutor(count) as pool:
            acks = list(pool.map(send, range(count)))
        answered = bot.slack.wait_for(
            lambda: len(bot.slack.calls_to("chat.postMessage")) >= count, 30
        )
        all_answered = time.monotonic() - started
        posts = len(bot.slack.calls_to("chat.postMessage"))
    return {
        "mentions": count,
        "distinct_questions": len(set(questions)),
        "answered": posts,
        "all_answered": answered,
        "all_answered_s": round(all_answered, 3),
        "generations": sum(flow.generations.values()),
        "max_generations_per_question": max(flow.generations.values()),
        "max_http_ack_ms": round(max(acks) * 1000, 2),
        "acks_over_3s": sum(1 for a in acks if a > 3.0),
        "generation_ms": generation_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mentions", type=int, default=200)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--generation-ms", type=float, default=200.0)
    args = parser.parse_args()
    # waitress warns about its queue when 50 requests land at once; that is the point here.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    url = os.environ.get("KB_BENCH_DATABASE_URL") or start_embedded(
        Path(tempfile.mkdtemp()), ephemeral=True
    )
    db = Database.open(url, schema=f"bench_{uuid.uuid4().hex[:8]}", max_size=16)
    try:
        migrate(db)
        result = {
            "bench": "slack",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()} {platform.processor() or ''} "
            f"{os.cpu_count()} cpus, Python {platform.python_version()}".replace("  ", " "),
            "latency": latency(db, args.mentions),
            "concurrency": concurrency(db, args.concurrent, args.generation_ms),
            "note": "fake flow: add the real flow's cache-hit latency to mention_to_post_ms",
        }
    finally:
        db.drop_schema()
        db.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
