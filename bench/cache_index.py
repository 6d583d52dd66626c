"""Recall and latency of the Postgres answer cache's HNSW index query, by ``hnsw.ef_search``.

N random unit vectors (384 dimensions: no topic structure, the hard case for a graph index)
are copied into a table shaped like ``answer_units``, the cache's partial expression index
is built once, then 200 near-duplicates (cosine 0.95 to a stored vector) are searched with the
cache's query shape (iterative scan, strict order, LIMIT 16). Reported per ef_search: the
share whose own vector came first, and p50/p95 of the query alone.

Then (``--lookups``, default 200) the same vectors become units of a real store schema
(``bench/cache.py``'s synthetic units, one scope, each citing one of N/10 artifacts), written
with one COPY per table as ``PostgresAnswerCache.put`` would write them (put takes half an
hour for 100,000 units on a loaded machine), and the backend's own ``lookup`` is timed: half
paraphrases (cosine 0.95, served), half unrelated questions (missed), three rounds, the query
alone above being the same-run baseline.

Run: .venv/bin/python bench/cache_index.py [--units 100000] [--lookups 200]
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
from psycopg.types.json import Jsonb

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from bench.cache import LIMITS, SCOPE, load_artifacts, measure_lookups, unit_for  # noqa: E402
from store.cache import Hit, PostgresAnswerCache  # noqa: E402
from store.cache._model import unit_to_json  # noqa: E402
from store.db import Database, start_embedded  # noqa: E402
from store.migrate import migrate  # noqa: E402

COPY_UNITS = """
COPY answer_units (unit_id, scope_key, question_norm, body, embedding, dim, created_at,
                   used_at, size_bytes)
FROM STDIN WITH (FORMAT BINARY)
"""
COPY_SOURCES = """
COPY answer_unit_sources (artifact_id, unit_id, content_hash, version)
FROM STDIN WITH (FORMAT BINARY)
"""

DIM = 384


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--ef", default="40,100,160")
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
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
    if args.lookups:
        out["backend_lookup"] = backend_lookups(url, vectors, args.lookups, args.rounds, rng)
    print(json.dumps(out, indent=1))


def fill_units(db: Database, vectors: np.ndarray) -> None:
    """The rows ``put`` writes for each unit (its body, size and provenance), in bulk."""
    with db.connection() as conn, conn.cursor() as cur:
        total = 0
        units = [unit_for(i) for i in range(len(vectors))]
        with cur.copy(COPY_UNITS) as copy:
            copy.set_types(
                ["text", "text", "text", "jsonb", "vector", "int4", "timestamptz", "timestamptz",
                 "int4"]
            )  # fmt: skip
            for unit, vector in zip(units, vectors, strict=True):
                body = {"question": unit.question, "answer": unit.answer, "mode": unit.mode}
                body["citations"] = json.loads(unit_to_json(unit))["citations"]
                size = len(unit_to_json(unit)) + vector.nbytes
                total += size
                copy.write_row(
                    (unit.unit_id, unit.scope, unit.normalised, Jsonb(body), vector, DIM,
                     unit.created_at, unit.created_at, size)
                )  # fmt: skip
        with cur.copy(COPY_SOURCES) as copy:
            copy.set_types(["text", "text", "text", "text"])
            for unit in units:
                for artifact, source in unit.provenance.items():
                    copy.write_row((artifact, unit.unit_id, source.content_hash, source.version))
        conn.execute(
            "UPDATE answer_cache_counters SET value = CASE name WHEN 'units' THEN %s ELSE %s END "
            "WHERE name IN ('units', 'bytes')",
            (len(vectors), total),
        )


def backend_lookups(
    url: str, vectors: np.ndarray, lookups: int, rounds: int, rng: np.random.Generator
) -> dict[str, object]:
    db = Database.open(url, schema="bench_cache_lookup")
    try:
        db.drop_schema()
        db.close()
        db = Database.open(url, schema="bench_cache_lookup")
        migrate(db)
        load_artifacts(db, len(vectors))
        started = time.perf_counter()
        fill_units(db, vectors)
        out: dict[str, object] = {"fill_s": round(time.perf_counter() - started, 1)}
        with db.connection() as conn:
            conn.execute("ANALYZE answer_units")
        cache = PostgresAnswerCache(db, limits=LIMITS)
        started = time.perf_counter()
        cache.lookup("a question never asked, to reach the index", SCOPE, vectors[0])
        out["first_lookup_with_index_build_s"] = round(time.perf_counter() - started, 1)
        hit = lambda a, q: isinstance(cache.lookup(a, SCOPE, q), Hit)  # noqa: E731
        out["lookup"] = measure_lookups(hit, vectors, lookups, rng, rounds)
        print(json.dumps(out), flush=True)
        return out
    finally:
        db.drop_schema()
        db.close()


if __name__ == "__main__":
    main()
