"""Fixtures for the answer cache: both backends over a real migrated Postgres schema."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The helpers module beside this file, importable by the tests and by worker processes.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cache_kit import Store

from store.cache import CacheLimits, DiskAnswerCache, PostgresAnswerCache, StoreHashes
from store.cache._core import CacheCore
from store.db import Database

# "postgres-indexed" is the Postgres backend made to search every scope through its HNSW
# index (normally only scopes of more than 2,000 live units are), so the contract holds there.
BACKENDS = ["disk", "postgres", "postgres-indexed"]
CacheFactory = Callable[..., CacheCore]


@pytest.fixture
def store(db: Database) -> Store:
    return Store(db)


@pytest.fixture(params=BACKENDS)
def make_cache(
    request: pytest.FixtureRequest, db: Database, tmp_path: Path
) -> Iterator[CacheFactory]:
    """Opens caches of one backend on one shared location (like two processes would)."""
    opened: list[CacheCore] = []

    def make(**options: Any) -> CacheCore:
        cache: CacheCore
        if request.param == "disk":
            cache = DiskAnswerCache(tmp_path / "answers", StoreHashes(db), **options)
        else:
            options.pop("compact_min_dead", None)
            if request.param == "postgres-indexed":
                options["exact_scan_limit"] = 0
            cache = PostgresAnswerCache(db, **options)
        opened.append(cache)
        return cache

    yield make
    for cache in opened:
        cache.close()  # type: ignore[attr-defined]


@pytest.fixture
def cache(make_cache: CacheFactory, store: Store) -> CacheCore:
    store.artifact("confluence:1")
    return make_cache(limits=CacheLimits(max_units=1000, max_bytes=50_000_000))
