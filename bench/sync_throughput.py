"""Sync throughput: a generated 2,000-page space served by the fake Confluence (Cloud, REST v2
listing) into the store with the local embedder, then a re-sync of the unchanged space.

Run: .venv/bin/python bench/sync_throughput.py [--pages 2000]
Reports pages/s, the share of the run not spent embedding (fetch, convert, chunk, write), and
the unchanged re-sync's embedding calls and pages/s. The fake server lives in tests/fakes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

# The repo root first (its packages, not tests/ namespace folders of the same names), then
# tests/ for the fake Confluence server.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
sys.path.append(str(ROOT / "tests"))

from fakes.atlassian import FakeConfluence  # noqa: E402

from core.http import RetryPolicy  # noqa: E402
from store.db import Database, start_embedded  # noqa: E402
from store.embedders import Purpose, Vectors  # noqa: E402
from store.embedders.local import LocalEmbedder  # noqa: E402
from store.migrate import migrate  # noqa: E402
from store.schema import EmbedderIdentity, bind_embedder  # noqa: E402
from store.tokens import TokenCounter  # noqa: E402
from sync.chunking import Chunker  # noqa: E402
from sync.confluence import ConfluenceConnector  # noqa: E402
from sync.engine import SyncEngine  # noqa: E402

WORDS = [
    "deploy",
    "rollback",
    "kafka",
    "broker",
    "partition",
    "on-call",
    "escalation",
    "runbook",
    "database",
    "failover",
    "certificate",
    "vault",
    "secret",
    "rotation",
    "latency",
    "incident",
    "postmortem",
    "dashboard",
    "alert",
    "pager",
    "service",
    "gateway",
    "dispatch",
    "orders",
    "tracking",
    "label",
    "queue",
    "consumer",
    "lag",
    "retry",
    "timeout",
]


class TimedEmbedder:
    """Wraps an embedder, counting calls and the time spent inside it."""

    def __init__(self, inner: LocalEmbedder) -> None:
        self.inner = inner
        self.calls = 0
        self.seconds = 0.0

    @property
    def identity(self) -> EmbedderIdentity:
        return self.inner.identity

    def embed(self, texts: Sequence[str], *, purpose: Purpose = "document") -> Vectors:
        started = time.perf_counter()
        try:
            return self.inner.embed(texts, purpose=purpose)
        finally:
            self.calls += 1
            self.seconds += time.perf_counter() - started


def page_body(rng: random.Random, n: int) -> str:
    paragraphs = []
    for p in range(4):
        words = " ".join(rng.choice(WORDS) for _ in range(55))
        paragraphs.append(f"<h2>Section {p} of page {n}</h2><p>{words}.</p>")
    rows = "".join(
        f"<tr><td>host-{n}-{r}</td><td>{rng.randint(1, 65535)}</td></tr>" for r in range(3)
    )
    return "".join(paragraphs) + f"<table><tr><th>Host</th><th>Port</th></tr>{rows}</table>"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=2000)
    args = parser.parse_args()
    rng = random.Random(11)
    url = os.environ.get("KB_BENCH_DATABASE_URL") or start_embedded(
        Path(tempfile.mkdtemp()), ephemeral=True
    )
    db = Database.open(url, schema=f"bench_sync_{uuid.uuid4().hex[:8]}")
    embedder = TimedEmbedder(LocalEmbedder())
    embedder.inner.load()
    with FakeConfluence(cloud=True) as fake:
        for n in range(args.pages):
            fake.add_page("ENG", f"Generated page {n}", page_body(rng, n))
        connector = ConfluenceConnector(
            fake.site(),
            ("ENG",),
            policy=RetryPolicy(attempts=3, base_delay=0.05),
            page_size=100,
        )
        try:
            migrate(db)
            bind_embedder(db, embedder.identity)
            engine = SyncEngine(db, embedder, Chunker(TokenCounter()))
            started = time.perf_counter()
            first = engine.run(connector, full=True)
            full_seconds = time.perf_counter() - started
            embed_seconds, embed_calls = embedder.seconds, embedder.calls
            started = time.perf_counter()
            again = engine.run(connector, full=True)
            resync_seconds = time.perf_counter() - started
        finally:
            connector.close()
            db.drop_schema()
            db.close()
    print(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d"),
                "machine": f"{platform.machine()} {os.cpu_count()} cores",
                "pages": args.pages,
                "full_sync": {
                    "synced": first.counts.synced,
                    "failed": first.counts.failed,
                    "seconds": round(full_seconds, 1),
                    "pages_per_s": round(args.pages / full_seconds, 2),
                    "embedding_seconds": round(embed_seconds, 1),
                    "embedding_calls": embed_calls,
                    "share_not_embedding": round(1 - embed_seconds / full_seconds, 3),
                },
                "unchanged_resync": {
                    "unchanged": again.counts.unchanged,
                    "embedding_calls": embedder.calls - embed_calls,
                    "seconds": round(resync_seconds, 2),
                    "pages_per_s": round(args.pages / resync_seconds, 1),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
