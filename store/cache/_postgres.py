"""The Postgres backend: for a bot and daemon on different machines (migration 0003).

Same behaviour as the diskcache backend (one contract suite runs over both). Question
embeddings live in a pgvector column of no fixed dimension (a cache may outlive an embedder
change), with one partial HNSW index (half precision) per dimension in use, up to 4,000; a
scope of up to ``exact_scan_limit`` live units, or of wider vectors, is searched exactly, a
larger one through that index.
Single flight uses a session advisory lock on a connection of its own, so waiters never hold a
pooled connection the generator needs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from core.errors import CacheError, StoreError
from store.cache._core import (
    CacheCore,
    Unread,
    check_unit,
    query_vector,
    reported,
    with_totals,
)
from store.cache._freshness import ArtifactState, CurrentHashes, StoreHashes
from store.cache._gates import Candidate
from store.cache._model import (
    CacheLimits,
    GateSettings,
    Invalidation,
    Place,
    Unit,
    unit_from_dict,
    unit_to_json,
)
from store.cache._postgres_sql import (
    _INDEX_LOCK,
    _LARGE_FOR_S,
    BOOKKEEPING,
    COUNT,
    CREATE_INDEX,
    DIRTY_NOTICED,
    EVICT,
    INDEX_EXISTS,
    INDEX_NAME,
    INDEX_SCAN_SETTINGS,
    INDEXED_DIMS_MAX,
    INSERT_POST,
    INSERT_SOURCE,
    INSERT_UNIT,
    LIVE_IN_SCOPE,
    LOCK_SIZE,
    MARK_STALE,
    MATCHED,
    NEW_VERSION,
    OLDEST,
    PLACES,
    SERVE,
    STATS,
    SUPERSEDED,
    UNIT_BY_ID,
    UNIT_EXACT,
    UNITS_NEAREST,
    UNITS_NEAREST_INDEXED,
)
from store.db import Connection, Database
from store.embedders import Vectors

log = logging.getLogger("store.cache")


def _unit(row: dict[str, Any]) -> Unit:
    body = row["body"] if isinstance(row["body"], dict) else {}
    created, served = row["created_at"], row["served_at"]
    return unit_from_dict(
        {
            **body,
            "unit_id": row["unit_id"],
            "normalised": row["question_norm"],
            "scope": row["scope_key"],
            "provenance": row["provenance"],
            "places": row["places"],
            "created_at": created.isoformat(),
            "served_at": None if served is None else served.isoformat(),
            "served_count": row["served_count"],
            "dirty": row["dirty"],
        }
    )


class PostgresAnswerCache(CacheCore):
    """The answer cache in the store's Postgres schema."""

    storage_errors = (CacheError, StoreError, psycopg.Error)

    def __init__(
        self,
        db: Database,
        hashes: CurrentHashes | None = None,
        *,
        gates: GateSettings | None = None,
        limits: CacheLimits | None = None,
        lock_timeout: float = 300.0,
        exact_scan_limit: int = 2000,
    ) -> None:
        super().__init__(hashes or StoreHashes(db), gates or GateSettings())
        self._db = db
        # With the store's own CurrentHashes, units are read with their sources' state.
        self._own_hashes = hashes is None
        self.limits = limits or CacheLimits()
        self._lock_timeout = lock_timeout
        self._exact_scan_limit = exact_scan_limit
        self._indexed: set[int] = set()
        self._unindexable: set[int] = set()  # dimensions already warned about
        self._iterative = self._db.supports_iterative_scan()
        # (scope, dim) -> until when it is known to be large: a scope of thousands of units
        # does not shrink below the exact-scan limit in seconds, and the index path is correct
        # for any size (only slower than the exact scan for a small one).
        self._large_until: dict[tuple[str, int], float] = {}

    def close(self) -> None:
        """The Database belongs to the caller; nothing of its own to close."""

    def _read_unit(self, conn: Connection, query: str, params: Sequence[Any]) -> Unit | None:
        found = self._read_candidate(conn, query, params)
        return None if found is None else found.unit

    def _read_candidate(
        self, conn: Connection, query: str, params: Sequence[Any]
    ) -> Candidate | None:
        return self._one(conn.execute(query, params).fetchone())

    def _one(self, row: dict[str, Any] | None) -> Candidate | None:
        """The unit of one row read by id or exact question (similarity 1), if readable."""
        found = self._candidates([row], similarity=1.0) if row is not None else []
        return found[0] if found else None

    def _candidate(self, row: dict[str, Any], similarity: float) -> Candidate:
        current = None
        if self._own_hashes:  # the artifacts read with the unit are the store's own
            current = {
                artifact_id: ArtifactState(content_hash, source, scope_key)
                for artifact_id, (content_hash, source, scope_key) in row["current"].items()
            }
        return Candidate(_unit(row), similarity, current)

    # -- primitives for CacheCore -------------------------------------------------------------

    # The lookup's hot path, in round trips: over a large scope the exact read and the
    # nearest units (settings, query and commit pipelined) in one, then the serve or the miss
    # count in one; the sources' current state comes with the units read. Each BEGIN, COMMIT
    # and state read on its own would triple that.
    # (docs/ARCHITECTURE.md, "Retrieval and cache cost at scale")

    def _exact(self, scope_key: str, normalised: str) -> Candidate | None:
        with self._db.connection(autocommit=True) as conn:
            return self._read_candidate(conn, UNIT_EXACT, (scope_key, normalised))

    def _ensure_index(self, dim: int) -> bool:
        """The HNSW index for vectors of ``dim`` dimensions (one per embedder the cache has
        seen), created on first use; concurrent processes create it once. False when no index
        can exist (past pgvector's limit: such vectors are always searched exactly)."""
        if dim in self._indexed:
            return True
        if dim > INDEXED_DIMS_MAX:
            if dim not in self._unindexable:
                self._unindexable.add(dim)  # said once per process
                log.warning(
                    "answer cache: %d-dimension question vectors cannot have an HNSW index "
                    "(pgvector's limit is %d); every lookup scans its scope, which slows as "
                    "the cache grows: choose an embedder of at most %d dimensions, or "
                    "KB_CACHE=disk",
                    dim, INDEXED_DIMS_MAX, INDEXED_DIMS_MAX,
                )  # fmt: skip
            return False
        name = INDEX_NAME.format(dim=dim)
        with self._db.connection() as conn:
            if conn.execute(INDEX_EXISTS, (name,)).fetchone() is None:
                conn.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (_INDEX_LOCK,)
                )
                conn.execute(CREATE_INDEX.format(name=name, dim=dim))
        self._indexed.add(dim)
        return True

    def _reads(
        self, scope_key: str, normalised: str, query: Vectors, cutoff: float
    ) -> tuple[Candidate | None, list[Candidate] | Unread | None]:
        """Over a scope known to be large, the exact read and the index query go in one
        round trip (an exact hit then pays the index query it did not need: a few ms
        inside the target, against a round trip on every other lookup)."""
        dim = int(query.shape[0])
        if not self._known_large(scope_key, dim):
            return super()._reads(scope_key, normalised, query, cutoff)
        self._ensure_index(dim)
        with self._db.connection() as conn:
            with conn.pipeline():
                exact = conn.execute(UNIT_EXACT, (scope_key, normalised))
                found = self._index_query(conn, scope_key, query, cutoff)
                conn.commit()
            exact_row, rows = exact.fetchone(), found.fetchall()
        return self._one(exact_row), self._candidates(rows)

    def _nearest(self, scope_key: str, query: Vectors, cutoff: float) -> list[Candidate] | None:
        dim = int(query.shape[0])
        indexable = self._ensure_index(dim)
        with self._db.connection() as conn:
            large = self._known_large(scope_key, dim)
            if not large:
                counted = conn.execute(
                    LIVE_IN_SCOPE, (scope_key, dim, self._exact_scan_limit + 1)
                ).fetchone()
                live = 0 if counted is None else int(counted["n"])
                if live == 0:
                    return None
                large = indexable and live > self._exact_scan_limit
                if large:
                    self._large_until[(scope_key, dim)] = time.monotonic() + _LARGE_FOR_S
            if not large:
                params = self._params(scope_key, query, cutoff)
                rows = conn.execute(UNITS_NEAREST, params).fetchall()
            else:
                with conn.pipeline():  # the settings, the query and the commit: one round trip
                    found = self._index_query(conn, scope_key, query, cutoff)
                    conn.commit()
                rows = found.fetchall()
        return self._candidates(rows)

    def _known_large(self, scope_key: str, dim: int) -> bool:
        return self._large_until.get((scope_key, dim), 0.0) > time.monotonic()

    def _params(self, scope_key: str, query: Vectors, cutoff: float) -> dict[str, Any]:
        limit = int(self.gates.candidates)
        dim = int(query.shape[0])
        return {"scope": scope_key, "dim": dim, "q": query, "cutoff": cutoff, "limit": limit}

    def _index_query(
        self, conn: Connection, scope_key: str, query: Vectors, cutoff: float
    ) -> psycopg.Cursor[dict[str, Any]]:
        """Queue the HNSW path's settings and query (in a pipeline); the query's cursor."""
        params = self._params(scope_key, query, cutoff)
        # A paraphrase must be found even where the graph has no structure to follow: among
        # 100,000 random unit vectors, 200 near-duplicates (cosine 0.95) were found 75 % of
        # the time at pgvector's default ef_search 40, 94 % at 100 and 98 % at 160 (p95 8 ms
        # on a loaded 2-core machine). Real question embeddings cluster by topic, which HNSW
        # navigates far better.
        ef_search = str(max(160, 4 * int(params["limit"])))
        conn.execute(INDEX_SCAN_SETTINGS, {"iterative": self._iterative, "ef": ef_search})
        return conn.execute(UNITS_NEAREST_INDEXED.format(dim=params["dim"]), params)

    def _candidates(
        self, rows: list[dict[str, Any]], *, similarity: float | None = None
    ) -> list[Candidate]:
        out: list[Candidate] = []
        for row in rows:
            try:
                value = similarity if similarity is not None else float(row["similarity"])
                out.append(self._candidate(row, value))
            except CacheError as exc:
                log.warning("answer cache: ignored unit %s: %s", row["unit_id"], exc)
        return out

    def _serve(self, unit: Unit, *, exact: bool, count: bool) -> Unit | None:
        counters = ["hits_exact" if exact else "hits_nearest"] if count else []
        with self._db.connection() as conn:
            with conn.pipeline():  # BEGIN, the setting, the serve and COMMIT: one round trip
                conn.execute(BOOKKEEPING)
                served = conn.execute(SERVE, {"unit_id": unit.unit_id, "counters": counters})
                conn.commit()
            row = served.fetchone()
        if row is None:
            return None
        return replace(unit, served_at=row["served_at"], served_count=row["served_count"])

    def _mark_stale(self, unit_id: str) -> None:
        with self._db.connection() as conn:
            conn.execute(MARK_STALE, (unit_id,))

    def _count(self, names: list[str]) -> None:
        with self._db.connection() as conn, conn.pipeline():  # with its commit: one round trip
            conn.execute(BOOKKEEPING)
            conn.execute(COUNT, (names, 1))
            conn.commit()

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[bool]:
        # Advisory locks are database-wide: the schema keeps two stores' locks apart.
        digest = hashlib.blake2b(f"{self._db.schema}\x1f{key}".encode(), digest_size=8).digest()
        lock_id = int.from_bytes(digest, "big", signed=True)
        with psycopg.connect(self._db.url, autocommit=True) as conn:
            timeout_ms = str(int(self._lock_timeout * 1000))
            conn.execute("SELECT set_config('statement_timeout', %s, false)", (timeout_ms,))
            try:
                conn.execute("SELECT pg_advisory_lock(%s)", (lock_id,))
            except psycopg.errors.QueryCanceled:
                log.warning("answer cache: gave up waiting for a generation; generating anyway")
                yield False
                return
            try:
                yield True
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (lock_id,))

    # -- writes -------------------------------------------------------------------------------

    def _evict(self, conn: Connection, unit_ids: list[str]) -> int:
        sizes = [r["size_bytes"] for r in conn.execute(EVICT, (unit_ids,)).fetchall()]
        if sizes:
            conn.execute(COUNT, (["units"], -len(sizes)))
            conn.execute(COUNT, (["bytes"], -sum(sizes)))
        return len(sizes)

    def put(self, unit: Unit, embedding: Vectors) -> None:
        """Cache a freshly generated unit; a previous unit for the same question is replaced."""
        check_unit(unit)
        vector = query_vector(embedding)
        body = {"question": unit.question, "answer": unit.answer, "mode": unit.mode}
        body["citations"] = json.loads(unit_to_json(unit))["citations"]
        size = len(unit_to_json(unit)) + vector.nbytes
        with self._db.connection() as conn:
            conn.execute(LOCK_SIZE)  # serialises puts, so the size bound is exact
            self._evict(conn, [unit.unit_id])  # putting the same unit again replaces it
            # Only superseded units already reported go; others still owe notices.
            old = [r["unit_id"] for r in conn.execute(SUPERSEDED, (unit.scope, unit.normalised))]
            if old:
                conn.execute(COUNT, (["evictions"], self._evict(conn, old)))
            conn.execute(
                INSERT_UNIT,
                (
                    unit.unit_id,
                    unit.scope,
                    unit.normalised,
                    Jsonb(body),
                    vector,
                    int(vector.shape[0]),
                    unit.created_at,
                    size,
                ),
            )
            with conn.cursor() as cur:
                cur.executemany(
                    INSERT_SOURCE,
                    [
                        (a, unit.unit_id, s.content_hash, s.version)
                        for a, s in unit.provenance.items()
                    ],
                )
            conn.execute(COUNT, (["units"], 1))
            conn.execute(COUNT, (["bytes"], size))
            self._enforce_bound(conn, keep=unit.unit_id)

    def _enforce_bound(self, conn: Connection, *, keep: str) -> None:
        evicted = 0
        while True:
            totals = {r["name"]: r["value"] for r in conn.execute(LOCK_SIZE)}
            excess = totals["units"] - self.limits.max_units
            if excess <= 0 and totals["bytes"] <= self.limits.max_bytes:
                break
            victims = [r["unit_id"] for r in conn.execute(OLDEST, (keep, max(excess, 1)))]
            if not victims:
                break
            evicted += self._evict(conn, victims)
        if evicted:
            conn.execute(COUNT, (["evictions"], evicted))

    def record_post(self, unit_id: str, place: Place) -> None:
        with self._db.connection() as conn:
            row = conn.execute(
                INSERT_POST, (place.platform, place.channel, place.thread, unit_id)
            ).fetchone()
            exists = row is not None or self._read_unit(conn, UNIT_BY_ID, (unit_id,))
        if not exists:
            log.info("answer cache: unit %s is gone; post in %s not recorded", unit_id, place)

    def _places(self, conn: Connection, unit_ids: list[str]) -> tuple[tuple[str, Place], ...]:
        rows = conn.execute(PLACES, (unit_ids,)).fetchall()
        return tuple((r["unit_id"], Place(r["platform"], r["channel"], r["thread"])) for r in rows)

    def source_changed(self, artifact_id: str, *, content_hash: str, version: str) -> Invalidation:
        with self._db.connection() as conn:
            rows = conn.execute(MATCHED, (artifact_id,)).fetchall()
            changed = [r["unit_id"] for r in rows if r["content_hash"] != content_hash]
            renumbered = [
                r["unit_id"]
                for r in rows
                if r["content_hash"] == content_hash and r["version"] != version
            ]
            if changed:
                conn.execute(DIRTY_NOTICED, (changed,))
                conn.execute(COUNT, (["dirtied"], len(changed)))
            if renumbered:
                # Same text under a new version number: the answer still holds.
                conn.execute(NEW_VERSION, (version, artifact_id, renumbered))
            places = self._places(conn, changed) if changed else ()
        skipped = len(rows) - len(changed)
        return reported(artifact_id, Invalidation(len(changed), skipped, 0, len(rows), places))

    def source_deleted(self, artifact_id: str) -> Invalidation:
        with self._db.connection() as conn:
            rows = conn.execute(MATCHED, (artifact_id,)).fetchall()
            unit_ids = [r["unit_id"] for r in rows]
            places = self._places(conn, unit_ids) if unit_ids else ()
            evicted = self._evict(conn, unit_ids) if unit_ids else 0
            if evicted:
                conn.execute(COUNT, (["evictions"], evicted))
        return reported(artifact_id, Invalidation(0, 0, evicted, len(rows), places))

    def get(self, unit_id: str) -> Unit | None:
        with self._db.connection() as conn:
            return self._read_unit(conn, UNIT_BY_ID, (unit_id,))

    def stats(self) -> dict[str, int]:
        with self._db.connection() as conn:
            found = {r["name"]: int(r["value"]) for r in conn.execute(STATS)}
        return with_totals(found, found.get("units", 0), found.get("bytes", 0))
