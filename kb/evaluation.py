"""``kb eval``: retrieval quality and latency on a BEIR-layout data set.

The corpus is ingested through the real sync engine (checksum gate, chunking, embedding,
indexing) into a schema of its own, which is dropped afterwards; then every query runs through
the real retriever. No model is called.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import KbError
from store.db import Database
from store.embedders import Embedder
from store.migrate import migrate
from store.schema import bind_embedder
from store.scope import Scope
from store.search import Mode, Retriever
from store.tokens import TokenCounter
from sync.chunking import Chunker
from sync.corpus import SCOPE, CorpusConnector
from sync.embedding import SentenceSignal, search_settings
from sync.engine import SyncEngine


@dataclass(frozen=True)
class EvalQuery:
    query_id: str
    text: str
    answers: tuple[str, ...]
    relevant: frozenset[str]


def load_queries(queries: Path, qrels: Path, limit: int | None) -> list[EvalQuery]:
    relevant: dict[str, set[str]] = {}
    try:
        with qrels.open(encoding="utf-8") as fh:
            for row in csv.reader(fh, delimiter="\t"):
                if len(row) < 2 or row[0] == "query_id":
                    continue
                if len(row) < 3 or row[2].strip() not in ("0", ""):
                    relevant.setdefault(row[0], set()).add(f"confluence:{row[1]}")
        out: list[EvalQuery] = []
        with queries.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    qid, text = str(entry["_id"]), str(entry["text"])
                except (ValueError, KeyError, TypeError):
                    raise KbError(
                        f"{queries}:{number} is not a BEIR query with _id and text"
                    ) from None
                if qid not in relevant:
                    continue
                answers = tuple(str(a) for a in entry.get("answers") or ())
                out.append(EvalQuery(qid, text, answers, frozenset(relevant[qid])))
                if limit is not None and len(out) >= limit:
                    break
    except OSError as exc:
        raise KbError(f"cannot read {exc.filename}: {exc.strerror}") from None
    if not out:
        raise KbError(f"no query in {queries} has a relevance judgement in {qrels}")
    return out


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


@dataclass(frozen=True)
class EvalStore:
    db: Database
    retriever: Retriever


@contextmanager
def eval_store(
    url: str,
    embedder: Embedder,
    counter: TokenCounter,
    corpus: Path,
    *,
    sentence_signal: SentenceSignal = "pooled",
) -> Iterator[EvalStore]:
    """A throw-away schema holding ``corpus``, ingested through the real sync engine; it is
    dropped when the block ends."""
    db = Database.open(url, schema=f"kb_eval_{os.getpid()}_{uuid.uuid4().hex[:6]}")
    try:
        migrate(db)
        bind_embedder(db, embedder.identity)
        connector = CorpusConnector(corpus)
        engine = SyncEngine(db, embedder, Chunker(counter), sentence_signal=sentence_signal)
        report = engine.run(connector, full=True)
        if report.counts.failed:
            raise KbError(f"ingesting the corpus failed: {'; '.join(report.errors[:3])}")
        with db.connection() as conn:
            # Fresh planner statistics, so the first mode is not timed against a bulk load
            # the planner has not seen yet.
            for table in ("artifacts", "chunks", "chunk_sentences", "term_stats"):
                conn.execute(f"ANALYZE {table}")
        yield EvalStore(db, Retriever(db, counter, search_settings(embedder, sentence_signal)))
    finally:
        db.drop_schema()
        db.close()


EVAL_SCOPE = Scope.parse(f"confluence:{SCOPE}")


def evaluate(
    url: str,
    embedder: Embedder,
    counter: TokenCounter,
    corpus: Path,
    queries: list[EvalQuery],
    modes: Sequence[Mode],
    k: int = 5,
) -> list[dict[str, Any]]:
    """Ingest ``corpus`` into a throw-away schema, run ``queries`` once per mode."""
    with eval_store(url, embedder, counter, corpus) as store:
        vectors = embedder.embed([q.text for q in queries], purpose="query")
        return [run_mode(store.retriever, queries, vectors, mode, k) for mode in modes]


JSON_KEYS = (
    "queries",
    "mode",
    "recall@1",
    "recall@5",
    "recall@10",
    "mrr@10",
    "containment@1",
    "containment@5",
    "containment@10",
    "latency_p50_ms",
    "latency_p95_ms",
)


def run_mode(
    retriever: Retriever,
    queries: Sequence[EvalQuery],
    vectors: Any,
    mode: Mode,
    k_asked: int = 5,
) -> dict[str, Any]:
    """Recall, MRR and answer containment at 1, 5, 10 (and ``k_asked``) and latency for one
    retrieval mode; ``vectors`` are the questions' embeddings, in order."""
    ks = sorted({1, 5, 10, k_asked})
    depth = max(ks)
    recall = {k: 0.0 for k in ks}
    contained = {k: 0 for k in ks}
    reciprocal = {10: 0.0, k_asked: 0.0}
    latencies: list[float] = []
    for query, vector in zip(queries, vectors, strict=True):
        started = time.perf_counter()
        passages = retriever.search(
            query.text, vector, EVAL_SCOPE, limit=depth, token_budget=10**7, mode=mode
        )
        latencies.append((time.perf_counter() - started) * 1000)
        ranked = [p.artifact_id for p in passages]
        for k in ks:
            recall[k] += len(query.relevant & set(ranked[:k])) / len(query.relevant)
            text = " ".join(p.text for p in passages[:k]).lower()
            contained[k] += any(a.lower() in text for a in query.answers)
        first = next((i for i, a in enumerate(ranked, 1) if a in query.relevant), None)
        for cut in reciprocal:
            if first is not None and first <= cut:
                reciprocal[cut] += 1 / first
    n = len(queries)
    result: dict[str, Any] = {"queries": n, "mode": mode}
    for k in ks:
        result[f"recall@{k}"] = round(recall[k] / n, 4)
        result[f"containment@{k}"] = round(contained[k] / n, 4)
    for cut, total in reciprocal.items():
        result[f"mrr@{cut}"] = round(total / n, 4)
    result["latency_p50_ms"] = round(statistics.median(latencies), 2)
    result["latency_p95_ms"] = round(_percentile(latencies, 0.95), 2)
    return result


def json_view(result: dict[str, Any]) -> dict[str, Any]:
    """Exactly the keys docs/ARCHITECTURE.md ("Commands") promises for ``kb eval --json``."""
    return {key: result[key] for key in JSON_KEYS}


def format_report(result: dict[str, Any], k: int) -> str:
    return (
        f"{result['mode']:>7}: {result['queries']} queries  recall@1 {result['recall@1']:.3f}  "
        f"recall@{k} {result[f'recall@{k}']:.3f}  MRR@{k} {result[f'mrr@{k}']:.3f}  "
        f"containment@{k} {result[f'containment@{k}']:.3f}  "
        f"retrieval p50 {result['latency_p50_ms']:.1f} ms p95 {result['latency_p95_ms']:.1f} ms"
    )
