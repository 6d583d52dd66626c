"""Postgres down: how long a Slack ack and ``GET /healthz`` take, against the same with it up.

Run (from the repository root): .venv/bin/python -m bench.store_outage [--rounds 3] [--n 20]
Prints one JSON object; figures go to docs/BENCHMARKS.md ("Store outage").

The real Bolt app and chat host (``running_bot``) on an embedded Postgres of a temporary data
dir, with a fake answer flow and the fake Slack from ``tests/fakes``. Each round times ``--n``
signed mentions (request to ack) and ``--n`` health checks with the store up, then stops
Postgres (fast shutdown) and times the same while it is down, then starts it again and times
how long until ``/healthz`` is 200 and a mention is answered again. Rounds interleave up and
down, so machine noise hits both alike; the figures are p50/p95 and the down/up ratio.
Targets: acks under 3 s and /healthz under 1 s while the store is down.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent / "tests"))
sys.path.insert(1, str(_BENCH.parent))

from fakes.flow import FakeFlow  # noqa: E402
from fakes.postgres_outage import StoppablePostgres  # noqa: E402
from fakes.slack_api import RunningBot, running_bot  # noqa: E402

from store.db import Database  # noqa: E402
from store.migrate import migrate  # noqa: E402
from store.outage import FRESH_FOR  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed_acks(bot: RunningBot, n: int) -> list[float]:
    out = []
    for _ in range(n):
        ts = f"{time.time():.6f}"
        started = time.perf_counter()
        response = bot.mention("how do I rotate the VPN cert?", ts=ts, event_id=_event_id())
        out.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return out


def timed_health(bot: RunningBot, n: int, expect: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        response = bot.http.get("/healthz")
        out.append(time.perf_counter() - started)
        assert response.status_code == expect, response.text
    return out


def _event_id() -> str:
    return f"Ev{uuid.uuid4().hex[:16].upper()}"


def recovery(bot: RunningBot) -> tuple[float, float]:
    """Seconds from Postgres ready until /healthz is 200, and until a mention is answered."""
    started = time.perf_counter()
    while bot.http.get("/healthz").status_code != 200:
        time.sleep(0.05)
    healthy = time.perf_counter() - started
    ts = f"{time.time():.6f}"
    bot.mention("back?", ts=ts, event_id=_event_id())
    bot.slack.wait_for(
        lambda: any(
            c.args.get("thread_ts") == ts and "VPN portal" in str(c.args.get("text"))
            for c in bot.slack.calls_to("chat.postMessage")
        ),
        60,
    )
    return healthy, time.perf_counter() - started


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values) * 1000, 1),
        "p95_ms": round(percentile(values, 0.95) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    postgres = StoppablePostgres()
    acks: dict[str, list[float]] = {"up": [], "down": []}
    health: dict[str, list[float]] = {"up": [], "down": []}
    recoveries: list[tuple[float, float]] = []
    db = Database.open(postgres.url, schema="bench_outage", max_size=8)
    try:
        migrate(db)
        with running_bot(db, FakeFlow()) as bot:
            for _ in range(args.rounds):
                acks["up"] += timed_acks(bot, args.n)
                health["up"] += timed_health(bot, args.n, 200)
                postgres.stop()
                time.sleep(FRESH_FOR)
                acks["down"] += timed_acks(bot, args.n)
                health["down"] += timed_health(bot, args.n, 503)
                postgres.start()
                recoveries.append(recovery(bot))
    finally:
        db.close()
        postgres.close()
    ack_up, ack_down = summary(acks["up"]), summary(acks["down"])
    health_up, health_down = summary(health["up"]), summary(health["down"])
    print(
        json.dumps(
            {
                "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": f"{platform.machine()} {os.cpu_count()} cpu",
                "load_avg_1m": round(os.getloadavg()[0], 2),
                "rounds": args.rounds,
                "per_round": args.n,
                "ack_store_up": ack_up,
                "ack_store_down": ack_down,
                "ack_p95_ratio_down_vs_up": round(ack_down["p95_ms"] / ack_up["p95_ms"], 2),
                "healthz_store_up": health_up,
                "healthz_store_down": health_down,
                "healthz_p95_ratio_down_vs_up": round(
                    health_down["p95_ms"] / health_up["p95_ms"], 2
                ),
                "recovery_healthz_s": [round(h, 2) for h, _ in recoveries],
                "recovery_first_answer_s": [round(a, 2) for _, a in recoveries],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
