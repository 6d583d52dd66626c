"""The provenance-invalidated semantic answer cache (docs/ARCHITECTURE.md, "The answer cache").

A cached answer (a :class:`Unit`) is served only if it passes every gate: exact normalised
match or nearest neighbour at or above a calibrated threshold with a margin over the
runner-up, identical entities, a scope containing every cited source, and sources whose
current content hash in the store is the one the answer was built from.

Two backends pass one contract suite: :class:`DiskAnswerCache` (default, one machine, every
process through ``KB_DATA_DIR``) and :class:`PostgresAnswerCache` (bot and daemon on
different machines). Both are synchronous and safe across threads and processes.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

from store.cache._disk import DiskAnswerCache
from store.cache._freshness import ArtifactState, CurrentHashes, StoreHashes
from store.cache._gates import entities, normalise
from store.cache._model import (
    MISS_REASONS,
    CacheLimits,
    Citation,
    GateSettings,
    Generated,
    Hit,
    Invalidation,
    Miss,
    MissReason,
    Place,
    SourceVersion,
    Unit,
)
from store.cache._postgres import PostgresAnswerCache
from store.embedders import Vectors
from store.scope import Scope


class AnswerCache(Protocol):
    """What the answer pipeline, the daemon and /metrics use."""

    def lookup(self, question: str, scope: Scope, question_embedding: Vectors) -> Hit | Miss:
        """A unit passing every gate, or the gate that refused."""
        ...

    def get_or_generate(
        self,
        question: str,
        scope: Scope,
        question_embedding: Vectors,
        generate: Callable[[], Unit | None],
    ) -> Hit | Generated | Miss:
        """A hit, or one generation shared by all concurrent identical misses."""
        ...

    def generation_lock(self, question: str, scope: Scope) -> AbstractContextManager[bool]: ...

    def put(self, unit: Unit, embedding: Vectors) -> None: ...

    def record_post(self, unit_id: str, place: Place) -> None: ...

    def source_changed(
        self, artifact_id: str, *, content_hash: str, version: str
    ) -> Invalidation: ...

    def source_deleted(self, artifact_id: str) -> Invalidation: ...

    def get(self, unit_id: str) -> Unit | None: ...

    def stats(self) -> dict[str, int]: ...

    def close(self) -> None: ...


__all__ = [
    "MISS_REASONS",
    "AnswerCache",
    "ArtifactState",
    "CacheLimits",
    "Citation",
    "CurrentHashes",
    "DiskAnswerCache",
    "GateSettings",
    "Generated",
    "Hit",
    "Invalidation",
    "Miss",
    "MissReason",
    "Place",
    "PostgresAnswerCache",
    "SourceVersion",
    "StoreHashes",
    "Unit",
    "entities",
    "normalise",
]
