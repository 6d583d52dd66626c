"""Named queries for artifacts and their chunks: the checksum gate's reads and the one-
transaction replace that keeps the previous version searchable until the new one commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from store.db import Connection
from store.embedders import Vectors

GET_STATE = """
SELECT artifact_id, content_hash, version, deleted_at IS NOT NULL AS deleted
FROM artifacts WHERE artifact_id = ANY(%s)
"""

UPSERT_ARTIFACT = """
INSERT INTO artifacts (artifact_id, source, scope_key, title, url, version, content_hash,
                       labels, body, source_updated_at, synced_at, deleted_at)
VALUES (%(artifact_id)s, %(source)s, %(scope_key)s, %(title)s, %(url)s, %(version)s,
        %(content_hash)s, %(labels)s, %(body)s, %(updated_at)s, now(), NULL)
ON CONFLICT (artifact_id) DO UPDATE SET
    source = EXCLUDED.source, scope_key = EXCLUDED.scope_key, title = EXCLUDED.title,
    url = EXCLUDED.url, version = EXCLUDED.version, content_hash = EXCLUDED.content_hash,
    labels = EXCLUDED.labels, body = EXCLUDED.body,
    source_updated_at = EXCLUDED.source_updated_at, synced_at = now(), deleted_at = NULL
"""

TOUCH_VERSION = """
UPDATE artifacts SET version = %s, title = %s, url = %s, labels = %s, synced_at = now()
WHERE artifact_id = %s
"""

DELETE_CHUNKS = "DELETE FROM chunks WHERE artifact_id = %s"

COPY_CHUNKS = """
COPY chunks (artifact_id, ord, source, scope_key, title, heading, text, token_count, embedding)
FROM STDIN WITH (FORMAT BINARY)
"""

COPY_SENTENCES = """
COPY chunk_sentences (artifact_id, chunk_ord, ord, embedding) FROM STDIN WITH (FORMAT BINARY)
"""

TOMBSTONE = """
UPDATE artifacts SET deleted_at = now(), synced_at = now()
WHERE artifact_id = %s AND deleted_at IS NULL
"""

OLDEST_SYNC = "SELECT min(synced_at) AS at FROM artifacts WHERE deleted_at IS NULL"

LIVE_IDS_IN_SCOPE = """
SELECT artifact_id FROM artifacts
WHERE source = %s AND deleted_at IS NULL AND (%s = '*' OR scope_key = %s)
"""


@dataclass(frozen=True)
class ArtifactState:
    content_hash: str
    version: str
    deleted: bool


@dataclass(frozen=True)
class ArtifactRow:
    artifact_id: str
    source: str
    scope_key: str
    title: str
    url: str
    version: str
    content_hash: str
    labels: tuple[str, ...]
    body: str
    updated_at: datetime | None


@dataclass(frozen=True)
class ChunkRow:
    ord: int
    heading: str
    text: str
    token_count: int
    sentences: tuple[str, ...] = ()  # embedded one by one too (store.search.sentence_units)


def states(conn: Connection, artifact_ids: Sequence[str]) -> dict[str, ArtifactState]:
    rows = conn.execute(GET_STATE, (list(artifact_ids),)).fetchall()
    return {
        r["artifact_id"]: ArtifactState(r["content_hash"], r["version"], r["deleted"]) for r in rows
    }


def replace(
    conn: Connection,
    artifact: ArtifactRow,
    chunks: Sequence[ChunkRow],
    embeddings: Vectors,
    sentence_embeddings: Vectors | None = None,
) -> None:
    """Replace an artifact's row and chunks; call inside one transaction.

    ``sentence_embeddings`` holds one row per entry of every chunk's ``sentences``, in order;
    the old sentences go with the old chunks (ON DELETE CASCADE)."""
    conn.execute(UPSERT_ARTIFACT, {**artifact.__dict__, "labels": list(artifact.labels)})
    conn.execute(DELETE_CHUNKS, (artifact.artifact_id,))
    with conn.cursor() as cur, cur.copy(COPY_CHUNKS) as copy:
        copy.set_types(["text", "int4", "text", "text", "text", "text", "text", "int4", "vector"])
        for chunk, vector in zip(chunks, embeddings, strict=True):
            copy.write_row(
                (
                    artifact.artifact_id,
                    chunk.ord,
                    artifact.source,
                    artifact.scope_key,
                    artifact.title,
                    chunk.heading,
                    chunk.text,
                    chunk.token_count,
                    vector,
                )
            )
    sentences = [(c.ord, i) for c in chunks for i in range(len(c.sentences))]
    if not sentences or sentence_embeddings is None:
        return
    with conn.cursor() as cur, cur.copy(COPY_SENTENCES) as copy:
        copy.set_types(["text", "int4", "int4", "vector"])
        for (chunk_ord, ord_), vector in zip(sentences, sentence_embeddings, strict=True):
            copy.write_row((artifact.artifact_id, chunk_ord, ord_, vector))


def touch_version(conn: Connection, artifact: ArtifactRow) -> None:
    """Same text, new version (a metadata-only edit): record it without re-embedding."""
    conn.execute(
        TOUCH_VERSION,
        (
            artifact.version,
            artifact.title,
            artifact.url,
            list(artifact.labels),
            artifact.artifact_id,
        ),
    )


def tombstone(conn: Connection, artifact_id: str) -> bool:
    """Mark an artifact deleted and drop its chunks; False if it was not live."""
    hit = conn.execute(TOMBSTONE, (artifact_id,)).rowcount > 0
    conn.execute(DELETE_CHUNKS, (artifact_id,))
    return hit


def live_ids(conn: Connection, source: str, scope_key: str) -> set[str]:
    rows = conn.execute(LIVE_IDS_IN_SCOPE, (source, scope_key, scope_key)).fetchall()
    return {r["artifact_id"] for r in rows}


def oldest_sync(conn: Connection) -> datetime | None:
    """When the least recently written live artifact was synced (None when there is none)."""
    row = conn.execute(OLDEST_SYNC).fetchone()
    at: datetime | None = row["at"] if row else None
    return at
