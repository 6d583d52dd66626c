"""Distractor pages for bench/scale.py, and the two ways they are written.

Each distractor chunk is 3-8 squad-dev sentence units drawn at random from the whole corpus
(real paragraphs' sentences, shuffled across topics); its sentence vectors are the stored real
embeddings of those sentences, its chunk vector their normalised mean. Pages hold 1-3 chunks.

``write_per_page`` writes each page through ``store.artifacts.replace`` (one upsert, one
COPY of chunks, one COPY of sentences per page, 500 pages per transaction): the sync engine's
own path, about 130 chunks/s on a loaded 2-core machine. ``write_bulk`` sends the same rows
through the same COPY statements (``store.artifacts.COPY_CHUNKS`` / ``COPY_SENTENCES``, the
generated tsvector computed by Postgres as on every write) but batches many pages into one
COPY per table: a 1,000,000-chunk store in minutes instead of hours. Both produce the same rows
for the same seed.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from store.artifacts import COPY_CHUNKS, COPY_SENTENCES, ArtifactRow, ChunkRow, replace
from store.db import Database
from store.tokens import TokenCounter
from sync.chunking import sentence_units
from sync.corpus import SCOPE

COPY_ARTIFACTS = """
COPY artifacts (artifact_id, source, scope_key, title, url, version, content_hash, body)
FROM STDIN WITH (FORMAT BINARY)
"""


@dataclass(frozen=True)
class SentencePool:
    titles: list[str]
    texts: list[str]
    vectors: np.ndarray[Any, Any]


@dataclass(frozen=True)
class Page:
    artifact: ArtifactRow
    rows: list[ChunkRow]
    chunk_vectors: np.ndarray[Any, Any]
    sentence_vectors: np.ndarray[Any, Any]


def sentence_pool(db: Database) -> SentencePool:
    """(title, sentence) of every squad-dev sentence unit, with its stored embedding."""
    titles: list[str] = []
    texts: list[str] = []
    vectors: list[Any] = []
    with db.connection() as conn:
        chunks = conn.execute("SELECT artifact_id, ord, title, text FROM chunks").fetchall()
        stored: dict[tuple[str, int], list[Any]] = {}
        for row in conn.execute(
            "SELECT artifact_id, chunk_ord, embedding FROM chunk_sentences "
            "ORDER BY artifact_id, chunk_ord, ord"
        ):
            stored.setdefault((row["artifact_id"], row["chunk_ord"]), []).append(row["embedding"])
    for chunk in chunks:
        units = sentence_units(chunk["text"])
        found = stored.get((chunk["artifact_id"], chunk["ord"]), [])
        if len(units) != len(found):
            continue  # sentence splitting changed since the sync: skip rather than mismatch
        for unit, vector in zip(units, found, strict=True):
            titles.append(chunk["title"])
            texts.append(unit)
            vectors.append(np.asarray(vector.to_numpy(), dtype=np.float32))
    return SentencePool(titles, texts, np.vstack(vectors))


def distractor_pages(
    pool: SentencePool, chunks: int, counter: TokenCounter, seed: int
) -> Iterator[Page]:
    rng = random.Random(seed)
    texts, vectors = pool.texts, pool.vectors
    written = 0
    page = 0
    while written < chunks:
        page += 1
        rows: list[ChunkRow] = []
        chunk_vectors: list[Any] = []
        sentence_vectors: list[Any] = []
        picked: list[int] = []
        for ord_ in range(min(rng.randint(1, 3), chunks - written)):
            picked = [rng.randrange(len(texts)) for _ in range(rng.randint(3, 8))]
            text = " ".join(texts[i] for i in picked)
            mean = vectors[picked].mean(axis=0)
            chunk_vectors.append(mean / np.linalg.norm(mean))
            sentence_vectors.extend(vectors[i] for i in picked)
            sentences = tuple(texts[i] for i in picked)
            rows.append(ChunkRow(ord_, "", text, counter.count(text), sentences))
        written += len(rows)
        body = "\n\n".join(r.text for r in rows)
        artifact = ArtifactRow(
            artifact_id=f"confluence:distractor-{page}",
            source="confluence",
            scope_key=SCOPE,
            title=f"{pool.titles[picked[0]]} notes {page}",
            url=f"https://wiki.example.com/pages/distractor-{page}",
            version="1",
            content_hash=hashlib.sha256(body.encode()).hexdigest(),
            labels=(),
            body=body,
            updated_at=None,
        )
        yield Page(artifact, rows, np.vstack(chunk_vectors), np.vstack(sentence_vectors))


def write_per_page(db: Database, pages: Iterator[Page], progress: Callable[[int], None]) -> int:
    written = 0
    batch: list[Page] = []
    for page in pages:
        batch.append(page)
        if len(batch) == 500:
            written += _replace_all(db, batch)
            batch = []
            progress(written)
    return written + _replace_all(db, batch)


def _replace_all(db: Database, pages: list[Page]) -> int:
    with db.connection() as conn:
        for p in pages:
            replace(conn, p.artifact, p.rows, p.chunk_vectors, p.sentence_vectors)
    return sum(len(p.rows) for p in pages)


def write_bulk(
    db: Database, pages: Iterator[Page], progress: Callable[[int], None], batch_chunks: int
) -> int:
    written = 0
    batch: list[Page] = []
    for page in pages:
        batch.append(page)
        if sum(len(p.rows) for p in batch) >= batch_chunks:
            written += _copy_all(db, batch)
            batch = []
            progress(written)
    return written + _copy_all(db, batch)


def _copy_all(db: Database, pages: list[Page]) -> int:
    """One transaction, one COPY per table, for many new pages."""
    with db.connection() as conn, conn.cursor() as cur:
        with cur.copy(COPY_ARTIFACTS) as copy:
            copy.set_types(["text"] * 8)
            for p in pages:
                a = p.artifact
                copy.write_row(
                    (a.artifact_id, a.source, a.scope_key, a.title, a.url, a.version,
                     a.content_hash, a.body)
                )  # fmt: skip
        with cur.copy(COPY_CHUNKS) as copy:
            copy.set_types(
                ["text", "int4", "text", "text", "text", "text", "text", "int4", "vector"]
            )
            for p in pages:
                a = p.artifact
                for chunk, vector in zip(p.rows, p.chunk_vectors, strict=True):
                    copy.write_row(
                        (a.artifact_id, chunk.ord, a.source, a.scope_key, a.title, chunk.heading,
                         chunk.text, chunk.token_count, vector)
                    )  # fmt: skip
        with cur.copy(COPY_SENTENCES) as copy:
            copy.set_types(["text", "int4", "int4", "vector"])
            for p in pages:
                units = [(c.ord, i) for c in p.rows for i in range(len(c.sentences))]
                for (chunk_ord, ord_), vector in zip(units, p.sentence_vectors, strict=True):
                    copy.write_row((p.artifact.artifact_id, chunk_ord, ord_, vector))
    return sum(len(p.rows) for p in pages)
