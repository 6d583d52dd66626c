"""The default backend: a diskcache (SQLite) shared by every process on the machine.

Layout under the cache directory (0700): ``index/`` is a diskcache with :class:`SafeDisk`
(values are JSON text or integers, never pickles) and ``vectors/`` holds the embedding
segments (:mod:`store.cache._vectors`). Keys in ``index/``:

    u:<unit id>            the unit as JSON, with its segment, byte size and serve order
    x:<digest>             unit id for one (scope, normalised question)
    a:<artifact id>        JSON list of unit ids whose provenance holds it and that no
                           invalidation has reported yet (the artifact -> units index)
    !<ns:020d>:<unit id>   serve order: keys sort oldest first; dirty units sort at 0
    seg:<segment>          committed rows and generation of a vector segment
    c:<counter>, m:units, m:bytes, lock:<digest>

Every write happens in one diskcache transaction (SQLite ``BEGIN IMMEDIATE``, shared by all
processes), and every read of a unit's state goes to SQLite, so a unit dirtied by one process
is refused by all others from the moment the transaction commits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import diskcache

from core.errors import CacheError
from store.cache._core import (
    COUNTERS,
    CacheCore,
    check_unit,
    query_vector,
    reported,
    with_totals,
)
from store.cache._disk_keys import Record, exact_key, order_key
from store.cache._freshness import CurrentHashes
from store.cache._gates import Candidate
from store.cache._model import (
    CacheLimits,
    GateSettings,
    Invalidation,
    Place,
    SourceVersion,
    Unit,
    decode_json,
    unit_to_json,
)
from store.cache._vectors import ID_BYTES, WORDS, SegmentMeta, VectorStore, segment_name
from store.embedders import Vectors
from store.safe_disk import open_cache, private_directory

log = logging.getLogger("store.cache")
_READ_ERRORS = (CacheError, OSError, ValueError)


class DiskAnswerCache(CacheCore):
    """The answer cache in a local directory; safe across threads and processes."""

    storage_errors = (CacheError, OSError, sqlite3.Error, diskcache.Timeout)

    def __init__(
        self,
        directory: Path,
        hashes: CurrentHashes,
        *,
        gates: GateSettings | None = None,
        limits: CacheLimits | None = None,
        lock_timeout: float = 300.0,
        compact_min_dead: int = 1024,
    ) -> None:
        super().__init__(hashes, gates or GateSettings())
        self.limits = limits or CacheLimits()
        self._lock_timeout = lock_timeout
        self._compact_min_dead = compact_min_dead
        root = private_directory(directory)
        try:
            # diskcache must never cull our index keys on its own (eviction_policy none), and
            # nothing we keep expires except locks, which add() replaces (cull_limit 0).
            self._db = open_cache(
                root / "index", eviction_policy="none", cull_limit=0, statistics=False
            )
        except sqlite3.DatabaseError as exc:
            raise CacheError(
                f"the answer cache in {root} is not a readable cache ({exc}); stop kb-bot and "
                "delete that folder, it is rebuilt as questions are asked"
            ) from exc
        self._vectors = VectorStore(root / "vectors")

    def close(self) -> None:
        self._db.close()

    # -- records ------------------------------------------------------------------------------

    def _read(self, key: str) -> Any:
        try:
            return self._db.get(key)
        except CacheError as exc:
            log.warning("answer cache: refused the value at %r: %s", key, exc)
            return None

    def _record(self, unit_id: str) -> Record | None:
        value = self._read(f"u:{unit_id}")
        if value is None:
            return None
        try:
            record = Record.from_value(value)
        except CacheError as exc:
            log.warning("answer cache: ignored unit %s: %s", unit_id, exc)
            return None
        return record if record.unit.unit_id == unit_id else None

    def _write(self, record: Record) -> None:
        self._db.set(f"u:{record.unit.unit_id}", record.to_json())

    def _list(self, key: str) -> list[str]:
        value = self._read(key)
        if value is None:
            return []
        try:
            items = decode_json(value)
        except CacheError as exc:
            log.warning("answer cache: ignored the index at %r: %s", key, exc)
            return []
        return [i for i in items if isinstance(i, str)] if isinstance(items, list) else []

    def _set_list(self, key: str, items: list[str]) -> None:
        if items:
            self._db.set(key, json.dumps(items))
        else:
            self._db.delete(key)

    def _segment(self, name: str) -> SegmentMeta | None:
        value = self._read(f"seg:{name}")
        if value is None:
            return None
        try:
            return SegmentMeta.from_json(decode_json(value))
        except CacheError as exc:
            log.warning("answer cache: ignored vector segment %s: %s", name, exc)
            return None

    def _reorder(self, record: Record, order: int) -> Record:
        self._db.delete(order_key(record.order, record.unit.unit_id))
        self._db.set(order_key(order, record.unit.unit_id), "")
        return replace(record, order=order)

    # -- primitives for CacheCore -------------------------------------------------------------

    def _exact(self, scope_key: str, normalised: str) -> Candidate | None:
        unit_id = self._read(exact_key(scope_key, normalised))
        record = self._record(unit_id) if isinstance(unit_id, str) else None
        if record is None or (record.unit.scope, record.unit.normalised) != (
            scope_key,
            normalised,
        ):
            return None
        return Candidate(record.unit, 1.0)

    def _nearest(self, scope_key: str, query: Vectors, cutoff: float) -> list[Candidate] | None:
        meta = self._segment(segment_name(scope_key, query.shape[0]))
        if meta is None or meta.count == meta.dead:
            return None
        try:
            found = self._vectors.search(meta, query, cutoff, self.gates.candidates)
        except _READ_ERRORS as exc:
            log.warning("answer cache: vector segment of scope %r unreadable: %s", scope_key, exc)
            return []
        out: list[Candidate] = []
        for unit_id, similarity in found:
            record = self._record(unit_id)
            # The vectors may lag a dirtying by microseconds; the record never does.
            if record is not None and not record.unit.dirty and record.unit.scope == scope_key:
                out.append(Candidate(record.unit, similarity))
        return out

    def _serve(self, unit: Unit, *, exact: bool, count: bool) -> Unit | None:
        with self._db.transact(retry=True):
            record = self._record(unit.unit_id)
            if record is None or record.unit.dirty:
                return None
            now = datetime.now(UTC)
            unit = replace(record.unit, served_at=now, served_count=record.unit.served_count + 1)
            record = self._reorder(replace(record, unit=unit), time.time_ns())
            self._write(record)
            if count:
                self._incr(["hits_exact" if exact else "hits_nearest"])
        return unit

    def _mark_stale(self, unit_id: str) -> None:
        with self._db.transact(retry=True):
            record = self._record(unit_id)
            if record is not None and not record.unit.dirty:
                self._dirty([record], noticed=False)

    def _count(self, names: list[str]) -> None:
        with self._db.transact(retry=True):
            self._incr(names)

    def _incr(self, names: list[str], delta: int = 1) -> None:
        for name in names:
            self._add(f"c:{name}", delta)

    def _add(self, key: str, delta: int) -> None:
        try:
            self._db.incr(key, delta)
        except TypeError:
            # Not an integer we wrote (incr adds to the raw column, it never unpickles).
            log.warning("answer cache: replaced the foreign value at %r", key)
            self._db.set(key, delta)

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[bool]:
        lock_key, token = f"lock:{key}", uuid.uuid4().hex
        deadline = time.monotonic() + self._lock_timeout
        delay = 0.002
        while not self._db.add(lock_key, token, expire=self._lock_timeout, retry=True):
            if time.monotonic() > deadline:
                log.warning("answer cache: gave up waiting for a generation; generating anyway")
                yield False
                return
            time.sleep(delay)
            delay = min(delay * 1.5, 0.05)
        try:
            yield True
        finally:
            with self._db.transact(retry=True):
                if self._read(lock_key) == token:
                    self._db.delete(lock_key)

    # -- writes -------------------------------------------------------------------------------

    def _dirty(self, records: list[Record], *, noticed: bool) -> None:
        """Mark dirty (inside a transaction): never served again, evicted first."""
        self._kill_vectors([r for r in records if not r.unit.dirty])
        for record in records:
            record = self._reorder(record, 0)
            self._write(replace(record, unit=replace(record.unit, dirty=True), noticed=noticed))

    def _kill_vectors(self, records: list[Record]) -> None:
        """Flag the units' rows dead so searches skip them (inside a transaction)."""
        for name in {r.seg for r in records}:
            meta = self._segment(name)
            if meta is None:
                continue
            new = meta
            try:
                for record in records:
                    if record.seg == name:
                        new = self._vectors.mark_dead(new, record.unit.unit_id)
            except _READ_ERRORS as exc:
                log.warning("answer cache: could not mark a vector dead: %s", exc)
            if new != meta:
                self._db.set(f"seg:{name}", new.to_json())

    def _unindex(self, unit_id: str, artifacts: list[str]) -> None:
        for artifact_id in artifacts:
            key = f"a:{artifact_id}"
            self._set_list(key, [u for u in self._list(key) if u != unit_id])

    def _evict(self, unit_id: str) -> Record | None:
        """Remove a unit and every trace of it (inside a transaction)."""
        record = self._record(unit_id)
        self._db.delete(f"u:{unit_id}")
        if record is None:
            return None
        unit = record.unit
        if not unit.dirty:
            self._kill_vectors([record])
        self._db.delete(order_key(record.order, unit_id))
        exact = exact_key(unit.scope, unit.normalised)
        if self._read(exact) == unit_id:
            self._db.delete(exact)
        if not record.noticed:
            self._unindex(unit_id, list(unit.provenance))
        self._add("m:units", -1)
        self._add("m:bytes", -record.size)
        return record

    def put(self, unit: Unit, embedding: Vectors) -> None:
        """Cache a freshly generated unit; a previous unit for the same question is replaced."""
        check_unit(unit)
        vector = query_vector(embedding)
        name = segment_name(unit.scope, vector.shape[0])
        order = time.time_ns()
        stored = replace(unit, served_at=None, served_count=0, dirty=False)
        size = len(unit_to_json(stored)) + ID_BYTES + WORDS * 8 + vector.nbytes + 1
        record = Record(stored, name, order, size, noticed=False)
        unlink: list[Path] = []
        with self._db.transact(retry=True):
            exact = exact_key(unit.scope, unit.normalised)
            self._evict(unit.unit_id)  # putting the same unit again replaces it
            previous = self._read(exact)
            old = self._record(previous) if isinstance(previous, str) else None
            if old is not None and old.unit.dirty and old.noticed:
                # Superseded and already reported. Anything else stays until evicted: a
                # live unit is still right, an unreported dirty one still owes its notices.
                self._evict(old.unit.unit_id)
                self._incr(["evictions"])
            meta = self._segment(name) or SegmentMeta(name, unit.scope, vector.shape[0])
            meta = self._vectors.append(meta, unit.unit_id, vector)
            if meta.dead >= max(self._compact_min_dead, meta.count - meta.dead):
                meta, unlink = self._vectors.compact(meta)
            self._db.set(f"seg:{name}", meta.to_json())
            self._write(record)
            self._db.set(order_key(order, unit.unit_id), "")
            self._db.set(exact, unit.unit_id)
            for artifact_id in unit.provenance:
                key = f"a:{artifact_id}"
                self._set_list(key, [*self._list(key), unit.unit_id])
            self._add("m:units", 1)
            self._add("m:bytes", size)
            self._enforce_bound(keep=unit.unit_id)
        for path in unlink:
            # Other processes may still map these files; Linux keeps them until unmapped.
            path.unlink(missing_ok=True)

    def _enforce_bound(self, *, keep: str) -> None:
        evicted = 0
        for key in self._db.iterkeys():
            if not self._over_bound():
                break
            if not isinstance(key, str) or not key.startswith("!"):
                if isinstance(key, str) and key > "!":
                    break
                continue
            unit_id = key.rsplit(":", 1)[-1]
            if unit_id == keep:
                continue
            if self._evict(unit_id) is None:
                self._db.delete(key)  # an order key whose unit is gone
            evicted += 1
        if evicted:
            self._incr(["evictions"], evicted)

    def _over_bound(self) -> bool:
        units, size = self._int("m:units"), self._int("m:bytes")
        return units > self.limits.max_units or size > self.limits.max_bytes

    def record_post(self, unit_id: str, place: Place) -> None:
        with self._db.transact(retry=True):
            record = self._record(unit_id)
            if record is None:
                log.info("answer cache: unit %s is gone; post in %s not recorded", unit_id, place)
                return
            self._write(replace(record, unit=record.unit.with_post(place)))

    def source_changed(self, artifact_id: str, *, content_hash: str, version: str) -> Invalidation:
        dirtied = skipped = matched = 0
        places: list[tuple[str, Place]] = []
        key = f"a:{artifact_id}"
        with self._db.transact(retry=True):
            keep: list[str] = []
            changed: list[Record] = []
            for unit_id in self._list(key):
                record = self._record(unit_id)
                seen = None if record is None else record.unit.provenance.get(artifact_id)
                if record is None or seen is None:
                    continue
                matched += 1
                if seen.content_hash == content_hash:
                    skipped += 1
                    keep.append(unit_id)
                    if seen.version != version:
                        # Same text under a new version number: the answer still holds.
                        provenance = dict(record.unit.provenance)
                        provenance[artifact_id] = SourceVersion(content_hash, version)
                        unit = replace(record.unit, provenance=provenance)
                        self._write(replace(record, unit=unit))
                    continue
                dirtied += 1
                places.extend((unit_id, p) for p in record.unit.places)
                changed.append(record)
                self._unindex(unit_id, [a for a in record.unit.provenance if a != artifact_id])
            self._dirty(changed, noticed=True)
            self._set_list(key, keep)
            if dirtied:
                self._incr(["dirtied"], dirtied)
        return reported(artifact_id, Invalidation(dirtied, skipped, 0, matched, tuple(places)))

    def source_deleted(self, artifact_id: str) -> Invalidation:
        evicted = matched = 0
        places: list[tuple[str, Place]] = []
        with self._db.transact(retry=True):
            for unit_id in self._list(f"a:{artifact_id}"):
                record = self._evict(unit_id)
                if record is None:
                    continue
                matched += 1
                evicted += 1
                places.extend((unit_id, p) for p in record.unit.places)
            self._db.delete(f"a:{artifact_id}")
            if evicted:
                self._incr(["evictions"], evicted)
        return reported(artifact_id, Invalidation(0, 0, evicted, matched, tuple(places)))

    def get(self, unit_id: str) -> Unit | None:
        record = self._record(unit_id)
        return None if record is None else record.unit

    def stats(self) -> dict[str, int]:
        stored = {name: self._int(f"c:{name}") for name in COUNTERS}
        return with_totals(stored, self._int("m:units"), self._int("m:bytes"))

    def _int(self, key: str) -> int:
        value = self._read(key)
        return value if type(value) is int else 0
