"""Binding a store to one embedder: the vector column's dimension and its HNSW index.

A store records which embedder and dimension built it and refuses to mix vectors from
another: similarities across two embedding spaces are meaningless.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import EmbedderMismatch
from store.db import Connection, Database


@dataclass(frozen=True)
class EmbedderIdentity:
    name: str
    dimension: int


def bind_embedder(db: Database, embedder: EmbedderIdentity) -> None:
    """Fix the store's embedder on first use; raise EmbedderMismatch if it was built by another."""
    with db.connection() as conn:
        conn.execute("LOCK TABLE store_meta IN EXCLUSIVE MODE")
        row = conn.execute("SELECT embedder, dimension FROM store_meta").fetchone()
        if row is not None:
            if row["embedder"] != embedder.name or row["dimension"] != embedder.dimension:
                raise EmbedderMismatch(
                    f"this store was built with the embedder {row['embedder']} "
                    f"({row['dimension']} dimensions) but KB_EMBEDDER now gives {embedder.name} "
                    f"({embedder.dimension} dimensions); set KB_EMBEDDER back, or re-index: point "
                    "KB_DATA_DIR or DATABASE_URL at a new store and run `kb sync --full`"
                )
            return
        _set_dimension(conn, embedder)


def _set_dimension(conn: Connection, embedder: EmbedderIdentity) -> None:
    dim = int(embedder.dimension)
    conn.execute(f"ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({dim})")
    conn.execute(
        "CREATE INDEX IF NOT EXISTS chunks_embedding_hnsw ON chunks "
        "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
    )
    conn.execute(
        "INSERT INTO store_meta (embedder, dimension) VALUES (%s, %s)", (embedder.name, dim)
    )


def bound_embedder(db: Database) -> EmbedderIdentity | None:
    with db.connection() as conn:
        row = conn.execute("SELECT embedder, dimension FROM store_meta").fetchone()
    return None if row is None else EmbedderIdentity(row["embedder"], row["dimension"])


def stored_dimension(db: Database, name: str) -> int | None:
    """The dimension the store was built with, if embedder ``name`` built it: an embedder
    whose dimension is not built in takes it from here instead of probing at every start."""
    with db.connection() as conn:
        row = conn.execute("SELECT embedder, dimension FROM store_meta").fetchone()
    return int(row["dimension"]) if row is not None and row["embedder"] == name else None
