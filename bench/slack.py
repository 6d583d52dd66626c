"""Slack: mention -> chat.postMessage latency, 50 concurrent mentions, and streamed answers,
over real HTTP.

Run: .venv/bin/python bench/slack.py [--mentions 200] [--concurrent 50] [--generation-ms 200]
[--stream-pairs 15] [--first-token-ms 800] [--tokens-per-s 40] [--only-streaming]
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

* streaming: the real flow (Postgres retrieval, disk cache, the anthropic client) answering
  distinct questions (cache misses) from a fake Messages API that sends its first token after
  800 ms, then 40 tokens/s. Mentions alternate between a bot that streams (chat.startStream at
  the first text) and the same flow posting at the end (the model called without streaming,
  one chat.postMessage), in the same run. Reports the time from the model's first token to
  the first streamed text (target p95 <= 300 ms) and from the mention to the full answer.

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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Run as a script, bench/ is first on sys.path and bench/store.py would shadow the store
# package; the fakes live under tests/.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent / "tests"))
# The project itself, so its packages win over the tests' same-named folders (tests/store).
sys.path.insert(1, str(_BENCH.parent))

from fakes.anthropic_api import FakeMessagesAPI, fake_anthropic, paced  # noqa: E402
from fakes.flow import FakeFlow  # noqa: E402
from fakes.slack_api import RunningBot, running_bot  # noqa: E402
from fakes.vpn_store import vpn_store  # noqa: E402

from bot.answerer import make_client  # noqa: E402
from bot.answers import Answer, AnswerFlow, Turn  # noqa: E402
from bot.flow import Flow  # noqa: E402
from store.db import Database, start_embedded  # noqa: E402
from store.migrate import migrate  # noqa: E402
from store.scope import Scope  # noqa: E402


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


# About 100 tokens at four characters each: 2.5 s of generation at 40 tokens/s.
STREAM_ANSWER = (
    "Windows laptops connect with the NWP-AOVPN profile [1]: open the VPN client, choose the "
    "profile and sign in with your usual account. Macs use the WireGuard app instead [2], "
    "with the configuration from the service portal. If neither works, ask the service desk "
    "and mention the error shown [1]."
)


class PostAtEnd:
    """Today's path for the same flow: the platform never asks for text as it comes, so the
    model is called without streaming and the answer is posted whole."""

    def __init__(self, flow: AnswerFlow) -> None:
        self._flow = flow

    def answer(
        self,
        question: str,
        *,
        scope: Scope,
        history: Sequence[Turn] = (),
        fresh: bool = False,
        on_text: Callable[[str], None] | None = None,
    ) -> Answer:
        return self._flow.answer(question, scope=scope, history=history, fresh=fresh)

    def record_post(self, unit_id: str, *, platform: str, channel: str, thread: str) -> None:
        self._flow.record_post(unit_id, platform=platform, channel=channel, thread=thread)


def _real_flow(db: Database, api: FakeMessagesAPI, cache_dir: Path) -> tuple[Flow, Any]:
    store = vpn_store(db, cache_dir)
    client = make_client(api.key, api.url, max_retries=0)
    return store.flow(client, "claude-bench"), (store.cache, client)


def _call_at(bot: RunningBot, method: str, thread_ts: str, timeout: float = 15.0) -> float:
    """When the first ``method`` call for the thread reached the fake Web API."""

    def found() -> list[float]:
        return [
            c.at
            for c in bot.slack.calls_to(method)
            if c.args.get("thread_ts") == thread_ts
            or (method == "chat.update" and c.args.get("ts") in _stream_ts(bot, thread_ts))
        ]

    if not bot.slack.wait_for(lambda: bool(found()), timeout):
        raise SystemExit(f"no {method} for {thread_ts} within {timeout} s")
    return found()[0]


def _stream_ts(bot: RunningBot, thread_ts: str) -> set[str]:
    return {
        str(m["ts"])
        for m in bot.slack.messages.get("CENG", [])
        if m.get("thread_ts") == thread_ts and "streaming" in m
    }


def streaming(db: Database, pairs: int, first_token: float, rate: float) -> dict[str, object]:
    """Interleaved mentions answered on a cache miss by the real flow against a model that
    streams at a realistic pace: streamed (this branch) and posted at the end (today)."""
    first_gap_ms: list[float] = []
    first_text_ms: list[float] = []
    full_ms: dict[str, list[float]] = {"streamed": [], "post_at_end": []}
    with fake_anthropic() as api, tempfile.TemporaryDirectory() as cache_dir:
        api.script(paced(STREAM_ANSWER, first_token=first_token, tokens_per_s=rate))
        flow, (cache, client) = _real_flow(db, api, Path(cache_dir))
        try:
            with (
                running_bot(db, flow, streaming=True) as streamed,
                running_bot(db, PostAtEnd(flow), streaming=True) as baseline,
            ):
                for i in range(2 * pairs + 2):
                    bot, kind = (streamed, "streamed") if i % 2 == 0 else (baseline, "post_at_end")
                    ts = f"1800000200.{i:06d}"
                    # A number of its own per question: the cache's entity gate makes each a miss.
                    question = f"How do I connect to the VPN on Windows, laptop {1000 + i}?"
                    tokens_before = len(api.first_text_at)
                    started = time.monotonic()
                    assert bot.mention(question, channel="CENG", ts=ts).status_code == 200
                    if kind == "streamed":
                        first = _call_at(bot, "chat.startStream", ts)
                        done = _call_at(bot, "chat.update", ts)
                        token = api.first_text_at[tokens_before]
                    else:
                        done = _call_at(bot, "chat.postMessage", ts)
                    if i < 2:
                        continue  # warm-up: first connections, first prompt-cache write
                    full_ms[kind].append((done - started) * 1000)
                    if kind == "streamed":
                        first_gap_ms.append((first - token) * 1000)
                        first_text_ms.append((first - started) * 1000)
            requests = len(api.requests)
        finally:
            client.close()
            cache.close()

    def stats(values: list[float]) -> dict[str, float]:
        return {
            "p50": round(percentile(values, 0.5), 1),
            "p95": round(percentile(values, 0.95), 1),
        }

    return {
        "pairs": pairs,
        "model": f"first token after {first_token * 1000:.0f} ms, then {rate:g} tokens/s",
        "model_requests": requests,
        "model_first_token_to_first_streamed_text_ms": stats(first_gap_ms),
        "mention_to_first_streamed_text_ms": stats(first_text_ms),
        "mention_to_full_answer_ms": {k: stats(v) for k, v in full_ms.items()},
        "full_answer_ratio_streamed_over_post_at_end": {
            "p50": round(
                percentile(full_ms["streamed"], 0.5) / percentile(full_ms["post_at_end"], 0.5), 3
            ),
            "p95": round(
                percentile(full_ms["streamed"], 0.95) / percentile(full_ms["post_at_end"], 0.95),
                3,
            ),
            "median_of_pairs": round(
                statistics.median(
                    s / b for s, b in zip(full_ms["streamed"], full_ms["post_at_end"], strict=True)
                ),
                3,
            ),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mentions", type=int, default=200)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--generation-ms", type=float, default=200.0)
    parser.add_argument("--stream-pairs", type=int, default=15)
    parser.add_argument("--first-token-ms", type=float, default=800.0)
    parser.add_argument("--tokens-per-s", type=float, default=40.0)
    parser.add_argument("--only-streaming", action="store_true")
    args = parser.parse_args()
    # waitress warns about its queue when 50 requests land at once; that is the point here.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    url = os.environ.get("KB_BENCH_DATABASE_URL") or start_embedded(
        Path(tempfile.mkdtemp()), ephemeral=True
    )
    db = Database.open(url, schema=f"bench_{uuid.uuid4().hex[:8]}", max_size=16)
    try:
        migrate(db)
        result: dict[str, object] = {
            "bench": "slack",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()} {platform.processor() or ''} "
            f"{os.cpu_count()} cpus, Python {platform.python_version()}".replace("  ", " "),
            "load_average": [round(x, 1) for x in os.getloadavg()],
        }
        if not args.only_streaming:
            result["latency"] = latency(db, args.mentions)
            result["concurrency"] = concurrency(db, args.concurrent, args.generation_ms)
            result["note"] = (
                "fake flow: add the real flow's cache-hit latency to mention_to_post_ms"
            )
        result["streaming"] = streaming(
            db, args.stream_pairs, args.first_token_ms / 1000, args.tokens_per_s
        )
    finally:
        db.drop_schema()
        db.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
