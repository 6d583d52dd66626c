"""The diskcache backend's vector segments: compaction, and handles opened earlier."""

from __future__ import annotations

import threading
from pathlib import Path

from cache_kit import Store, axis, make_unit, toward

from store.cache import CacheLimits, DiskAnswerCache, Hit, Miss, Place, StoreHashes
from store.db import Database
from store.scope import Scope

EVERYTHING = Scope.everything()


def test_compaction_drops_dead_rows_and_every_handle_keeps_serving(
    db: Database, store: Store, tmp_path: Path
) -> None:
    for i in range(12):
        store.artifact(f"confluence:{i}")
    root = tmp_path / "answers"
    limits = CacheLimits(max_units=100, max_bytes=10_000_000)
    writer = DiskAnswerCache(root, StoreHashes(db), limits=limits, compact_min_dead=4)
    reader = DiskAnswerCache(root, StoreHashes(db), limits=limits, compact_min_dead=4)
    try:
        units = [
            make_unit(f"question {chr(97 + i)}", {f"confluence:{i}": ("h1", "1")})
            for i in range(10)
        ]
        for i, unit in enumerate(units):
            writer.put(unit, axis(i))
        for i in range(10):
            assert isinstance(
                reader.lookup(f"asked {chr(97 + i)}", EVERYTHING, toward(i, 0.97)), Hit
            )
        for i in range(6):
            writer.source_changed(f"confluence:{i}", content_hash="h2", version="2")
        # The next put finds 6 dead of 11 rows and rewrites the segment as generation 1.
        writer.put(make_unit("question k", {"confluence:10": ("h1", "1")}), axis(10))
        files = sorted(p.name.split(".", 1)[1] for p in (root / "vectors").iterdir())
        assert files == ["1.codes", "1.dead", "1.ids", "1.vecs"]
        live_ids = next((root / "vectors").glob("*.1.ids"))
        assert live_ids.stat().st_size == 5 * 32  # 4 live units + the new one
        # The reader mapped generation 0 before; it follows to generation 1.
        for i in range(6):
            assert isinstance(
                reader.lookup(f"asked {chr(97 + i)}", EVERYTHING, toward(i, 0.97)), Miss
            )
        for i in range(6, 11):
            found = reader.lookup(f"asked {chr(97 + i)}", EVERYTHING, toward(i, 0.97))
            assert isinstance(found, Hit) and found.similarity > 0.96
        # Dirtying after compaction finds the unit's new row.
        writer.source_changed("confluence:7", content_hash="h2", version="2")
        assert isinstance(reader.lookup("asked h", EVERYTHING, toward(7, 0.97)), Miss)
        assert isinstance(reader.lookup("asked i", EVERYTHING, toward(8, 0.97)), Hit)
    finally:
        writer.close()
        reader.close()


def test_a_new_handle_reads_everything_from_disk(
    db: Database, store: Store, tmp_path: Path
) -> None:
    store.artifact("confluence:1")
    root = tmp_path / "answers"
    first = DiskAnswerCache(root, StoreHashes(db))
    unit = make_unit("How do I request VPN access?")
    first.put(unit, axis(0))
    first.record_post(unit.unit_id, Place("slack", "C", "1"))
    first.close()
    second = DiskAnswerCache(root, StoreHashes(db))
    try:
        found = second.lookup("how to get vpn access", EVERYTHING, toward(0, 0.95))
        assert isinstance(found, Hit) and found.unit.unit_id == unit.unit_id
        assert found.unit.places[0].channel == "C"
        assert second.stats()["units"] == 1
    finally:
        second.close()


def test_threads_reading_while_one_writes_never_see_a_stale_unit(
    db: Database, store: Store, tmp_path: Path
) -> None:
    store.artifact("confluence:1", content_hash="h0")
    cache = DiskAnswerCache(tmp_path / "answers", StoreHashes(db), compact_min_dead=8)
    cache.put(make_unit("How do I request VPN access?", {"confluence:1": ("h0", "0")}), axis(0))
    epoch = [0]
    problems: list[str] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                seen = epoch[0]
                result = cache.lookup("how to get vpn access", EVERYTHING, toward(0, 0.97))
                if isinstance(result, Hit):
                    built = int(result.unit.provenance["confluence:1"].content_hash[1:])
                    if built < seen:
                        problems.append(f"served h{built} after invalidation {seen}")
        except Exception as exc:  # reported below
            problems.append(repr(exc))

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        for i in range(1, 40):
            store.artifact("confluence:1", content_hash=f"h{i}", version=str(i))
            cache.source_changed("confluence:1", content_hash=f"h{i}", version=str(i))
            epoch[0] = i
            cache.put(
                make_unit("How do I request VPN access?", {"confluence:1": (f"h{i}", str(i))}),
                axis(0),
            )
    finally:
        stop.set()
        for t in readers:
            t.join(30)
        cache.close()
    assert problems == []
