"""Recall and latency of the Postgres answer cache's HNSW index query, by ``hnsw.ef_search``.

N random unit vectors (384 dimensions: no topic structure, the hard case for a graph index)
are copied into a table shaped like ``answer_units``, the cache's partial expression index
is built once, then 200 near-duplicates (cosine 0.95 to a stored vector) are searched with the
cache's query shape (iterative scan, strict order, LIMIT 16). Reported per ef_search: the
share whose own vector came first, and p50/p95 of the query alone.

Run: .venv/bin/python bench/cache_index.py [--units 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from store.db import start_embedded  # noqa: E402

DIM = 384


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--ef", default="40,100,160")
    args = parser.parse_args()
    url = os.environ.get("KB_BENCH_DATABASE_URL") or start_embedded(
        Path(tempfile.mkdtemp(prefix="kb-cache-index-")), ephemeral=True
    )
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(args.units, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    out: dict[str, object] = {"units": args.units, "load": os.getloadavg()}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        conn.execute("DROP SCHEMA IF EXISTS bench_cache_index CASCADE")
        conn.execute("CREATE SCHEMA bench_cache_index")
        conn.execute("SET search_path TO bench_cache_index, public")
        conn.execute("CREATE TABLE units (id int, embedding vector, dim int)")
        copy_sql = "COPY units (id, embedding, dim) FROM STDIN WITH (FORMAT BINARY)"
        with conn.cursor() as cur, cur.copy(copy_sql) as copy:
            copy.set_types(["int4", "vector", "int4"])
            for i, vector in enumerate(vectors):
                copy.write_row((i, vector, DIM))
        started = time.perf_counter()
        conn.execute(
            f"CREATE INDEX ON units USING hnsw ((embedding::vector({DIM})) vector_cosine_ops) "
            f"WITH (m = 16, ef_construction = 64) WHERE dim = {DIM}"
        )
        out["index_build_s"] = round(time.perf_counter() - started, 1)
        conn.execute("ANALYZE units")
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET hnsw.iterative_scan = strict_order")
        targets = rng.choice(args.units, 200, replace=False)
        for ef in (int(e) for e in args.ef.split(",")):
            conn.execute(f"SET hnsw.ef_search = {ef}")
            found, times = 0, []
            for i in targets:
                noise = rng.normal(size=DIM).astype(np.float32)
                noise -= noise.dot(vectors[i]) * vectors[i]
                noise /= np.linalg.norm(noise)
                q = 0.95 * vectors[i] + np.sqrt(1 - 0.95**2) * noise
                started = time.perf_counter()
                rows = conn.execute(
                    f"SELECT id FROM units WHERE dim = {DIM} "
                    f"ORDER BY embedding::vector({DIM}) <=> %s::vector({DIM}) LIMIT 16",
                    (q,),
                ).fetchall()
                times.append((time.perf_counter() - started) * 1000)
                found += bool(rows) and rows[0][0] == i
            out[f"ef_search {ef}"] = {
                "found_first": round(found / len(targets), 3),
                "p50_ms": round(float(np.percentile(times, 50)), 2),
                "p95_ms": round(float(np.percentile(times, 95)), 2),
            }
            print(json.dumps({ef: out[f"ef_search {ef}"]}), flush=True)
        conn.execute("DROP SCHEMA bench_cache_index CASCADE")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
