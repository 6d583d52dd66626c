"""Hybrid retrieval: pgvector nearest neighbours + BM25 over Postgres full-text, fused.

One SQL statement per question gathers the candidates and every signal: the question's
lexemes with their document frequencies (``term_stats``), the nearest chunks by embedding
(HNSW), the chunks matching any informative lexeme (GIN; an AND of every word, as
``websearch_to_tsquery`` gives, misses most natural-language questions; rarest lexemes first,
up to a budget of postings read, so the keyword step does not grow with the corpus), and for each
candidate of either list its exact cosine, its best sentence's cosine (``chunk_sentences``)
and the positions of the question's lexemes in it. The channel's scope filters in SQL.

In Python each candidate gets a semantic score (chunk cosine + best sentence cosine: a
question usually paraphrases one sentence, which a whole-chunk embedding blurs) and a keyword
score (BM25 with title and heading hits weighted up, plus phrase and densest-window signals
from the positions, each lexeme's IDF scaled by how rare it is among the candidates: a word
every candidate shares decides nothing); both are min-max scaled over the candidates and mixed
(score fusion beats reciprocal-rank fusion at the top of the list here). An exact Jira key
in the question pulls that issue first. Results are grouped per artifact (best chunks kept)
and cut to a token budget; only the chunks that make it into passages are read in full.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from store import term_stats
from store._scoring import ParsedVector, bm25, densest_window, pick_lexemes, proximity
from store.db import Connection, Database
from store.passages import Passage
from store.scope import Scope
from store.tokens import TokenCounter

Mode = Literal["hybrid", "vector", "keyword"]
JIRA_KEY = re.compile(r"\b([A-Z][A-Z0-9]{1,9}-\d{1,7})\b")


@dataclass(frozen=True)
class SearchSettings:
    vector_candidates: int = 60
    keyword_candidates: int = 80
    keyword_share: float = 0.4  # weight of the keyword score against the semantic one
    sentence_weight: float = 1.0  # best sentence's cosine, added to the chunk's cosine
    phrase_weight: float = 1.0
    window_weight: float = 1.0
    window_width: int = 15
    bm25_k1: float = 0.9
    bm25_b: float = 0.75
    chunks_per_artifact: int = 2
    max_common_share: float = 0.25  # lexemes in more chunks than this don't pick candidates
    # Rarest lexemes first, while their postings (matching rows) total at most this: the
    # keyword step's cost stays bounded as the corpus grows; None reads every informative one.
    keyword_postings: int | None = 4000
    # The lexemes past the budget still rank the best keyword_pool x keyword_candidates chunks
    # of the rarer ones (a membership test on those few rows, not a read of their postings).
    keyword_pool: int = 4
    candidate_idf_power: float = 0.5  # how much rarity among the candidates scales IDF


_SCOPE_SQL = """
(%(all)s OR (c.source || ':' || c.scope_key) = ANY(%(exact)s) OR c.source = ANY(%(whole)s))
"""

# The question's lexemes and their IDF; the informative ones (in at most max_common_share of
# the chunks; the three rarest if none is), rarest first while all their postings together
# stay within keyword_postings (at 100,000 chunks "system" alone matches 19,900 rows, each a
# heap visit, and the lexeme that crossed a soft budget was read whole), pick keyword
# candidates, one GIN lookup each, ranked by the IDF mass of the lexemes they hold
# (ts_rank_cd knows nothing of rarity and would read every match's tsvector), shorter first;
# the lexemes past the budget then add their IDF to the best kw_pool rows that hold them.
# When even the rarest is past the budget (every word of the question is common: the rarest
# of "Where was Super Bowl 50 held?" has 84,000 postings at 1,000,000 chunks, 0.75 s of heap
# visits), the candidates are the chunks holding all of them ("joint": GIN intersects the
# lists inside the index), at most a budget of rows read.
# Each candidate's tsvector comes back as text for BM25 and phrase scoring.
RANK_QUERY = rf"""
WITH question AS MATERIALIZED (
    SELECT u.lexeme, u.positions[1] AS at, coalesce(t.ndoc, 0) AS ndoc
    FROM unnest(to_tsvector('english', %(question)s)) u
    LEFT JOIN term_stats t ON t.lexeme = u.lexeme
),
stats AS MATERIALIZED (
    SELECT greatest(coalesce((SELECT max(chunks) FROM corpus_stats), 0),
                    coalesce((SELECT max(ndoc) FROM question), 0), 1) AS total,
           coalesce((SELECT max(avg_length) FROM corpus_stats), 1) AS avg_length
),
weighted AS MATERIALIZED (
    SELECT q.lexeme, q.at, q.ndoc,
           ln(1 + (s.total - q.ndoc + 0.5) / (q.ndoc + 0.5)) AS idf,
           q.ndoc <= %(common)s * s.total AS informative,
           row_number() OVER (ORDER BY q.ndoc, q.lexeme) AS rarity
    FROM question q, stats s
),
eligible AS MATERIALIZED (
    SELECT w.lexeme, w.idf, w.ndoc,
           coalesce(sum(w.ndoc) OVER (ORDER BY w.ndoc, w.lexeme
                                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
               AS rarer_postings
    FROM weighted w
    WHERE w.informative
       OR (w.rarity <= 3 AND NOT EXISTS (SELECT 1 FROM weighted i WHERE i.informative))
),
quoted AS MATERIALIZED (
    SELECT e.idf, ('''' || replace(replace(e.lexeme, E'\\', E'\\\\'), '''', '''''') || '''')
               AS lexeme,
           %(postings)s::bigint IS NULL OR e.rarer_postings + e.ndoc <= %(postings)s::bigint
               AS within
    FROM eligible e
),
picked AS MATERIALIZED (
    SELECT q.idf, q.lexeme::tsquery AS query, q.within FROM quoted q
),
vec AS MATERIALIZED (
    SELECT c.chunk_id FROM chunks c
    WHERE {_SCOPE_SQL}
    ORDER BY c.embedding <=> %(vector)s
    LIMIT %(vector_limit)s
),
joint AS MATERIALIZED (
    SELECT c.chunk_id, 0::float8 AS mass, c.token_count AS tokens FROM chunks c
    WHERE NOT EXISTS (SELECT 1 FROM picked WHERE within)
      AND c.tsv @@ (SELECT string_agg(q.lexeme, ' & ')::tsquery FROM quoted q)
      AND {_SCOPE_SQL}
    LIMIT %(postings)s
),
kw_pool AS MATERIALIZED (
    (SELECT c.chunk_id, sum(p.idf) AS mass, min(c.token_count) AS tokens
     FROM picked p JOIN chunks c ON c.tsv @@ p.query
     WHERE p.within AND {_SCOPE_SQL}
     GROUP BY c.chunk_id)
    UNION ALL
    SELECT j.chunk_id, j.mass, j.tokens FROM joint j
    ORDER BY mass DESC, tokens
    LIMIT %(keyword_pool)s
),
kw AS MATERIALIZED (
    SELECT k.chunk_id FROM kw_pool k JOIN chunks c USING (chunk_id)
    ORDER BY k.mass + coalesce((SELECT sum(p.idf) FROM picked p
                                WHERE NOT p.within AND c.tsv @@ p.query), 0) DESC,
             k.tokens
    LIMIT %(keyword_limit)s
)
SELECT c.chunk_id, c.artifact_id, c.ord, length(c.tsv) AS length,
       c.chunk_id IN (SELECT chunk_id FROM vec) AS from_vector,
       c.chunk_id IN (SELECT chunk_id FROM kw) AS from_keyword,
       1 - (c.embedding <=> %(vector)s) AS similarity,
       (SELECT max(1 - (s.embedding <=> %(vector)s)) FROM chunk_sentences s
        WHERE s.artifact_id = c.artifact_id AND s.chunk_ord = c.ord) AS sentence_similarity,
       CASE WHEN %(with_terms)s THEN c.tsv::text END AS tsv,
       (SELECT json_agg(json_build_array(lexeme, idf) ORDER BY at) FROM weighted)::text AS terms,
       (SELECT avg_length FROM stats) AS avg_length
FROM chunks c
WHERE c.chunk_id IN (SELECT chunk_id FROM vec UNION SELECT chunk_id FROM kw)
  AND EXISTS (SELECT 1 FROM artifacts a
              WHERE a.artifact_id = c.artifact_id AND a.deleted_at IS NULL)
"""

KEY_CHUNKS = f"""
SELECT c.chunk_id, c.artifact_id, c.ord FROM chunks c JOIN artifacts a USING (artifact_id)
WHERE a.artifact_id = ANY(%(ids)s) AND a.deleted_at IS NULL AND {_SCOPE_SQL}
ORDER BY c.artifact_id, c.ord
"""

CHUNK_DETAILS = """
SELECT c.chunk_id, c.artifact_id, c.ord, c.heading, c.text, c.token_count,
       a.title, a.url, a.content_hash, a.version, a.synced_at
FROM chunks c JOIN artifacts a USING (artifact_id)
WHERE c.chunk_id = ANY(%s) AND a.deleted_at IS NULL
"""


def refresh_term_stats(conn: Connection) -> None:
    """Called after a sync run that changed content. The statistics are kept by triggers on
    every write (store/term_stats.py, migration 0009); this only checks they are in step
    with the chunks (one count) and rebuilds them if a bulk load bypassed the triggers."""
    term_stats.refresh(conn)


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


def _candidate_weighted(terms: _Terms, docs: Iterable[ParsedVector], power: float) -> _Terms:
    """Each lexeme's IDF times how rare it is among the candidates themselves (to ``power``).

    Corpus IDF says a word is rare in the whole store; among candidates that all come from
    one topic (every paragraph of one page names its product) such a word separates nothing,
    and the words that do are the ones few candidates share."""
    if not power:
        return terms
    parsed = list(docs)
    n = len(parsed)
    top = math.log(1 + (n + 0.5) / 0.5)
    weights: dict[str, float] = {}
    for lexeme, idf in terms.weights.items():
        df = sum(1 for doc in parsed if lexeme in doc.tf)
        weights[lexeme] = idf * (math.log(1 + (n - df + 0.5) / (df + 0.5)) / top) ** power
    return _Terms(terms.ordered, weights, terms.avg_length)


def _scaled(values: dict[int, float]) -> dict[int, float]:
    low, high = min(values.values()), max(values.values())
    span = (high - low) or 1.0
    return {k: (v - low) / span for k, v in values.items()}


def _fuse(semantic: dict[int, float], keyword: dict[int, float], share: float) -> dict[int, float]:
    """Convex combination of min-max normalised semantic and keyword scores."""
    sem, kw = _scaled(semantic), _scaled(keyword)
    return {
        cid: share * kw.get(cid, 0.0) + (1 - share) * sem.get(cid, 0.0)
        for cid in sem.keys() | kw.keys()
    }


@dataclass(frozen=True)
class _Ranked:
    scores: dict[int, float]  # best first
    artifacts: dict[int, str]


class Retriever:
    """Hybrid search over one store. Thread-safe: every call takes its own connection."""

    def __init__(
        self, db: Database, counter: TokenCounter, settings: SearchSettings | None = None
    ) -> None:
        self._db = db
        self._counter = counter
        self.settings = settings or SearchSettings()
        self._iterative_scan = self._db.supports_iterative_scan()

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
            chosen = self._choose(ranked, limit)
            if not chosen:
                return []
            ids = [cid for picked in chosen.values() for cid, _ in picked]
            details = {r["chunk_id"]: r for r in conn.execute(CHUNK_DETAILS, (ids,)).fetchall()}
        return self._passages(chosen, details, token_budget)

    def rank_chunks(
        self,
        question: str,
        question_vector: np.ndarray[Any, Any] | None,
        scope: Scope,
        mode: Mode = "hybrid",
    ) -> dict[int, float]:
        """Fused chunk scores, best first (for evaluation and debugging)."""
        with self._db.connection() as conn:
            params = _scope_params(scope)
            return self._rank_chunks(conn, question, question_vector, params, mode).scores

    def _rank_chunks(
        self,
        conn: Connection,
        question: str,
        vector: np.ndarray[Any, Any] | None,
        params: dict[str, Any],
        mode: Mode,
    ) -> _Ranked:
        s = self.settings
        use_vector = mode != "keyword" and vector is not None
        use_keyword = mode != "vector"
        if not use_vector and not use_keyword:
            return _Ranked({}, {})
        query = {
            **params,
            "question": question,
            "common": s.max_common_share,
            "postings": s.keyword_postings,
            "vector": vector if use_vector else None,
            "vector_limit": s.vector_candidates if use_vector else 0,
            "keyword_limit": s.keyword_candidates if use_keyword else 0,
            "keyword_pool": s.keyword_pool * s.keyword_candidates if use_keyword else 0,
            "with_terms": use_keyword,
        }
        with conn.pipeline():
            # The planner costs a sequential scan of a small or wide table below the HNSW,
            # GIN and primary-key paths this query is written for; it is several times slower.
            conn.execute("SET LOCAL enable_seqscan = off")
            if use_vector and self._iterative_scan:
                # Keeps filtered HNSW scans from returning fewer rows than asked for.
                conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            if use_vector and s.vector_candidates > 40:  # pgvector's default ef_search
                conn.execute(f"SET LOCAL hnsw.ef_search = {int(s.vector_candidates)}")
            rows = conn.execute(RANK_QUERY, query).fetchall()
        artifacts = {r["chunk_id"]: r["artifact_id"] for r in rows}
        semantic: dict[int, float] = {}
        keyword: dict[int, float] = {}
        terms = self._terms(rows[0]) if rows and use_keyword else None
        docs: dict[int, ParsedVector] = {}
        for r in rows:
            cid = r["chunk_id"]
            vector_side = mode == "hybrid" or r["from_vector"]
            if use_vector and r["similarity"] is not None and vector_side:
                best = r["sentence_similarity"]
                sentence = float(r["similarity"] if best is None else best)
                semantic[cid] = float(r["similarity"]) + s.sentence_weight * sentence
            if terms is not None and (mode == "hybrid" or r["from_keyword"]):
                docs[cid] = pick_lexemes(r["tsv"] or "", terms.ordered, int(r["length"]))
        if terms is not None and docs:
            terms = _candidate_weighted(terms, docs.values(), s.candidate_idf_power)
            for cid, doc in docs.items():
                keyword[cid] = self._keyword_score(doc, terms)
        if not keyword or not any(keyword.values()):
            scores = semantic if mode != "keyword" else keyword
        elif not semantic:
            scores = keyword
        else:
            scores = _fuse(semantic, keyword, s.keyword_share)
        keys = [f"jira:{k}" for k in dict.fromkeys(JIRA_KEY.findall(question))]
        if keys:
            top = max(scores.values(), default=0.0) + 1.0
            key_rows = conn.execute(KEY_CHUNKS, {**params, "ids": keys}).fetchall()
            for i, row in enumerate(key_rows):
                scores[row["chunk_id"]] = top + 1.0 / (i + 1)
                artifacts[row["chunk_id"]] = row["artifact_id"]
        ordered = dict(sorted(scores.items(), key=lambda kv: kv[1], reverse=True))
        return _Ranked(ordered, artifacts)

    @staticmethod
    def _terms(row: dict[str, Any]) -> _Terms | None:
        pairs = json.loads(row["terms"]) if row["terms"] else []
        if not pairs:
            return None
        weights = {str(lex): float(idf) for lex, idf in pairs}
        return _Terms(list(weights), weights, float(row["avg_length"]))

    def _keyword_score(self, doc: ParsedVector, terms: _Terms) -> float:
        s = self.settings
        score = bm25(doc, terms.weights, terms.avg_length, k1=s.bm25_k1, b=s.bm25_b)
        if s.phrase_weight:
            score += s.phrase_weight * proximity(doc, terms.ordered, terms.weights)
        if s.window_weight:
            score += s.window_weight * densest_window(doc, terms.weights, s.window_width)
        return score

    def _choose(self, ranked: _Ranked, limit: int) -> dict[str, list[tuple[int, float]]]:
        """The first ``limit`` artifacts in score order, each with its best chunks."""
        by_artifact: dict[str, list[tuple[int, float]]] = {}
        for chunk_id, score in ranked.scores.items():
            artifact = ranked.artifacts[chunk_id]
            picked = by_artifact.get(artifact)
            if picked is None:
                if len(by_artifact) >= limit:
                    continue
                picked = by_artifact[artifact] = []
            if len(picked) < self.settings.chunks_per_artifact:
                picked.append((chunk_id, score))
        return by_artifact

    def _passages(
        self,
        chosen: dict[str, list[tuple[int, float]]],
        details: dict[int, dict[str, Any]],
        token_budget: int,
    ) -> list[Passage]:
        passages: list[Passage] = []
        used = 0
        for artifact_id, picked in chosen.items():
            rows = sorted(
                (details[c] for c, _ in picked if c in details), key=lambda r: int(r["ord"])
            )
            if not rows:
                continue  # deleted since it was ranked
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
