"""Foreign or corrupt data in the diskcache backend's directory is refused, never executed."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import diskcache
import numpy as np
import pytest
from cache_kit import Store, axis, make_unit, toward

from core.errors import CacheError
from store.cache import DiskAnswerCache, Hit, Miss, StoreHashes, Unit
from store.db import Database
from store.scope import Scope

EVERYTHING = Scope.everything()


class Payload:
    """Unpickling this creates ``marker``: proof that planted code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.touch, (self.marker,))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "answers"


@pytest.fixture
def cache(db: Database, store: Store, root: Path) -> Iterator[DiskAnswerCache]:
    store.artifact("confluence:1")
    opened = DiskAnswerCache(root, StoreHashes(db))
    yield opened
    opened.close()


@pytest.fixture
def unit(cache: DiskAnswerCache) -> Unit:
    cached = make_unit("How do I request VPN access?")
    cache.put(cached, axis(0))
    assert isinstance(cache.lookup("How do I request VPN access?", EVERYTHING, axis(0)), Hit)
    return cached


def plant(root: Path, key: str, value: object) -> None:
    """Write with a plain diskcache.Cache, as an attacker or another tool would (pickling)."""
    foreign = diskcache.Cache(str(root / "index"))
    try:
        foreign.set(key, value)
    finally:
        foreign.close()


def test_the_directory_is_private_and_values_are_json(cache: DiskAnswerCache, root: Path) -> None:
    cache.put(make_unit("How do I request VPN access?"), axis(0))
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "vectors").stat().st_mode) == 0o700
    for path in (root / "vectors").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    conn = sqlite3.connect(root / "index" / "cache.db")
    try:
        rows = conn.execute("SELECT key, mode, value FROM Cache").fetchall()
    finally:
        conn.close()
    assert rows and all(mode != diskcache.core.MODE_PICKLE for _, mode, _ in rows)
    units = [json.loads(value) for key, _, value in rows if key.startswith("u:")]
    assert units[0]["unit"]["question"] == "How do I request VPN access?"


@pytest.mark.parametrize("kind", ["pickle", "bytes", "bad json", "wrong shape"])
def test_a_planted_unit_record_is_refused_without_running_it(
    cache: DiskAnswerCache,
    unit: Unit,
    root: Path,
    tmp_path: Path,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    marker = tmp_path / "pwned"
    value = {
        "pickle": Payload(marker),
        "bytes": os.urandom(64),
        "bad json": '{"unit": ',
        "wrong shape": json.dumps({"unit": {"unit_id": 5}, "seg": "", "order": 0}),
    }[kind]
    plant(root, f"u:{unit.unit_id}", value)
    with caplog.at_level(logging.WARNING, logger="store.cache"):
        exact = cache.lookup("How do I request VPN access?", EVERYTHING, axis(0))
        near = cache.lookup("How to request VPN access", EVERYTHING, toward(0, 0.99))
        changed = cache.source_changed("confluence:1", content_hash="h2", version="2")
    assert isinstance(exact, Miss) and isinstance(near, Miss)
    assert changed.matched == 0
    assert not marker.exists()
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    # The cache keeps working: a new answer is stored and served.
    cache.put(make_unit("Who owns billing?"), axis(1))
    assert isinstance(cache.lookup("Who owns billing?", EVERYTHING, axis(1)), Hit)


def test_planted_counters_and_index_entries_are_ignored(
    cache: DiskAnswerCache, unit: Unit, root: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    plant(root, "c:hits_exact", Payload(marker))
    plant(root, "a:confluence:1", Payload(marker))
    plant(root, "m:units", Payload(marker))
    assert cache.stats()["hits_exact"] == 0  # the one real hit was overwritten
    # Counting over a planted value neither runs it nor fails the lookup.
    assert isinstance(cache.lookup("How do I request VPN access?", EVERYTHING, axis(0)), Hit)
    assert cache.stats()["hits_exact"] == 1
    cache.put(make_unit("Who owns billing?", {"confluence:2": ("h1", "1")}), axis(1))
    assert cache.stats()["units"] == 1  # the planted count was reset, then counted on
    assert cache.source_deleted("confluence:1").matched == 0
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "pickled npy"])
def test_damaged_vector_files_do_not_crash_or_execute(
    db: Database, cache: DiskAnswerCache, unit: Unit, root: Path, tmp_path: Path, damage: str
) -> None:
    marker = tmp_path / "pwned"
    for path in sorted((root / "vectors").iterdir()):
        if damage == "garbage":
            path.write_bytes(os.urandom(path.stat().st_size))
        elif damage == "truncated":
            path.write_bytes(path.read_bytes()[:3])
        else:
            with path.open("wb") as fh:
                np.save(fh, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    # A fresh handle (as in a new process) maps the damaged files from scratch.
    other = DiskAnswerCache(root, StoreHashes(db))
    try:
        near = other.lookup("How to request VPN access", EVERYTHING, toward(0, 0.99))
        assert isinstance(near, Miss) or near.unit.unit_id == unit.unit_id
        # The exact path needs no vectors; new answers still go in and come out.
        assert isinstance(other.lookup("How do I request VPN access?", EVERYTHING, axis(5)), Hit)
        other.put(make_unit("Who owns billing?"), axis(1))
        assert isinstance(other.lookup("Who owns billing?", EVERYTHING, axis(1)), Hit)
    finally:
        other.close()
    assert not marker.exists()


def test_a_cache_file_that_is_not_a_database_is_refused_clearly(db: Database, root: Path) -> None:
    (root / "index").mkdir(parents=True)
    (root / "index" / "cache.db").write_bytes(os.urandom(4096))
    with pytest.raises(CacheError, match="delete that folder"):
        DiskAnswerCache(root, StoreHashes(db))
