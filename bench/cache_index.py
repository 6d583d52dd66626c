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
paraphrases (cosine 0.95, served), half unrelated questions (missed), three rounds. The
same-run baseline is the backend's own index query (``UNITS_NEAREST_INDEXED`` at ef_search
160, one statement), timed question by question just before each lookup.

``--vectors text`` replaces the random vectors by real sentence embeddings: the packaged
MiniLM's embeddings of N distinct word windows (6-16 words) of squad-dev's paragraphs as the
cached questions, and of squad-dev's real questions as the other half of the lookups. Random
vectors have no structure for the graph to follow and cost it about four times the work;
real questions cluster by topic. Embedding 100,000 windows takes about 4.5 minutes; the
vectors are kept (plain ``.npy``) in ``--data-dir`` for the next run.

Run: .venv/bin/python bench/cache_index.py [--units 100000] [--lookups 200]
     [--vectors random|text] [--data-dir DIR] [--lookups-only]
(``--data-dir`` keeps the server and the filled cache, so a second run, e.g. from another
commit's checkout with the same DIR, times lookups only: an A/B of two backends.)
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

from bench.cache import (  # noqa: E402
    LIMITS,
    SCOPE,
    load_artifacts,
    pct,
    questions_asked,
    timed,
    unit_for,
)
from store.cache import Hit, PostgresAnswerCache  # noqa: E402
from store.cache._model import unit_to_json  # noqa: E402
from store.cache._postgres_sql import UNITS_NEAREST_INDEXED  # noqa: E402
from store.db import Database, start_embedded  # noqa: E402
from store.migrate import migrate  # noqa: E402

COPY_UNITS = """
COPY answer_units (unit_id, scope_key, question_norm, body, embedding, dim, created_at,
                   size_bytes)
FROM STDIN WITH (FORMAT BINARY)
"""
COPY_USE = "COPY answer_unit_use (unit_id, used_at) FROM STDIN WITH (FORMAT BINARY)"
COPY_SOURCES = """
COPY answer_unit_sources (artifact_id, unit_id, content_hash, version)
FROM STDIN WITH (FORMAT BINARY)
"""

DIM = 384
SQUAD = Path(__file__).resolve().parents[2] / "shared" / "qa" / "squad-dev"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--ef", default="40,100,160")
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep the embedded Postgres and the filled cache here, reused by the next run",
    )
    parser.add_argument("--lookups-only", action="store_true", help="skip the ef_search sweep")
    parser.add_argument("--vectors", choices=("random", "text"), default="random")
    parser.add_argument("--schema", default=None, help="one per code version in an A/B")
    args = parser.parse_args()
    schema = args.schema or f"bench_cache_lookup_{args.vectors}"
    folder = args.data_dir or Path(tempfile.mkdtemp(prefix="kb-cache-index-"))
    folder.mkdir(parents=True, exist_ok=True)
    url = os.environ.get("KB_BENCH_DATABASE_URL") or start_embedded(
        folder, ephemeral=args.data_dir is None
    )
    rng = np.random.default_rng(7)
    unrelated = None
    if args.vectors == "text":
        vectors, unrelated = text_vectors(args.units, folder)
    else:
        vectors = rng.normal(size=(args.units, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    out: dict[str, object] = {
        "units": args.units, "vectors": args.vectors, "load": os.getloadavg()
    }  # fmt: skip
    if not args.lookups_only:
        out.update(ef_sweep(url, vectors, [int(e) for e in args.ef.split(",")], rng))
    if args.lookups:
        out["backend_lookup"] = backend_lookups(
            url, vectors, args.lookups, args.rounds, rng,
            keep=args.data_dir is not None, schema=schema, unrelated=unrelated,
        )  # fmt: skip
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))


def text_vectors(n: int, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of n distinct squad-dev word windows (the cached questions) and of
    squad-dev's questions (the others asked), by the packaged embedder; kept in ``folder``."""
    units_file, asked_file = folder / f"text-units-{n}.npy", folder / "text-questions.npy"
    if units_file.exists() and asked_file.exists():
        return np.load(units_file), np.load(asked_file)  # allow_pickle is off by default
    from store.embedders.local import LocalEmbedder

    rng = np.random.default_rng(5)
    with open(SQUAD / "corpus.jsonl", encoding="utf-8") as f:
        paragraphs = [json.loads(line)["text"].split() for line in f]
    windows: set[str] = set()
    while len(windows) < n:
        words = paragraphs[int(rng.integers(len(paragraphs)))]
        size = int(rng.integers(6, 17))
        if len(words) > size:
            start = int(rng.integers(0, len(words) - size))
            windows.add(" ".join(words[start : start + size]))
    texts = sorted(windows)
    rng.shuffle(texts)
    with open(SQUAD / "queries.jsonl", encoding="utf-8") as f:
        questions = [json.loads(line)["text"] for line in f][:1000]
    embedder = LocalEmbedder()
    started = time.perf_counter()
    units = embedder.embed(texts, purpose="query").astype(np.float32)
    asked = embedder.embed(questions, purpose="query").astype(np.float32)
    print(json.dumps({"embedded_s": round(time.perf_counter() - started, 1)}), flush=True)
    np.save(units_file, units)
    np.save(asked_file, asked)
    return units, asked


def ef_sweep(
    url: str, vectors: np.ndarray, efs: list[int], rng: np.random.Generator
) -> dict[str, object]:
    """The bare index query on a table of its own: near-duplicates found first, by ef_search."""
    out: dict[str, object] = {}
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
            f"CREATE INDEX ON units USING hnsw ((embedding::halfvec({DIM})) halfvec_cosine_ops) "
            f"WITH (m = 16, ef_construction = 64) WHERE dim = {DIM}"
        )
        out["index_build_s"] = round(time.perf_counter() - started, 1)
        conn.execute("ANALYZE units")
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET hnsw.iterative_scan = strict_order")
        targets = rng.choice(len(vectors), 200, replace=False)
        for ef in efs:
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
                    f"ORDER BY embedding::halfvec({DIM}) <=> %s::vector({DIM})::halfvec({DIM}) "
                    "LIMIT 16",
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
    return out


def fill_units(db: Database, vectors: np.ndarray) -> None:
    """The rows ``put`` writes for each unit (its body, size and provenance), in bulk."""
    with db.connection() as conn, conn.cursor() as cur:
        total = 0
        units = [unit_for(i) for i in range(len(vectors))]
        with cur.copy(COPY_UNITS) as copy:
            copy.set_types(
                ["text", "text", "text", "jsonb", "vector", "int4", "timestamptz", "int4"]
            )
            for unit, vector in zip(units, vectors, strict=True):
                body = {"question": unit.question, "answer": unit.answer, "mode": unit.mode}
                body["citations"] = json.loads(unit_to_json(unit))["citations"]
                size = len(unit_to_json(unit)) + vector.nbytes
                total += size
                copy.write_row(
                    (unit.unit_id, unit.scope, unit.normalised, Jsonb(body), vector, DIM,
                     unit.created_at, size)
                )  # fmt: skip
        with cur.copy(COPY_USE) as copy:
            copy.set_types(["text", "timestamptz"])
            for unit in units:
                copy.write_row((unit.unit_id, unit.created_at))
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
    url: str,
    vectors: np.ndarray,
    lookups: int,
    rounds: int,
    rng: np.random.Generator,
    keep: bool = False,
    schema: str = "bench_cache_lookup",
    unrelated: np.ndarray | None = None,
) -> dict[str, object]:
    """``PostgresAnswerCache.lookup`` against its own index query, interleaved question by
    question (the query alone first, then the lookup), so both see the same machine."""
    db = Database.open(url, schema=schema)
    out: dict[str, object] = {}
    try:
        if not (keep and _filled(db, len(vectors))):
            db.drop_schema()
            db.close()
            db = Database.open(url, schema=schema)
            migrate(db)
            load_artifacts(db, len(vectors))
            started = time.perf_counter()
            fill_units(db, vectors)
            out["fill_s"] = round(time.perf_counter() - started, 1)
            # Vacuumed now, as a store in use would be: otherwise autovacuum's first pass over
            # the new rows runs during the first round and triples its latency.
            with db.connection(autocommit=True) as conn:
                for table in ("answer_units", "answer_unit_use", "answer_unit_sources"):
                    conn.execute(f"VACUUM (ANALYZE) {table}")
        cache = PostgresAnswerCache(db, limits=LIMITS)
        started = time.perf_counter()
        cache.lookup("a question never asked, to reach the index", SCOPE, vectors[0])
        out["first_lookup_s"] = round(time.perf_counter() - started, 1)
        asked = questions_asked(vectors, lookups, rng, unrelated)
        out["rounds"] = [_round(db, cache, asked) for _ in range(rounds)]
        best = min(out["rounds"], key=lambda r: r["lookup_p95_ms"])  # type: ignore[arg-type, index]
        out["best_round"] = best
        print(json.dumps(out), flush=True)
        return out
    finally:
        if not keep:
            db.drop_schema()
        db.close()


def _filled(db: Database, units: int) -> bool:
    with db.connection() as conn:
        table = conn.execute(
            "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename = 'answer_units'"
        ).fetchone()
        if table is None:
            return False
        row = conn.execute("SELECT count(*) AS n FROM answer_units").fetchone()
    return row is not None and int(row["n"]) == units


def _round(
    db: Database, cache: PostgresAnswerCache, asked: list[tuple[str, np.ndarray, bool]]
) -> dict[str, float]:
    query_ms, lookup_ms, hit_ms, served = [], [], [], 0
    with db.pool.connection() as conn:
        conn.autocommit = True
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET hnsw.ef_search = 160")
        conn.execute("SET hnsw.iterative_scan = strict_order")
        sql = UNITS_NEAREST_INDEXED.format(dim=DIM)
        for text, q, paraphrase in asked:
            params = {"scope": SCOPE.key(), "q": q, "cutoff": 0.85, "limit": 16}
            _, ms = timed(lambda p=params: conn.execute(sql, p).fetchall())
            query_ms.append(ms)
            found, ms = timed(lambda a=text, v=q: cache.lookup(a, SCOPE, v))
            lookup_ms.append(ms)
            if paraphrase:
                hit_ms.append(ms)
                served += isinstance(found, Hit)
        for name in ("enable_seqscan", "hnsw.ef_search", "hnsw.iterative_scan"):
            conn.execute(f"RESET {name}")
        conn.autocommit = False
    row = {
        "query_p50_ms": pct(query_ms, 0.5),
        "query_p95_ms": pct(query_ms, 0.95),
        "lookup_p50_ms": pct(lookup_ms, 0.5),
        "lookup_p95_ms": pct(lookup_ms, 0.95),
        "hit_p95_ms": pct(hit_ms, 0.95),
        "paraphrases_served": round(served / max(len(hit_ms), 1), 3),
    }
    row["lookup_over_query_p95"] = round(row["lookup_p95_ms"] / row["query_p95_ms"], 2)
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    main()
