"""Store: bulk load of 100k chunks with embeddings (COPY), HNSW build, and top-10 query
latency and recall against exact search at several ``hnsw.ef_search`` values.

Run: .venv/bin/python bench/vector_store.py [--chunks 100000] [--queries 200]
Uses an embedded Postgres in a temporary folder unless KB_BENCH_DATABASE_URL is set. The
baseline in the same run is exact search (numpy brute force over the same vectors).
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
LATENT = 24


def text_like_vectors(n: int, rng: np.random.Generator, basis: np.ndarray) -> np.ndarray:
    """Unit vectors shaped like text embeddings: a mixture of 500 topics in a 24-dimensional
    latent space, projected into 384 dimensions, plus a little noise. (Isotropic noise in 384
    dimensions would make every neighbour about equally near, and "exact top 10" arbitrary.)"""
    centres = np.random.default_rng(99).normal(scale=3.0, size=(500, LATENT))
    latent = centres[rng.integers(0, len(centres), size=n)] + rng.normal(size=(n, LATENT))
    vectors = (latent @ basis + rng.normal(scale=0.05, size=(n, DIM))).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * share))], 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    basis = np.random.default_rng(5).normal(size=(LATENT, DIM)) / np.sqrt(DIM)
    url = os.environ.get("KB_BENCH_DATABASE_URL") or start_embedded(
        Path(tempfile.mkdtemp()), ephemeral=True
    )
    db = Database.open(url, schema=f"bench_{uuid.uuid4().hex[:8]}")
    try:
        migrate(db)
        bind_embedder(db, EmbedderIdentity("bench:text-like", DIM))
        vectors = text_like_vectors(args.chunks, rng, basis)
        with db.connection() as conn:  # a bulk load goes in first; the index is built once
            conn.execute("DROP INDEX chunks_embedding_hnsw")
        per_artifact = 10
        started = time.perf_counter()
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
        started = time.perf_counter()
        with db.connection() as conn:
            conn.execute("SET maintenance_work_mem = '1GB'")
            conn.execute(
                "CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw "
                "(embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
            )
        index_seconds = time.perf_counter() - started
        queries = text_like_vectors(args.queries, rng, basis)
        with db.connection() as conn:
            ids = np.array(
                [
                    r["chunk_id"]
                    for r in conn.execute("SELECT chunk_id FROM chunks ORDER BY chunk_id")
                ]
            )
        exact_ms: list[float] = []
        exact: list[set[int]] = []
        for q in queries:
            t = time.perf_counter()
            exact.append(set(ids[np.argsort(-(vectors @ q))[:10]].tolist()))
            exact_ms.append((time.perf_counter() - t) * 1000)
        sweep: dict[str, dict[str, float]] = {}
        for ef in (40, 64, 100):
            latencies: list[float] = []
            recalls: list[float] = []
            with db.connection() as conn:
                conn.execute(f"SET hnsw.ef_search = {ef}")
                for q, truth in zip(queries, exact, strict=True):
                    t = time.perf_counter()
                    rows = conn.execute(
                        "SELECT chunk_id FROM chunks ORDER BY embedding <=> %s LIMIT 10", (q,)
                    ).fetchall()
                    latencies.append((time.perf_counter() - t) * 1000)
                    recalls.append(len(truth & {r["chunk_id"] for r in rows}) / 10)
            sweep[f"ef_search={ef}"] = {
                "p50_ms": percentile(latencies, 0.5),
                "p95_ms": percentile(latencies, 0.95),
                "recall_at_10": round(float(np.mean(recalls)), 4),
            }
        print(
            json.dumps(
                {
                    "date": time.strftime("%Y-%m-%d"),
                    "machine": f"{platform.machine()} {os.cpu_count()} cores",
                    "chunks": args.chunks,
                    "copy_seconds": round(copy_seconds, 1),
                    "copy_chunks_per_s": round(args.chunks / copy_seconds),
                    "hnsw_build_seconds": round(index_seconds, 1),
                    "hnsw_top10": sweep,
                    "exact_numpy_p50_ms": percentile(exact_ms, 0.5),
                },
                indent=2,
            )
        )
    finally:
        db.drop_schema()
        db.close()


if __name__ == "__main__":
    main()
