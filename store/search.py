"""Hybrid retrieval: pgvector nearest neighbours + BM25 over Postgres full-text, fused.

The channel's scope filters every query in SQL. Keyword candidates come from an OR of the
question's informative lexemes (an AND of every word, as ``websearch_to_tsquery`` gives,
misses most natural-language questions) and are re-scored with BM25, with title and heading
matches weighted up, using document frequencies kept in ``term_stats``, plus phrase and
density signals from the tsvector positions. Every candidate of either list gets both an exact
cosine and a keyword score; the two are min-max scaled and mixed (score fusion beats
reciprocal-rank fusion at the top of the list here). An exact Jira key in the question pulls
that issue first.
Results are grouped per artifact (best chunks kept) and cut to a token budget.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from store._scoring import (
    ParsedVector,
    bm25,
    densest_window,
    idf,
    ordered_lexemes,
    parse_tsvector,
    proximity,
)
from store.db import Connection, Database
from store.passages import Passage
from store.scope import Scope
from store.tokens import TokenCounter

Mode = Literal["hybrid", "vector", "keyword"]
JIRA_KEY = re.compile(r"\b([A-Z][A-Z0-9]{1,9}-\d{1,7})\b")


@dataclass(frozen=True)
class SearchSettings:
    vector_candidates: int = 40
    keyword_candidates: int = 60
    keyword_share: float = 0.5  # weight of the keyword score against cosine in the fusion
    phrase_weight: float = 0.5
    window_weight: float = 0.5
    window_width: int = 15
    bm25_k1: float = 0.9
    bm25_b: float = 0.4
    chunks_per_artifact: int = 2
    max_common_share: float = 0.25  # lexemes in more chunks than this don't pick candidates


_SCOPE_SQL = """
(%(all)s OR (c.source || ':' || c.scope_key) = ANY(%(exact)s) OR c.source = ANY(%(whole)s))
"""

VECTOR_QUERY = f"""
SELECT c.chunk_id, 1 - (c.embedding <=> %(q)s) AS similarity
FROM chunks c
WHERE {_SCOPE_SQL}
ORDER BY c.embedding <=> %(q)s
LIMIT %(limit)s
"""

KEYWORD_QUERY = f"""
SELECT c.chunk_id, c.tsv::text AS tsv
FROM chunks c, to_tsquery('english', %(tsquery)s) query
WHERE c.tsv @@ query AND {_SCOPE_SQL}
ORDER BY ts_rank_cd(c.tsv, query, 1) DESC
LIMIT %(limit)s
"""

QUESTION_VECTOR = "SELECT to_tsvector('english', %s)::text AS tsv"

CANDIDATE_SIGNALS = """
SELECT chunk_id, tsv::text AS tsv, 1 - (embedding <=> %s) AS similarity
FROM chunks WHERE chunk_id = ANY(%s)
"""

TERM_DF = "SELECT lexeme, ndoc FROM term_stats WHERE lexeme = ANY(%s)"

CORPUS_STATS = "SELECT chunks, avg_length FROM corpus_stats"

KEY_CHUNKS = f"""
SELECT c.chunk_id FROM chunks c JOIN artifacts a USING (artifact_id)
WHERE a.artifact_id = ANY(%(ids)s) AND a.deleted_at IS NULL AND {_SCOPE_SQL}
ORDER BY c.ord
"""

CHUNK_DETAILS = """
SELECT c.chunk_id, c.artifact_id, c.ord, c.heading, c.text, c.token_count,
       a.title, a.url, a.content_hash, a.version, a.synced_at
FROM chunks c JOIN artifacts a USING (artifact_id)
WHERE c.chunk_id = ANY(%s) AND a.deleted_at IS NULL
"""

REFRESH_TERM_STATS = [
    "DELETE FROM term_stats",
    """INSERT INTO term_stats (lexeme, ndoc)
       SELECT word, ndoc FROM ts_stat('SELECT tsv FROM chunks')""",
    "DELETE FROM corpus_stats",
    """INSERT INTO corpus_stats (chunks, avg_length)
       SELECT count(*), coalesce(avg(length(tsv)), 1) FROM chunks""",
]


def refresh_term_stats(conn: Connection) -> None:
    """Recompute document frequencies for BM25 (after a sync run that changed content)."""
    for statement in REFRESH_TERM_STATS:
        conn.execute(statement)


def _scope_params(scope: Scope) -> dict[str, Any]:
    parts = scope.sql_filter()
    if parts is None:
        return {"all": True, "exact": [], "whole": []}
    exact, whole = parts
    return {"all": False, "exact": exact, "whole": whole}


@dataclass(frozen=True)
class _Terms:
    ordered: list[str]
    weights: dict[str, float]
    avg_length: float
    candidate_query: str


def _fuse(cosine: dict[int, float], keyword: dict[int, float], share: float) -> dict[int, float]:
    """Convex combination of min-max normalised cosine and keyword scores."""

    def scaled(values: dict[int, float]) -> dict[int, float]:
        low, high = min(values.values()), max(values.values())
        span = (high - low) or 1.0
        return {k: (v - low) / span for k, v in values.items()}

    cos, kw = scaled(cosine), scaled(keyword)
    return {
        cid: share * kw.get(cid, 0.0) + (1 - share) * cos.get(cid, 0.0)
        for cid in cos.keys() | kw.keys()
    }


class Retriever:
    """Hybrid search over one store. Thread-safe: every call takes its own connection."""

    def __init__(
        self, db: Database, counter: TokenCounter, settings: SearchSettings | None = None
    ) -> None:
        self._db = db
        self._counter = counter
        self.settings = settings or SearchSettings()
        self._iterative_scan = self._supports_iterative_scan()

    def _supports_iterative_scan(self) -> bool:
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()
        if row is None:
            return False
        major, minor = (int(x) for x in str(row["extversion"]).split(".")[:2])
        return (major, minor) >= (0, 8)

    def search(
        self,
        question: str,
        question_vector: np.ndarray[Any, Any] | None,
        scope: Scope,
        *,
        limit: int = 8,
        token_budget: int = 3000,
        mode: Mode = "hybrid",
    ) -> list[Passage]:
        params = _scope_params(scope)
        with self._db.connection() as conn:
            ranked = self._rank_chunks(conn, question, question_vector, params, mode)
            if not ranked:
                return []
            details = {
                r["chunk_id"]: r for r in conn.execute(CHUNK_DETAILS, (list(ranked),)).fetchall()
            }
        return self._passages(ranked, details, limit, token_budget)

    def rank_chunks(
        self,
        question: str,
        question_vector: np.ndarray[Any, Any] | None,
        scope: Scope,
        mode: Mode = "hybrid",
    ) -> dict[int, float]:
        """Fused chunk scores, best first (for evaluation and debugging)."""
        with self._db.connection() as conn:
            return self._rank_chunks(conn, question, question_vector, _scope_params(scope), mode)

    def _rank_chunks(
        self,
        conn: Connection,
        question: str,
        vector: np.ndarray[Any, Any] | None,
        params: dict[str, Any],
        mode: Mode,
    ) -> dict[int, float]:
        s = self.settings
        cosine: dict[int, float] = {}
        if mode in ("hybrid", "vector") and vector is not None:
            if self._iterative_scan:
                # Keeps filtered HNSW scans from returning fewer rows than asked for.
                conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            rows = conn.execute(
                VECTOR_QUERY, {**params, "q": vector, "limit": s.vector_candidates}
            ).fetchall()
            cosine = {r["chunk_id"]: float(r["similarity"]) for r in rows}
        parsed: dict[int, ParsedVector] = {}
        terms = self._question_terms(conn, question) if mode != "vector" else None
        if terms is not None:
            rows = conn.execute(
                KEYWORD_QUERY,
                {**params, "tsquery": terms.candidate_query, "limit": s.keyword_candidates},
            ).fetchall()
            parsed = {r["chunk_id"]: parse_tsvector(r["tsv"]) for r in rows}
        if mode == "hybrid" and terms is not None and vector is not None:
            missing = (set(cosine) - set(parsed)) | (set(parsed) - set(cosine))
            if missing:
                for r in conn.execute(CANDIDATE_SIGNALS, (vector, list(missing))).fetchall():
                    cosine.setdefault(r["chunk_id"], float(r["similarity"]))
                    parsed.setdefault(r["chunk_id"], parse_tsvector(r["tsv"]))
        keyword = (
            {cid: self._keyword_score(doc, terms) for cid, doc in parsed.items()} if terms else {}
        )
        if mode == "vector" or not keyword:
            scores = dict(cosine)
        elif mode == "keyword" or not cosine:
            scores = dict(keyword)
        else:
            scores = _fuse(cosine, keyword, s.keyword_share)
        keys = [f"jira:{k}" for k in dict.fromkeys(JIRA_KEY.findall(question))]
        if keys:
            top = max(scores.values(), default=0.0) + 1.0
            rows = conn.execute(KEY_CHUNKS, {**params, "ids": keys}).fetchall()
            for i, row in enumerate(rows):
                scores[row["chunk_id"]] = top + 1.0 / (i + 1)
        return dict(sorted(scores.items(), key=lambda kv: kv[1], reverse=True))

    def _question_terms(self, conn: Connection, question: str) -> _Terms | None:
        row = conn.execute(QUESTION_VECTOR, (question,)).fetchone()
        ordered = ordered_lexemes(row["tsv"]) if row else []
        if not ordered:
            return None
        stats = conn.execute(CORPUS_STATS).fetchone()
        total = int(stats["chunks"]) if stats else 0
        avg_length = float(stats["avg_length"]) if stats else 1.0
        df = {r["lexeme"]: int(r["ndoc"]) for r in conn.execute(TERM_DF, (ordered,)).fetchall()}
        total = max(total, max(df.values(), default=1))
        weights = {lex: idf(total, df.get(lex, 0)) for lex in ordered}
        # Very common lexemes still score, but do not pick candidates (they would pick all).
        picking = [
            lex for lex in ordered if df.get(lex, 0) <= self.settings.max_common_share * total
        ]
        picking = picking or sorted(ordered, key=lambda lex: -weights[lex])[:3]
        query = " | ".join(_quote_lexeme(lex) for lex in picking)
        return _Terms(ordered, weights, avg_length, query)

    def _keyword_score(self, doc: ParsedVector, terms: _Terms) -> float:
        s = self.settings
        score = bm25(doc, terms.weights, terms.avg_length, k1=s.bm25_k1, b=s.bm25_b)
        score += s.phrase_weight * proximity(doc, terms.ordered, terms.weights)
        if s.window_weight:
            score += s.window_weight * densest_window(doc, terms.weights, s.window_width)
        return score

    def _passages(
        self,
        ranked: dict[int, float],
        details: dict[int, dict[str, Any]],
        limit: int,
        token_budget: int,
    ) -> list[Passage]:
        by_artifact: dict[str, list[tuple[int, float]]] = {}
        for chunk_id, score in ranked.items():
            row = details.get(chunk_id)
            if row is None:
                continue
            picked = by_artifact.setdefault(row["artifact_id"], [])
            if len(picked) < self.settings.chunks_per_artifact:
                picked.append((chunk_id, score))
        passages: list[Passage] = []
        used = 0
        for artifact_id, picked in list(by_artifact.items())[:limit]:
            rows = sorted((details[c] for c, _ in picked), key=lambda r: r["ord"])
            text = "\n\n".join(r["text"] for r in rows)
            cost = sum(int(r["token_count"]) for r in rows)
            if passages and used + cost > token_budget:
                continue
            if cost > token_budget:
                text = self._counter.trim(text, token_budget)
                cost = token_budget
            used += cost
            first = rows[0]
            passages.append(
                Passage(
                    artifact_id=artifact_id,
                    title=first["title"],
                    url=first["url"],
                    heading=first["heading"],
                    text=text,
                    chunk_ids=tuple(int(r["chunk_id"]) for r in rows),
                    score=picked[0][1],
                    content_hash=first["content_hash"],
                    version=first["version"],
                    synced_at=first["synced_at"],
                )
            )
        return passages


def _quote_lexeme(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def artifact_ranking(ranked: dict[int, float], chunk_artifacts: dict[int, str]) -> list[str]:
    """Artifact ids in order of their best chunk (for evaluation)."""
    seen: dict[str, None] = {}
    for chunk_id in ranked:
        artifact = chunk_artifacts.get(chunk_id)
        if artifact is not None:
            seen.setdefault(artifact, None)
    return list(seen)


def lookup_chunk_artifacts(db: Database, chunk_ids: Sequence[int]) -> dict[int, str]:
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT chunk_id, artifact_id FROM chunks WHERE chunk_id = ANY(%s)", (list(chunk_ids),)
        ).fetchall()
    return {r["chunk_id"]: r["artifact_id"] for r in rows}
