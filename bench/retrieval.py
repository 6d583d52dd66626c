"""Retrieval quality and latency on squad-dev, on more than one slice of its questions.

``kb eval --limit 1000`` takes the first 1,000 judged questions, and 810 of those are about
one article (55 paragraphs on Super Bowl 50): a slice much harder at the top than the data set.
This runs the real ingest once (the sync engine into a throw-away schema, as ``kb eval``) and
then, per mode, the first 1,000 questions, every question, and seeded random samples of 1,000,
so the slices can be compared in one run on one store. Also reported: the plain
chunk-embedding nearest neighbour (what a pgvector tutorial's retriever returns), measured on
the same store, the same-run baseline for the vector-only reference point of issue 5.

Run: .venv/bin/python bench/retrieval.py [--samples 5] [--data-dir DIR]
(DIR keeps the embedded Postgres and the embedding memo between runs; default: a temp dir.)

Variants of the sentence signal (docs/BENCHMARKS.md, "Sentence signal"):
``--sentences pooled|separate|none``, ``--pool-context N`` (pooled units also average N word
pieces either side) and ``--sentence-weights W ...`` (the best sentence's weight in the
semantic score; each weight is scored on the same store, one hybrid column per weight),
``--sentence-pool max lse:T ...`` (how a chunk's sentence similarities become one: ``max`` as
shipped, or the soft maximum ln(sum(exp(T*s)))/T; the benchmark swaps that expression in the
retriever's query, an instrument only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import store.search  # noqa: E402
from kb.evaluation import EvalQuery, eval_store, load_queries, run_mode  # noqa: E402
from kb.settings import load_settings  # noqa: E402
from kb.wiring import database_url  # noqa: E402
from store.db import Database  # noqa: E402
from store.embedders.local import LocalEmbedder  # noqa: E402
from store.embedders.memo import MemoEmbedder  # noqa: E402
from store.search import Retriever, SearchSettings  # noqa: E402
from store.tokens import TokenCounter  # noqa: E402
from sync.embedding import search_settings  # noqa: E402

DATA = ROOT.parent / "shared" / "qa" / "squad-dev"
SHIPPED_QUERY = store.search.RANK_QUERY
MAX_SENTENCE = "max(1 - (s.embedding <=> %(vector)s))"


def use_sentence_pool(pool: str) -> None:
    """Point the retriever's query at ``max`` (as shipped) or a soft maximum ``lse:T``."""
    assert MAX_SENTENCE in SHIPPED_QUERY, "the retriever's query changed: update the bench"
    if pool == "max":
        store.search.RANK_QUERY = SHIPPED_QUERY
        return
    t = float(pool.split(":")[1])
    soft = f"ln(sum(exp({t} * (1 - (s.embedding <=> %(vector)s))))) / {t}"
    store.search.RANK_QUERY = SHIPPED_QUERY.replace(MAX_SENTENCE, soft)


def plain_vector_recall_at_1(db: Database, queries: list[EvalQuery], vectors: Any) -> float:
    """Top-1 by the chunk embedding alone (no sentences, no keywords)."""
    hits = 0
    with db.connection() as conn:
        for query, vector in zip(queries, vectors, strict=True):
            row = conn.execute(
                "SELECT artifact_id FROM chunks ORDER BY embedding <=> %s LIMIT 1", (vector,)
            ).fetchone()
            hits += row is not None and row["artifact_id"] in query.relevant
    return hits / len(queries)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--sentences", choices=["pooled", "separate", "none"], default="pooled")
    parser.add_argument("--modes", nargs="+", default=["vector", "keyword", "hybrid"])
    parser.add_argument("--no-all", action="store_true", help="skip the all-questions slice")
    parser.add_argument("--pool-context", type=int, default=0)
    parser.add_argument("--sentence-weights", type=float, nargs="+", default=None)
    parser.add_argument("--sentence-pool", nargs="+", default=["max"])
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="kb-bench-retrieval-"))
    settings = load_settings({"KB_DATA_DIR": str(data_dir)})
    memo_dir = data_dir / "embed-memo"
    memo_dir.mkdir(parents=True, exist_ok=True)
    embedder = MemoEmbedder(LocalEmbedder(span_context=args.pool_context), memo_dir)
    # Default: the weight that ships for this signal (sync/embedding.py, SENTENCE_WEIGHT).
    weights = args.sentence_weights or [search_settings(embedder, args.sentences).sentence_weight]
    counter = TokenCounter()
    everything = load_queries(DATA / "queries.jsonl", DATA / "qrels.tsv", None)
    slices: dict[str, list[int]] = {
        f"first {args.size}": list(range(args.size)),
    }
    if not args.no_all:
        slices[f"all {len(everything)}"] = list(range(len(everything)))
    for seed in range(args.samples):
        picked = random.Random(seed).sample(range(len(everything)), args.size)
        slices[f"random {args.size} (seed {seed})"] = sorted(picked)

    started = time.perf_counter()
    corpus = DATA / "corpus.jsonl"
    url = database_url(settings)
    with eval_store(url, embedder, counter, corpus, sentence_signal=args.sentences) as store:
        ingest_s = time.perf_counter() - started
        vectors = embedder.embed([q.text for q in everything], purpose="query")
        rows: list[dict[str, Any]] = []
        for name, idx in slices.items():
            queries = [everything[i] for i in idx]
            qv = vectors[idx]
            row: dict[str, Any] = {"slice": name}
            row["plain vector recall@1"] = round(plain_vector_recall_at_1(store.db, queries, qv), 3)
            variants = [(w, pool) for w in weights for pool in args.sentence_pool]
            for mode in args.modes:
                for weight, pool in variants:
                    use_sentence_pool(pool)
                    retriever = Retriever(store.db, counter, SearchSettings(sentence_weight=weight))
                    result = run_mode(retriever, queries, qv, mode)
                    key = mode if len(variants) == 1 else f"{mode} w{weight:g} {pool}"
                    row[f"{key} recall@1"] = result["recall@1"]
                    row[f"{key} containment@5"] = result["containment@5"]
                    row[f"{key} p95 ms"] = result["latency_p95_ms"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    samples = [r for r in rows if r["slice"].startswith("random")]
    if samples:
        summary = {
            "slice": f"random {args.size}: mean of {len(samples)}",
            **{
                key: round(statistics.mean(float(r[key]) for r in samples), 3)
                for key in samples[0]
                if key != "slice"
            },
        }
        print(json.dumps(summary))
    print(
        json.dumps(
            {
                "machine": f"{platform.machine()} {os.cpu_count()} cores",
                "python": platform.python_version(),
                "sentences": args.sentences,
                "pool_context": args.pool_context,
                "ingest_s": round(ingest_s, 1),
                "load": os.getloadavg(),
                "numpy": np.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
