"""Store: COPY of 100k chunks with embeddings, then HNSW top-10 latency and recall vs exact.

Run: .venv/bin/python bench/vector_store.py [--chunks 100000] [--queries 200]
Uses the embedded Postgres (a temporary data dir) unless KB_BENCH_DATABASE_URL is set.
The baseline in the same run is exact search (numpy brute force over the same vectors).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from store.db import Database, start_embedded
from store.migrate import migrate
from store.schema import EmbedderIdentity, bind_embedder

DIM = 384


def clustered_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors around 500 topic centres: closer to real text embeddings than uniform noise."""
    centres = rng.normal(size=(500, DIM)).astype(np.float32)
    picks = rng.integers(0, len(centres), size=n)
    vectors = centres[picks] + rng.normal(scale=0.9, size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    url = os.environ.get("KB_BENCH_DATABASE_URL") or start_embedded(
        Path(tempfile.mkdtemp()), ephemeral=True
    )
    db = Database.open(url, schema=f"bench_{uuid.uuid4().hex[:8]}")
    try:
        migrate(db)
        bind_embedder(db, EmbedderIdentity("bench:clustered", DIM))
        vectors = clustered_vectors(args.chunks, rng)
        started = time.perf_counter()
        per_artifact = 10
        with db.connection() as conn, conn.cursor() as cur:
            with cur.copy(
                "COPY artifacts (artifact_id, source, scope_key, title, url, version,"
                " content_hash, body) FROM STDIN"
            ) as copy:
                for a in range(0, args.chunks, per_artifact):
                    copy.write_row(
                        (
                            f"confluence:{a}",
                            "confluence",
                            "ENG",
                            f"Page {a}",
                            f"https://x/{a}",
                            "1",
                            "h",
                            "",
                        )
                    )
            with cur.copy(
                "COPY chunks (artifact_id, ord, source, scope_key, title, text, token_count,"
                " embedding) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["text", "int4", "text", "text", "text", "text", "int4", "vector"])
                for i, vec in enumerate(vectors):
                    a = i - i % per_artifact
                    copy.write_row(
                        (
                            f"confluence:{a}",
                            i % per_artifact,
                            "confluence",
                            "ENG",
                            f"Page {a}",
                            f"chunk {i} text",
                            300,
                            vec,
                        )
                    )
        copy_seconds = time.perf_counter() - started
        queries = clustered_vectors(args.queries, rng)
        latencies: list[float] = []
        recalls: list[float] = []
        exact_ms: list[float] = []
        with db.connection() as conn:
            conn.execute("SET hnsw.ef_search = 64")
            ids = np.array(
                [
                    r["chunk_id"]
                    for r in conn.execute("SELECT chunk_id FROM chunks ORDER BY chunk_id")
                ]
            )
            for q in queries:
                t = time.perf_counter()
                rows = conn.execute(
                    "SELECT chunk_id FROM chunks ORDER BY embedding <=> %s LIMIT 10", (q,)
                ).fetchall()
                latencies.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                exact = set(ids[np.argsort(-(vectors @ q))[:10]].tolist())
                exact_ms.append((time.perf_counter() - t) * 1000)
                recalls.append(len(exact & {r["chunk_id"] for r in rows}) / 10)
        latencies.sort()
        exact_ms.sort()
        print(
            json.dumps(
                {
                    "date": time.strftime("%Y-%m-%d"),
                    "machine": f"{platform.machine()} {os.cpu_count()} cores",
                    "chunks": args.chunks,
                    "copy_seconds_with_hnsw_index": round(copy_seconds, 1),
                    "copy_chunks_per_s": round(args.chunks / copy_seconds),
                    "hnsw_top10_p50_ms": round(latencies[len(latencies) // 2], 2),
                    "hnsw_top10_p95_ms": round(latencies[int(len(latencies) * 0.95)], 2),
                    "exact_numpy_p50_ms": round(exact_ms[len(exact_ms) // 2], 2),
                    "recall_at_10_vs_exact": round(float(np.mean(recalls)), 4),
                },
                indent=2,
            )
        )
    finally:
        db.drop_schema()
        db.close()


if __name__ == "__main__":
    main()
