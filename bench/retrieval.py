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
shipped; the soft maximum ln(sum(exp(T*s)))/T; ``top2:A`` best + A x second best; ``margin:M``
best + M x (best - second best); ``lift:A`` best + A x (best - mean); ``contrast:A`` the best
cosine between the question and each sentence vector minus A x its chunk's vector, re-normalised,
which takes out the context a pooled sentence shares with its chunk; the benchmark swaps that
expression in the retriever's query, an instrument only). ``--keyword-shares``,
``--phrase-weights`` and ``--window-weights`` vary the SearchSettings fields of those names.
Every combination of the lists is scored; or name each variant with
``--variant w=2,pool=contrast:0.2,share=0.4,phrase=1,window=1`` (repeatable).
``--fusion zscore`` scales both scores to z-scores over the candidates instead of min-max
before they are mixed (the benchmark swaps the retriever's fusion function, an instrument only).
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


SIMILARITY = "(1 - (s.embedding <=> %(vector)s))"


def pool_expression(pool: str) -> str:
    """The aggregate over a chunk's sentences (``s``, the chunk is ``c``) for ``pool``."""
    if pool == "max":
        return MAX_SENTENCE
    kind, value = pool.split(":")
    a = float(value)
    ranked = f"(array_agg({SIMILARITY} ORDER BY {SIMILARITY} DESC))"
    best, second = f"{ranked}[1]", f"coalesce({ranked}[2], {ranked}[1])"
    if kind == "lse":
        return f"ln(sum(exp({a} * {SIMILARITY}))) / {a}"
    if kind == "top2":
        return f"{best} + {a} * {second}"
    if kind == "margin":
        return f"{best} + {a} * ({best} - {second})"
    if kind == "lift":
        return f"max({SIMILARITY}) + {a} * (max({SIMILARITY}) - avg({SIMILARITY}))"
    if kind == "contrast":
        # cos(q, s - a c) for unit q, s, c: (q.s - a q.c) / |s - a c|
        chunk = "(1 - (c.embedding <=> %(vector)s))"
        shared = "(1 - (s.embedding <=> c.embedding))"
        return f"max(({SIMILARITY} - {a} * {chunk}) / sqrt(1 + {a * a} - {2 * a} * {shared}))"
    raise SystemExit(f"unknown --sentence-pool {pool!r}")


def use_sentence_pool(pool: str) -> None:
    """Point the retriever's query at ``max`` (as shipped) or one of the variants above."""
    assert MAX_SENTENCE in SHIPPED_QUERY, "the retriever's query changed: update the bench"
    store.search.RANK_QUERY = SHIPPED_QUERY.replace(MAX_SENTENCE, pool_expression(pool))


SHIPPED_FUSE = store.search._fuse


def zscore_fuse(
    semantic: dict[int, float], keyword: dict[int, float], share: float
) -> dict[int, float]:
    """As the retriever's fusion, with z-scores over the candidates instead of min-max."""

    def z(values: dict[int, float]) -> dict[int, float]:
        spread = statistics.pstdev(values.values()) or 1.0
        mean = statistics.fmean(values.values())
        return {k: (v - mean) / spread for k, v in values.items()}

    sem, kw = z(semantic), z(keyword)
    low_sem, low_kw = min(sem.values()), min(kw.values())
    return {
        cid: share * kw.get(cid, low_kw) + (1 - share) * sem.get(cid, low_sem)
        for cid in sem.keys() | kw.keys()
    }


def use_fusion(fusion: str) -> None:
    store.search._fuse = zscore_fuse if fusion == "zscore" else SHIPPED_FUSE


def parse_variant(spec: str, shipped_weight: float) -> tuple[str, str, SearchSettings]:
    """``w=2,pool=max,share=0.4,phrase=1,window=1`` (any subset; the rest as shipped)."""
    fields = dict(part.split("=", 1) for part in spec.split(",") if part)
    unknown = fields.keys() - {"w", "pool", "share", "phrase", "window"}
    if unknown:
        raise SystemExit(f"unknown --variant fields {sorted(unknown)}")
    settings = SearchSettings(
        sentence_weight=float(fields.get("w", shipped_weight)),
        keyword_share=float(fields.get("share", SearchSettings.keyword_share)),
        phrase_weight=float(fields.get("phrase", SearchSettings.phrase_weight)),
        window_weight=float(fields.get("window", SearchSettings.window_weight)),
    )
    return spec, fields.get("pool", "max"), settings


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
    parser.add_argument("--keyword-shares", type=float, nargs="+", default=None)
    parser.add_argument("--phrase-weights", type=float, nargs="+", default=None)
    parser.add_argument("--window-weights", type=float, nargs="+", default=None)
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--fusion", choices=["minmax", "zscore"], default="minmax")
    args = parser.parse_args()
    use_fusion(args.fusion)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="kb-bench-retrieval-"))
    settings = load_settings({"KB_DATA_DIR": str(data_dir)})
    memo_dir = data_dir / "embed-memo"
    memo_dir.mkdir(parents=True, exist_ok=True)
    embedder = MemoEmbedder(LocalEmbedder(span_context=args.pool_context), memo_dir)
    # Default: the weight that ships for this signal (sync/embedding.py, SENTENCE_WEIGHT).
    shipped_weight = search_settings(embedder, args.sentences).sentence_weight
    weights = args.sentence_weights or [shipped_weight]
    if args.variant:
        variants = [parse_variant(spec, shipped_weight) for spec in args.variant]
    else:
        d = SearchSettings()
        variants = [
            (f"w{w:g} {pool} share{k:g} phrase{p:g} window{n:g}", pool, settings)
            for w in weights
            for pool in args.sentence_pool
            for k in args.keyword_shares or [d.keyword_share]
            for p in args.phrase_weights or [d.phrase_weight]
            for n in args.window_weights or [d.window_weight]
            for settings in [
                SearchSettings(sentence_weight=w, keyword_share=k, phrase_weight=p, window_weight=n)
            ]
        ]
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
            for mode in args.modes:
                for name, pool, search in variants:
                    use_sentence_pool(pool)
                    retriever = Retriever(store.db, counter, search)
                    result = run_mode(retriever, queries, qv, mode)
                    key = mode if len(variants) == 1 else f"{mode} {name}"
                    row[f"{key} recall@1"] = result["recall@1"]
                    row[f"{key} containment@5"] = result["containment@5"]
                    row[f"{key} p50 ms"] = result["latency_p50_ms"]
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
                "fusion": args.fusion,
                "ingest_s": round(ingest_s, 1),
                "load": os.getloadavg(),
                "numpy": np.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
