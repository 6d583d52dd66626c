"""Helpers shared by the answer cache tests and their worker processes.

Question embeddings are synthetic unit vectors with exactly chosen cosines, so every gate is
tested at a known similarity; test_cache_calibration.py covers the real embedder.
"""

from __future__ import annotations

import numpy as np

from store.cache import Citation, SourceVersion, Unit
from store.db import Database
from store.scope import Scope

DIM = 32


def axis(i: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i] = 1.0
    return v


def toward(i: int, similarity: float, away: int = DIM - 1) -> np.ndarray:
    """A unit vector whose cosine with axis(i) is exactly ``similarity``."""
    v = axis(i) * similarity + axis(away) * float(np.sqrt(1.0 - similarity**2))
    return v.astype(np.float32)


class Store:
    """The store's ``artifacts`` rows the cache validates against."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def artifact(
        self,
        artifact_id: str,
        content_hash: str = "h1",
        version: str = "1",
        *,
        scope_key: str = "ENG",
        deleted: bool = False,
    ) -> None:
        source = artifact_id.split(":", 1)[0]
        with self.db.connection() as conn:
            conn.execute(
                "INSERT INTO artifacts (artifact_id, source, scope_key, title, url, version,"
                " content_hash, body, deleted_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, '', CASE WHEN %s THEN now() END)"
                " ON CONFLICT (artifact_id) DO UPDATE SET content_hash = EXCLUDED.content_hash,"
                " version = EXCLUDED.version, scope_key = EXCLUDED.scope_key,"
                " deleted_at = EXCLUDED.deleted_at",
                (
                    artifact_id,
                    source,
                    scope_key,
                    f"Title of {artifact_id}",
                    f"https://kb.example/{artifact_id}",
                    version,
                    content_hash,
                    deleted,
                ),
            )


def make_unit(
    question: str,
    sources: dict[str, tuple[str, str]] | None = None,
    *,
    scope: Scope | None = None,
    answer: str = "Do the thing [1].",
) -> Unit:
    sources = {"confluence:1": ("h1", "1")} if sources is None else sources
    citations = tuple(
        Citation(n, a, f"Title of {a}", f"https://kb.example/{a}", (n * 10,))
        for n, a in enumerate(sources, start=1)
    )
    provenance = {a: SourceVersion(h, v) for a, (h, v) in sources.items()}
    return Unit.new(question, scope or Scope.everything(), answer, citations, provenance)
