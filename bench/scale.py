"""Retrieval at company size: squad-dev among 100,000 (or 1,000,000) chunks of distractors.

Build (once per ``--data-dir`` and size; later runs reuse the schema):
  1. squad-dev's 913 paragraphs go through the real sync engine (chunking, embedding with the
     local model behind the embedding memo, sentence vectors, ``store.artifacts.replace``).
  2. Distractor pages are made of squad-dev's own sentences, shuffled across topics
     (bench/scale_corpus.py says how); real sentence embeddings, chunk vector = normalised mean.
     They are written with the HNSW and full-text indexes dropped and the term-statistics
     triggers disabled, through ``store.artifacts.replace`` per page or, with ``--bulk``, the
     same COPY statements batched over 20,000 chunks; then both indexes are built once and the
     term statistics rebuilt once.
Measure: a seeded sample of squad-dev questions, every mode, interleaved rounds, recall@1 and
containment@5 of the squad-dev paragraph among the distractors, and retrieval p50/p95 (the
question's embedding excluded). The retriever of ``--baseline`` (a commit; default main
before the hard postings budget) runs beside the current one in the same rounds, when its
``store/search.py`` can be loaded.

Run: .venv/bin/python bench/scale.py [--chunks 100000] [--data-dir DIR] [--questions 300] [--bulk]
     [--postings 2000,8000] [--agreement]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench.scale_corpus import (  # noqa: E402
    distractor_pages,
    sentence_pool,
    write_bulk,
    write_per_page,
)
from kb.evaluation import EVAL_SCOPE, load_queries, run_mode  # noqa: E402
from kb.settings import load_settings  # noqa: E402
from kb.wiring import build_embedder, database_url  # noqa: E402
from store.artifacts import ArtifactRow, ChunkRow, replace  # noqa: E402
from store.db import Database  # noqa: E402
from store.migrate import migrate  # noqa: E402
from store.schema import bind_embedder  # noqa: E402
from store.search import Retriever, SearchSettings, refresh_term_stats  # noqa: E402
from store.tokens import TokenCounter  # noqa: E402
from sync.chunking import Chunker  # noqa: E402
from sync.corpus import SCOPE, CorpusConnector  # noqa: E402
from sync.engine import SyncEngine  # noqa: E402

DATA = ROOT.parent / "shared" / "qa" / "squad-dev"
BASELINE = "8e37548"  # main before the hard postings budget (issue 16, round 3)
GIN = "CREATE INDEX chunks_tsv_gin ON chunks USING gin (tsv) WITH (fastupdate = off)"
HNSW = (
    "CREATE INDEX chunks_embedding_hnsw ON chunks "
    "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
)
SETTINGS = ("shared_buffers", "work_mem", "maintenance_work_mem", "effective_cache_size")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_distractors(
    db: Database, chunks: int, counter: TokenCounter, seed: int, bulk: bool
) -> int:
    pool = sentence_pool(db)
    log(f"sentence pool: {len(pool.texts)} sentences")
    pages = distractor_pages(pool, chunks, counter, seed)
    step = max(chunks // 10, 1)
    marks = {"next": step}

    def progress(written: int) -> None:
        if written >= marks["next"]:
            log(f"distractors: {written} chunks")
            marks["next"] = written + step

    if bulk:
        return write_bulk(db, pages, progress, batch_chunks=20_000)
    return write_per_page(db, pages, progress)


def build(
    db: Database, embedder: Any, counter: TokenCounter, chunks: int, seed: int, bulk: bool
) -> dict[str, Any]:
    timings: dict[str, float] = {}
    migrate(db)
    bind_embedder(db, embedder.identity)
    started = time.perf_counter()
    report = SyncEngine(db, embedder, Chunker(counter)).run(
        CorpusConnector(DATA / "corpus.jsonl"), full=True
    )
    timings["squad_sync_s"] = time.perf_counter() - started
    with db.connection() as conn:
        squad = int(conn.execute("SELECT count(*) AS n FROM chunks").fetchone()["n"])  # type: ignore[index]
        # Bulk load: indexes are built once afterwards (one index build instead of 100k
        # incremental HNSW and GIN insertions).
        conn.execute("DROP INDEX chunks_embedding_hnsw")
        conn.execute("DROP INDEX chunks_tsv_gin")
        for trigger in _term_triggers(conn):
            conn.execute(f"ALTER TABLE chunks DISABLE TRIGGER {trigger}")
    log(f"squad-dev synced: {squad} chunks, {report.counts}")
    started = time.perf_counter()
    write_distractors(db, chunks - squad, counter, seed, bulk)
    timings["distractor_write_s"] = time.perf_counter() - started
    with db.connection() as conn:
        conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
        started = time.perf_counter()
        conn.execute(GIN)
        timings["gin_build_s"] = time.perf_counter() - started
    log("GIN built")
    with db.connection() as conn:
        # The graph of 1,000,000 384-dimensional vectors takes about 2.5 GB; a build that
        # outgrows maintenance_work_mem goes on on disk, many times slower.
        memory = "2GB" if chunks <= 200_000 else "4GB"
        conn.execute(f"SET LOCAL maintenance_work_mem = '{memory}'")
        started = time.perf_counter()
        conn.execute(HNSW)
        timings["hnsw_build_s"] = time.perf_counter() - started
    log("HNSW built")
    with db.connection() as conn:
        for trigger in _term_triggers(conn):
            conn.execute(f"ALTER TABLE chunks ENABLE TRIGGER {trigger}")
        started = time.perf_counter()
        rebuild = getattr(sys.modules["store.search"], "rebuild_term_stats", None)
        (rebuild or refresh_term_stats)(conn)
        timings["term_stats_rebuild_s"] = time.perf_counter() - started
    with db.pool.connection() as conn:
        conn.autocommit = True
        for table in ("artifacts", "chunks", "chunk_sentences", "term_stats"):
            conn.execute(f"VACUUM ANALYZE {table}")
        conn.autocommit = False
    return {k: round(v, 1) for k, v in timings.items()}


def _term_triggers(conn: Any) -> list[str]:
    rows = conn.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'chunks'::regclass "
        "AND NOT tgisinternal AND tgname LIKE 'chunks_term_stats%%'"
    ).fetchall()
    return [r["tgname"] for r in rows]


def sizes(db: Database) -> dict[str, str]:
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_size_pretty(pg_relation_size(c.oid)) AS size "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'i') "
            "AND pg_relation_size(c.oid) > 1048576 ORDER BY pg_relation_size(c.oid) DESC",
            (db.schema,),
        ).fetchall()
    return {r["relname"]: r["size"] for r in rows}


def server_settings(db: Database) -> dict[str, str]:
    with db.connection() as conn:
        out = {name: conn.execute(f"SHOW {name}").fetchone()[name] for name in SETTINGS}  # type: ignore[index]
        out["server_version"] = conn.execute("SHOW server_version").fetchone()["server_version"]  # type: ignore[index]
        out["pgvector"] = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()["extversion"]  # type: ignore[index]
    return out


def baseline_retriever(commit: str, db: Database, counter: TokenCounter) -> Any | None:
    """The Retriever of ``commit``'s store/search.py, loaded beside the current one."""
    try:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{commit}:store/search.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    path = Path(tempfile.mkdtemp(prefix="kb-baseline-")) / "baseline_search.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("baseline_search", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_search"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.Retriever(db, counter)


def measure(
    retrievers: dict[str, Any], queries: list[Any], vectors: Any, rounds: int
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for round_ in range(1, rounds + 1):
        for mode in ("vector", "keyword", "hybrid"):
            for name, retriever in retrievers.items():
                r = run_mode(retriever, queries, vectors, mode)
                row = {
                    "round": round_,
                    "retriever": name,
                    "mode": mode,
                    "recall@1": r["recall@1"],
                    "containment@5": r["containment@5"],
                    "p50_ms": r["latency_p50_ms"],
                    "p95_ms": r["latency_p95_ms"],
                }
                print(json.dumps(row), flush=True)
                results.append(row)
    return results


def agreement(retrievers: dict[str, Any], queries: list[Any], vectors: Any) -> dict[str, Any]:
    """Per question and mode: does each retriever return the same top 10 artifacts, in the
    same order, as the last one (the baseline)?"""
    *names, last = list(retrievers)
    out: dict[str, Any] = {}
    for mode in ("keyword", "hybrid"):
        same = dict.fromkeys(names, 0)
        for query, vector in zip(queries, vectors, strict=True):
            ranked = {
                name: [p.artifact_id for p in r.search(query.text, vector, EVAL_SCOPE, limit=10,
                                                        token_budget=10**7, mode=mode)]
                for name, r in retrievers.items()
            }  # fmt: skip
            for name in names:
                same[name] += ranked[name] == ranked[last]
        out[mode] = {f"{n} vs {last}": f"{k} of {len(queries)} identical" for n, k in same.items()}
    return out


def time_term_stats(db: Database, counter: TokenCounter, embedder: Any) -> dict[str, float]:
    """One page re-written (as a sync of one changed page), then the statistics refresh."""
    with db.connection() as conn:
        row = conn.execute(
            "SELECT artifact_id, title, text, embedding FROM chunks "
            "WHERE artifact_id LIKE 'confluence:distractor-%%' ORDER BY chunk_id LIMIT 1"
        ).fetchone()
    if row is None:
        return {}
    text = row["text"] + " Edited."
    artifact = ArtifactRow(
        row["artifact_id"], "confluence", SCOPE, row["title"], "https://wiki.example.com/x",
        "2", hashlib.sha256(text.encode()).hexdigest(), (), text, None,
    )  # fmt: skip
    vector = np.asarray(row["embedding"].to_numpy(), dtype=np.float32)[None, :]
    out: dict[str, float] = {}
    started = time.perf_counter()
    with db.connection() as conn:
        replace(conn, artifact, [ChunkRow(0, "", text, counter.count(text))], vector)
    out["replace_one_page_ms"] = round((time.perf_counter() - started) * 1000, 1)
    started = time.perf_counter()
    with db.connection() as conn:
        refresh_term_stats(conn)
    out["refresh_term_stats_ms"] = round((time.perf_counter() - started) * 1000, 1)
    rebuild = getattr(sys.modules["store.search"], "rebuild_term_stats", None)
    if rebuild is not None:
        started = time.perf_counter()
        with db.connection() as conn:
            rebuild(conn)
        out["full_rebuild_term_stats_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", default=BASELINE, help="commit; 'none' to skip")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--rebuild", action="store_true", help="drop and rebuild the store")
    parser.add_argument(
        "--bulk", action="store_true", help="write distractors in large COPY batches"
    )
    parser.add_argument("--first", action="store_true", help="the first N questions, not a sample")
    parser.add_argument("--agreement", action="store_true", help="compare rankings per question")
    parser.add_argument(
        "--postings", default="", help="extra keyword_postings budgets to compare, e.g. 4000,16000"
    )
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="kb-bench-scale-"))
    settings = load_settings({"KB_DATA_DIR": str(data_dir)})
    embedder = build_embedder(settings)
    counter = TokenCounter()
    db = Database.open(database_url(settings), schema=f"kb_scale_{args.chunks}")
    report: dict[str, Any] = {"chunks_asked": args.chunks}
    with db.connection() as conn:
        have = conn.execute(
            "SELECT count(*) AS n FROM pg_tables "
            "WHERE schemaname = %s AND tablename = 'store_meta'",
            (db.schema,),
        ).fetchone()
        built = bool(have and have["n"]) and not args.rebuild
        if built:
            built = conn.execute("SELECT count(*) AS n FROM store_meta").fetchone()["n"] > 0  # type: ignore[index]
    if not built:
        db.drop_schema()
        db.close()
        db = Database.open(database_url(settings), schema=f"kb_scale_{args.chunks}")
        report["build"] = build(db, embedder, counter, args.chunks, args.seed, args.bulk)
        log(f"built: {report['build']}")
    else:
        migrate(db)
    with db.connection() as conn:
        report["chunks"] = conn.execute("SELECT count(*) AS n FROM chunks").fetchone()["n"]  # type: ignore[index]
        report["sentences"] = conn.execute("SELECT count(*) AS n FROM chunk_sentences").fetchone()[
            "n"
        ]  # type: ignore[index]
    everything = load_queries(DATA / "queries.jsonl", DATA / "qrels.tsv", None)
    picked = sorted(random.Random(args.seed).sample(range(len(everything)), args.questions))
    if args.first:  # the slice `kb eval --limit N` takes
        picked = list(range(min(args.questions, len(everything))))
    queries = [everything[i] for i in picked]
    vectors = embedder.embed([q.text for q in queries], purpose="query")
    retrievers: dict[str, Any] = {"current": Retriever(db, counter)}
    for budget in (int(b) for b in args.postings.split(",") if b):
        settings = SearchSettings(keyword_postings=budget)
        retrievers[f"postings {budget}"] = Retriever(db, counter, settings)
    if args.baseline != "none":
        base = baseline_retriever(args.baseline, db, counter)
        if base is not None:
            retrievers[f"baseline {args.baseline}"] = base
    report["ef_search_used"] = max(40, retrievers["current"].settings.vector_candidates)
    report["results"] = measure(retrievers, queries, vectors, args.rounds)
    if args.agreement and len(retrievers) > 1:
        report["same_top_10"] = agreement(retrievers, queries, vectors)
    report["term_stats"] = time_term_stats(db, counter, embedder)
    report["settings"] = server_settings(db)
    report["sizes"] = sizes(db)
    report["machine"] = f"{platform.machine()} {os.cpu_count()} cores"
    report["load"] = os.getloadavg()
    report["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    summary: dict[str, Any] = {}
    for row in report["results"]:
        key = f"{row['retriever']} {row['mode']}"
        entry = summary.setdefault(
            key, {"recall@1": row["recall@1"], "cont@5": row["containment@5"], "p50": [], "p95": []}
        )
        entry["p50"].append(row["p50_ms"])
        entry["p95"].append(row["p95_ms"])
    report["summary"] = summary
    report.pop("results")
    print(json.dumps(report, indent=1, default=str))
    db.close()


if __name__ == "__main__":
    main()
