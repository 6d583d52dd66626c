"""The store's current view of artifacts, read on every cache hit.

One indexed query (``artifacts`` primary key) per served answer: whatever a process missed —
a webhook handled by another machine, a lost notification — a unit whose source moved is never
served, because this reads the committed truth at the moment of serving.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from store.db import Database

# Deleted artifacts are simply absent from the answer: a unit citing one is stale.
CURRENT_ARTIFACTS = """
SELECT artifact_id, content_hash, source, scope_key
FROM artifacts
WHERE artifact_id = ANY(%s) AND deleted_at IS NULL
"""


@dataclass(frozen=True)
class ArtifactState:
    content_hash: str
    source: str
    scope_key: str


class CurrentHashes(Protocol):
    """Current state of live (not deleted) artifacts; absent ids are missing or deleted."""

    def current(self, artifact_ids: Sequence[str]) -> Mapping[str, ArtifactState]: ...


class StoreHashes:
    """:class:`CurrentHashes` over the store's ``artifacts`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def current(self, artifact_ids: Sequence[str]) -> Mapping[str, ArtifactState]:
        if not artifact_ids:
            return {}
        # One statement needs no transaction: autocommit saves the BEGIN and COMMIT round
        # trips on every cache hit.
        with self._db.connection(autocommit=True) as conn:
            rows = conn.execute(CURRENT_ARTIFACTS, (list(artifact_ids),)).fetchall()
        return {
            r["artifact_id"]: ArtifactState(r["content_hash"], r["source"], r["scope_key"])
            for r in rows
        }
