"""Answer latency through the real flow: a cache hit against a miss (retrieval + a fake
Messages API on loopback that answers at once), on the bundled sample knowledge base with the
local embedder behind the embedding memo, as ``kb`` wires it. The question's embedding is
included (a repeated question's comes from the memo).

Run: .venv/bin/python bench/answer_latency.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
sys.path.append(str(ROOT / "tests"))

from fakes.anthropic_api import fake_anthropic, text  # noqa: E402

from bot.answerer import ClaudeAnswerer, make_client  # noqa: E402
from bot.condense import condense_without_model  # noqa: E402
from bot.flow import Flow  # noqa: E402
from kb.sample import sample_connectors, sample_questions  # noqa: E402
from store.cache import DiskAnswerCache, StoreHashes  # noqa: E402
from store.db import Database, start_embedded  # noqa: E402
from store.embedders.local import LocalEmbedder  # noqa: E402
from store.embedders.memo import MemoEmbedder  # noqa: E402
from store.migrate import migrate  # noqa: E402
from store.schema import bind_embedder  # noqa: E402
from store.scope import Scope  # noqa: E402
from store.search import Retriever  # noqa: E402
from store.tokens import TokenCounter  # noqa: E402
from sync.chunking import Chunker  # noqa: E402
from sync.engine import SyncEngine  # noqa: E402


def pct(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * share))], 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    url = os.environ.get("KB_BENCH_DATABASE_URL") or start_embedded(tmp / "pg", ephemeral=True)
    db = Database.open(url, schema=f"bench_answer_{uuid.uuid4().hex[:8]}")
    # As kb wires it: the local model behind the embedding memo.
    embedder = MemoEmbedder(LocalEmbedder(), tmp / "memo")
    cache = None
    try:
        migrate(db)
        bind_embedder(db, embedder.identity)
        engine = SyncEngine(db, embedder, Chunker(TokenCounter()))
        for connector in sample_connectors():
            engine.run(connector, full=True)
        questions = [q["question"] for q in sample_questions()]
        cache = DiskAnswerCache(tmp / "cache", StoreHashes(db))
        with fake_anthropic() as api:
            client = make_client(api.key, api.url, max_retries=0)
            flow = Flow(
                db=db,
                embedder=embedder,
                retriever=Retriever(db, TokenCounter()),
                cache=cache,
                answerer=ClaudeAnswerer(client, "claude-bench-model"),
                condense=condense_without_model,
            )
            misses: list[float] = []
            hits: list[float] = []
            for round_ in range(args.rounds):
                for question in questions:
                    api.script(text("From the runbook [1]."))
                    asked = f"{question} (round {round_})"
                    started = time.perf_counter()
                    miss = flow.answer(asked, scope=Scope.everything())
                    misses.append((time.perf_counter() - started) * 1000)
                    started = time.perf_counter()
                    hit = flow.answer(asked, scope=Scope.everything())
                    hits.append((time.perf_counter() - started) * 1000)
                    assert not miss.cached and hit.cached
            client.close()
    finally:
        if cache is not None:
            cache.close()
        db.drop_schema()
        db.close()
    print(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d"),
                "machine": f"{platform.machine()} {os.cpu_count()} cores",
                "answers": len(misses),
                "miss_p50_ms": pct(misses, 0.5),
                "miss_p95_ms": pct(misses, 0.95),
                "hit_p50_ms": pct(hits, 0.5),
                "hit_p95_ms": pct(hits, 0.95),
                "hit_speedup_p50": round(statistics.median(misses) / statistics.median(hits), 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
