"""Webhooks: listener throughput with durable 2xx, and accepted -> processed latency.

Run (from the repository root): .venv/bin/python -m bench.webhooks [--deliveries 5000]
    [--processes 2] [--threads 8] [--server-threads 8] [--latency-events 100]
Prints one JSON object; figures go to docs/BENCHMARKS.md ("Webhooks").

Uses the embedded Postgres (a temporary data dir) unless KB_BENCH_DATABASE_URL is set, and the
fake Confluence Cloud server of the tests on 127.0.0.1.

* Throughput: ``--processes`` sender processes of ``--threads`` threads, each thread with a
  keep-alive connection (http.client: light, so the CPUs go to the listener), send signed
  (X-Hub-Signature) page_updated deliveries for distinct pages to the real waitress listener;
  every 2xx is given only after the event's INSERT has committed (synchronous_commit as the
  server has it, on by default). The worker is not running, so this is the listener alone.
  Target: >= 500 deliveries/s.
* Latency: one delivery at a time (each for a page just edited on the fake), with the worker
  running at its defaults (0.2 s quiet period, which a burst needs and a lone edit pays):
  webhook accepted (the row's received_at) -> processed (processed_at: page re-fetched,
  re-chunked, re-embedded with the HashingEmbedder, upserted, listener told), both read from
  the database clock; plus the same as seen by the sender, from its 2xx to the row being done.
  Target: p95 well under 2 s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from core.http import RetryPolicy
from core.identities import Secret
from store.db import Database, start_embedded
from store.migrate import migrate
from store.schema import bind_embedder
from store.tokens import TokenCounter
from sync.chunking import Chunker
from sync.confluence import ConfluenceConnector
from sync.engine import SyncEngine
from sync.webhook_worker import WebhookWorker
from sync.webhooks import build_webhook_app, serve_webhooks, sign

SECRET = "bench-webhook-secret-0123456789abcdef"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def page_body(page_id: str, version: int, n: int) -> bytes:
    return json.dumps(
        {
            "userAccountId": "557058:bench",
            "page": {"id": int(page_id), "spaceKey": "ENG", "version": version},
            "timestamp": n,
        }
    ).encode()


def _client_process(
    base_url: str, page_ids: list[str], numbers: range, threads: int, go: Any, results: Any
) -> None:
    """One sender process: ``threads`` threads with a keep-alive connection each, started
    together with the other processes once every one has finished importing. Senders use
    http.client, a light client, so that the box's CPUs go to the listener under test."""
    address = urlsplit(base_url)
    local = threading.local()
    opened: list[http.client.HTTPConnection] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def send(n: int) -> None:
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = http.client.HTTPConnection(
                address.hostname or "127.0.0.1", address.port, timeout=30
            )
            with lock:
                opened.append(connection)
        body = page_body(page_ids[n % len(page_ids)], 2, n)
        connection.request(
            "POST",
            "/webhooks/confluence/page_updated",
            body=body,
            headers={"X-Hub-Signature": sign(SECRET, body), "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        response.read()
        with lock:
            statuses.append(response.status)

    results.put("ready")
    go.wait()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, numbers))
    for connection in opened:
        connection.close()
    results.put(statuses)


def throughput(
    base_url: str, page_ids: list[str], deliveries: int, processes: int, threads: int
) -> dict[str, Any]:
    """Senders run in their own processes, as Atlassian does: the listener's process (and
    its GIL) serves, it does not also play the client."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    go = context.Event()
    workers = [
        context.Process(
            target=_client_process,
            args=(base_url, page_ids, range(p, deliveries, processes), threads, go, results),
        )
        for p in range(processes)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        assert results.get() == "ready"
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    go.set()
    statuses = [status for _ in workers for status in results.get()]
    seconds = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    # This process only serves during the run (senders are other processes).
    server_cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (
        cpu_after.ru_stime - cpu_before.ru_stime
    )
    for worker in workers:
        worker.join()
    return {
        "deliveries": deliveries,
        "sender_processes": processes,
        "threads_per_process": threads,
        "seconds": round(seconds, 3),
        "accepted_per_second": round(sum(s in (200, 202) for s in statuses) / seconds, 1),
        "non_2xx": sum(s not in (200, 202) for s in statuses) + deliveries - len(statuses),
        "listener_cpu_ms_per_delivery": round(server_cpu / deliveries * 1000, 3),
    }


def latency(
    db: Database, base_url: str, fake: Any, events: int, pages: list[Any]
) -> dict[str, Any]:
    db_ms: list[float] = []
    sender_ms: list[float] = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for n in range(events):
            page = pages[n % len(pages)]
            fake.edit_page(page.id, body=f"<p>Edit {n}: restart the gateway {n} times.</p>")
            body = page_body(page.id, page.version, n)
            response = client.post(
                "/webhooks/confluence/page_updated",
                content=body,
                headers={"X-Hub-Signature": sign(SECRET, body)},
            )
            accepted = time.perf_counter()
            event_id = response.json()["event_id"]
            while True:
                with db.connection() as conn:
                    row = conn.execute(
                        "SELECT status, extract(epoch FROM processed_at - received_at) AS s"
                        " FROM webhook_events WHERE event_id = %s",
                        (event_id,),
                    ).fetchone()
                if row is not None and row["status"] != "pending":
                    break
                time.sleep(0.002)
            sender_ms.append((time.perf_counter() - accepted) * 1000)
            db_ms.append(float(row["s"]) * 1000)
            time.sleep(0.05)  # one at a time: no coalescing helps these
    return {
        "events": events,
        "accepted_to_processed_ms_p50": round(statistics.median(db_ms), 1),
        "accepted_to_processed_ms_p95": round(percentile(db_ms, 0.95), 1),
        "sender_2xx_to_done_ms_p50": round(statistics.median(sender_ms), 1),
        "sender_2xx_to_done_ms_p95": round(percentile(sender_ms, 0.95), 1),
        "worker_quiet_s": 0.2,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--processes", type=int, default=2, help="sender processes")
    parser.add_argument("--threads", type=int, default=8, help="sender threads per process")
    parser.add_argument("--latency-events", type=int, default=100)
    parser.add_argument("--server-threads", type=int, default=8, help="waitress threads")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    # waitress warns whenever requests queue for a thread: expected under a load test.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    from fakes.atlassian import FakeConfluence
    from fakes.embedder import HashingEmbedder

    url = os.environ.get("KB_BENCH_DATABASE_URL") or start_embedded(
        Path(tempfile.mkdtemp()), ephemeral=True
    )
    db = Database.open(url, schema=f"bench_{uuid.uuid4().hex[:8]}", max_size=12)
    try:
        migrate(db)
        embedder = HashingEmbedder(dimension=384)
        bind_embedder(db, embedder.identity)
        with FakeConfluence(cloud=True) as fake:
            pages = [
                fake.add_page("ENG", f"Runbook {n}", f"<p>Restart service {n}.</p>")
                for n in range(200)
            ]
            connector = ConfluenceConnector(
                fake.site(), ("ENG",), policy=RetryPolicy(attempts=3, base_delay=0.05)
            )
            engine = SyncEngine(db, embedder, Chunker(TokenCounter()))
            worker = WebhookWorker(db, engine, {"confluence": connector})
            app = build_webhook_app(Secret(SECRET), db, on_stored=worker.wake)
            server = serve_webhooks(app, "127.0.0.1", 0, threads=args.server_threads).start()
            base_url = f"http://127.0.0.1:{server.port}"
            try:
                listener = throughput(
                    base_url, [p.id for p in pages], args.deliveries, args.processes, args.threads
                )
                with db.connection() as conn:  # the throughput run's events are not measured
                    conn.execute("UPDATE webhook_events SET status = 'superseded'")
                stop = threading.Event()
                thread = threading.Thread(target=worker.run_forever, args=(stop,))
                thread.start()
                try:
                    processing = latency(db, base_url, fake, args.latency_events, pages[:20])
                finally:
                    stop.set()
                    worker.wake()
                    thread.join()
            finally:
                server.close()
                connector.close()
    finally:
        db.drop_schema()
        db.close()
    print(
        json.dumps(
            {
                "bench": "webhooks",
                "date": time.strftime("%Y-%m-%d"),
                "machine": {
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                },
                "listener": listener,
                "processing": processing,
                "targets": {"accepted_per_second": 500, "accepted_to_processed_ms_p95": 2000},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
