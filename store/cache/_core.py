"""The lookup flow both backends share: exact match, nearest neighbour, gates, freshness.

A backend supplies storage primitives (``_exact``, ``_nearest``, ``_serve``, ...); this class
decides what may be served, so both backends refuse exactly the same things.
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Literal

import numpy as np

from store.cache._freshness import CurrentHashes
from store.cache._gates import Candidate, admits, choose, entities, normalise
from store.cache._model import (
    MISS_REASONS,
    GateSettings,
    Generated,
    Hit,
    Invalidation,
    Miss,
    Place,
    Unit,
)
from store.embedders import Vectors
from store.scope import Scope

log = logging.getLogger("store.cache")

Unread = Literal["unread"]  # the nearest units were not needed: the exact one is live

# Stored counters; stats() adds hits, misses and stale_prevented as sums of these, so a
# lookup writes one counter, not three.
COUNTERS: tuple[str, ...] = (
    "hits_exact",
    "hits_nearest",
    *(f"miss_{reason}" for reason in MISS_REASONS),
    "dirtied",
    "evictions",
    "generations",
)


def with_totals(stored: dict[str, int], units: int, size: int) -> dict[str, int]:
    out = {name: stored.get(name, 0) for name in COUNTERS}
    out["hits"] = out["hits_exact"] + out["hits_nearest"]
    out["misses"] = sum(out[f"miss_{reason}"] for reason in MISS_REASONS)
    out["stale_prevented"] = out["miss_stale"] + out["miss_dirty"]
    out["units"], out["bytes"] = units, size
    return out


def query_vector(embedding: Vectors) -> Vectors:
    """One L2-normalised float32 row from a (d,) or (1, d) embedding."""
    vector = np.asarray(embedding, dtype=np.float32)
    if vector.ndim == 2 and vector.shape[0] == 1:
        vector = vector[0]
    if vector.ndim != 1 or vector.size == 0:
        raise ValueError(f"a question embedding must be one row, not shape {vector.shape}")
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("a question embedding must be finite and non-zero")
    out: Vectors = np.ascontiguousarray(vector / norm, dtype=np.float32)
    return out


def flight_key(question: str, scope: Scope) -> str:
    """Identical questions (after normalisation) in one scope share one generation."""
    text = f"{scope.key()}\x1f{normalise(question)}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def check_unit(unit: Unit) -> None:
    if not unit.provenance:
        # Nothing could ever invalidate it: an answer built from no source stays forever.
        raise ValueError("a unit without provenance cannot be cached; it could never go stale")
    if unit.normalised != normalise(unit.question):
        raise ValueError("unit.normalised must be normalise(unit.question); build it with Unit.new")


def reported(artifact_id: str, result: Invalidation) -> Invalidation:
    if result.matched == 0:
        log.warning(
            "answer cache: %s changed but no cached answer depends on it; if answers cite it, "
            "the artifact id fired does not match the one stamped at sync time",
            artifact_id,
        )
    return result


class CacheCore(ABC):
    # Errors of the backend's storage: caching a generated answer may fail, answering may not.
    storage_errors: tuple[type[Exception], ...] = ()

    def __init__(self, hashes: CurrentHashes, gates: GateSettings) -> None:
        self._hashes = hashes
        self.gates = gates

    # -- storage primitives -------------------------------------------------------------------

    @abstractmethod
    def _exact(self, scope_key: str, normalised: str) -> Candidate | None:
        """The unit stored for exactly this question in this scope, dirty or not."""

    def _reads(
        self, scope_key: str, normalised: str, query: Vectors, cutoff: float
    ) -> tuple[Candidate | None, list[Candidate] | Unread | None]:
        """The exact unit and, unless it is live (then "unread"), the nearest ones. A backend
        that can read both at once overrides this."""
        exact = self._exact(scope_key, normalised)
        if exact is not None and not exact.unit.dirty:
            return exact, "unread"
        return exact, self._nearest(scope_key, query, cutoff)

    @abstractmethod
    def _nearest(self, scope_key: str, query: Vectors, cutoff: float) -> list[Candidate] | None:
        """Live units of this scope at similarity >= cutoff, best first, at most ``candidates``.

        None when the scope holds no live unit of this dimension at all (a Miss "empty").
        """

    @abstractmethod
    def _serve(self, unit: Unit, *, exact: bool, count: bool) -> Unit | None:
        """Atomically: if the unit is still live, record the serve and return it as served
        (``served_at``, ``served_count`` updated); else None."""

    @abstractmethod
    def _mark_stale(self, unit_id: str) -> None:
        """The read path found a source moved: never serve it again, keep it for notices."""

    @abstractmethod
    def _count(self, names: list[str]) -> None: ...

    @abstractmethod
    def _lock(self, key: str) -> AbstractContextManager[bool]:
        """A lock shared by every process using this cache; yields False if it timed out."""

    @abstractmethod
    def put(self, unit: Unit, embedding: Vectors) -> None: ...

    @abstractmethod
    def record_post(self, unit_id: str, place: Place) -> None: ...

    @abstractmethod
    def source_changed(
        self, artifact_id: str, *, content_hash: str, version: str
    ) -> Invalidation: ...

    @abstractmethod
    def source_deleted(self, artifact_id: str) -> Invalidation: ...

    @abstractmethod
    def get(self, unit_id: str) -> Unit | None: ...

    @abstractmethod
    def stats(self) -> dict[str, int]: ...

    @abstractmethod
    def close(self) -> None: ...

    # -- the flow -----------------------------------------------------------------------------

    def lookup(self, question: str, scope: Scope, question_embedding: Vectors) -> Hit | Miss:
        return self._lookup(question, scope, question_embedding, count=True)

    def _lookup(
        self, question: str, scope: Scope, question_embedding: Vectors, *, count: bool
    ) -> Hit | Miss:
        normalised = normalise(question)
        query = query_vector(question_embedding)
        cutoff = self.gates.threshold - self.gates.margin
        exact, found = self._reads(scope.key(), normalised, query, cutoff)
        if exact is not None and not exact.unit.dirty:
            return self._validate(exact, scope, exact=True, count=count)
        if found == "unread":
            raise AssertionError("the nearest units are read whenever no exact unit is live")
        candidates = found or []
        choice = "empty" if found is None else choose(entities(normalised), candidates, self.gates)
        if isinstance(choice, Candidate):
            return self._validate(choice, scope, exact=False, count=count)
        best = candidates[0].similarity if candidates else None
        if exact is not None and choice in ("empty", "threshold"):
            # The answer for exactly this question exists but its sources moved.
            return self._missed(Miss("dirty", 1.0, exact.unit.unit_id), count)
        return self._missed(Miss(choice, best), count)

    def _validate(self, found: Candidate, scope: Scope, *, exact: bool, count: bool) -> Hit | Miss:
        unit, similarity = found.unit, found.similarity
        current = found.current
        if current is None:
            current = self._hashes.current(list(unit.provenance))
        verdict = admits(unit, scope, current)
        if verdict == "stale":
            self._mark_stale(unit.unit_id)
            return self._missed(Miss("stale", similarity, unit.unit_id), count)
        if verdict == "scope":
            return self._missed(Miss("scope", similarity, unit.unit_id), count)
        served = self._serve(unit, exact=exact, count=count)
        if served is None:
            # Dirtied by another process between reading and serving.
            return self._missed(Miss("dirty", similarity, unit.unit_id), count)
        return Hit(served, similarity, exact)

    def _missed(self, miss: Miss, count: bool) -> Miss:
        if count:
            self._count([f"miss_{miss.reason}"])
        return miss

    def generation_lock(self, question: str, scope: Scope) -> AbstractContextManager[bool]:
        """Held while generating an answer to this question in this scope, across processes."""
        return self._lock(flight_key(question, scope))

    def get_or_generate(
        self,
        question: str,
        scope: Scope,
        question_embedding: Vectors,
        generate: Callable[[], Unit | None],
    ) -> Hit | Generated | Miss:
        """A hit, or one generation shared by every concurrent identical miss.

        The others wait for the generator and are then served its unit. If ``generate`` raises
        or returns None nothing is cached: the exception propagates, None gives the Miss.
        """
        first = self.lookup(question, scope, question_embedding)
        if isinstance(first, Hit):
            return first
        with self.generation_lock(question, scope):
            again = self._lookup(question, scope, question_embedding, count=False)
            if isinstance(again, Hit):
                return again
            unit = generate()
            if unit is None:
                return first
            if unit.scope != scope.key():
                raise ValueError(f"generated unit has scope {unit.scope!r}, not {scope.key()!r}")
            self._count(["generations"])
            if not unit.provenance:
                log.info("answer %s cites nothing and saw nothing; not cached", unit.unit_id)
                return Generated(unit, first, cached=False)
            try:
                self.put(unit, question_embedding)
            except self.storage_errors:
                log.exception("answer cache: could not store answer %s", unit.unit_id)
                return Generated(unit, first, cached=False)
            return Generated(unit, first, cached=True)
