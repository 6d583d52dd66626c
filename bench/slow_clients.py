"""Slow clients against the webhook listener: how long a valid delivery waits.

Run (from the repository root): .venv/bin/python -m bench.slow_clients [--slow 1000]
    [--rounds 5] [--deliveries 20]
Prints one JSON object; figures go to docs/BENCHMARKS.md ("Slow clients").

Each round times ``--deliveries`` signed deliveries (one at a time, a new connection each, as
Atlassian sends them) first with no other client, then while ``--slow`` connections each send
one header byte every 0.5 s (slow-loris), interleaved so machine noise hits both alike. The
figure is the latency under attack and its ratio to the quiet baseline of the same run.
Target: every delivery accepted, p95 under 1 s with 1,000 slow clients.

Uses the embedded Postgres (a temporary data dir) unless KB_BENCH_DATABASE_URL is set.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

from core.identities import Secret
from store.db import Database, start_embedded
from store.migrate import migrate
from sync.webhooks import build_webhook_app, serve_webhooks, sign

SECRET = "bench-webhook-secret-0123456789abcdef"


def _deliveries(url: str, count: int, start: int) -> list[float]:
    seconds = []
    for n in range(start, start + count):
        body = json.dumps(
            {"webhookEvent": "jira:issue_updated", "issue": {"id": str(n), "key": f"OPS-{n}"}}
        ).encode()
        began = time.perf_counter()
        response = httpx.post(
            f"{url}/webhooks/jira",
            content=body,
            headers={"X-Hub-Signature": sign(SECRET, body)},
            timeout=30,
        )
        seconds.append(time.perf_counter() - began)
        if response.status_code != 202:
            raise SystemExit(f"delivery {n} answered {response.status_code}")
    return seconds


def _with_slow_clients(port: int, count: int, work: threading.Event) -> None:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /webhooks/jira HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        sockets.append(sock)
    try:
        while not work.wait(0.5):
            for sock in sockets:
                with contextlib.suppress(OSError):  # the server may close them: its right
                    sock.send(b"a")
    finally:
        for sock in sockets:
            sock.close()


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slow", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--deliveries", type=int, default=20)
    args = parser.parse_args()
    url = os.environ.get("KB_BENCH_DATABASE_URL") or start_embedded(
        Path(tempfile.mkdtemp()), ephemeral=True
    )
    db = Database.open(url, schema=f"bench_{uuid.uuid4().hex[:8]}", max_size=8)
    quiet: list[float] = []
    attacked: list[float] = []
    try:
        migrate(db)
        server = serve_webhooks(build_webhook_app(Secret(SECRET), db), "127.0.0.1", 0).start()
        try:
            n = 1
            for _ in range(args.rounds):
                quiet += _deliveries(server.url, args.deliveries, n)
                n += args.deliveries
                done = threading.Event()
                slow = threading.Thread(
                    target=_with_slow_clients, args=(server.port, args.slow, done)
                )
                slow.start()
                time.sleep(1.0)  # all connected and dribbling
                attacked += _deliveries(server.url, args.deliveries, n)
                n += args.deliveries
                done.set()
                slow.join()
        finally:
            server.close()
    finally:
        db.drop_schema()
        db.close()
    print(
        json.dumps(
            {
                "date": datetime.now(UTC).strftime("%Y-%m-%d"),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load "
                f"{os.getloadavg()[0]:.1f}",
                "slow_clients": args.slow,
                "deliveries_each": len(quiet),
                "quiet_p50_ms": _ms(quiet, 0.5),
                "quiet_p95_ms": _ms(quiet, 0.95),
                "attacked_p50_ms": _ms(attacked, 0.5),
                "attacked_p95_ms": _ms(attacked, 0.95),
                "attacked_max_ms": round(max(attacked) * 1000, 1),
                "p50_ratio": round(statistics.median(attacked) / statistics.median(quiet), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
