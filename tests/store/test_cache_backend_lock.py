"""Every process of one store caches answers in the same backend (store/cache_backend_lock.py):
a process with the other KB_CACHE refuses to start while one with the first runs."""

from __future__ import annotations

import threading
import uuid

import pytest

from core.errors import SettingsError
from store.cache_backend_lock import CacheBackendLock
from store.db import Database


def test_processes_on_the_same_backend_run_side_by_side(db: Database) -> None:
    first, second = CacheBackendLock(db, "postgres"), CacheBackendLock(db, "postgres")
    first.acquire()
    second.acquire()
    second.release()
    first.release()


def test_a_process_with_the_other_backend_is_refused_naming_kb_cache(db: Database) -> None:
    bot = CacheBackendLock(db, "postgres")
    bot.acquire()
    try:
        with pytest.raises(SettingsError) as refused:
            CacheBackendLock(db, "disk").acquire()
        assert refused.value.key == "KB_CACHE"
        assert "KB_CACHE=postgres" in str(refused.value)
    finally:
        bot.release()


def test_once_every_process_has_stopped_the_backend_can_change(db: Database) -> None:
    disk = CacheBackendLock(db, "disk")
    disk.acquire()
    with pytest.raises(SettingsError):
        CacheBackendLock(db, "postgres").acquire()
    disk.release()
    switched = CacheBackendLock(db, "postgres")
    switched.acquire()
    switched.release()


def test_stores_in_other_schemas_do_not_constrain_each_other(db: Database, pg_url: str) -> None:
    other = Database.open(pg_url, schema=f"t_{uuid.uuid4().hex[:16]}", max_size=1)
    ours = CacheBackendLock(db, "postgres")
    ours.acquire()
    try:
        theirs = CacheBackendLock(other, "disk")
        theirs.acquire()
        theirs.release()
    finally:
        ours.release()
        other.drop_schema()
        other.close()


def test_processes_of_one_backend_starting_together_all_start(db: Database) -> None:
    # kb up starts the bot and the daemon at the same moment: neither may mistake the other's
    # check for a process of the other backend.
    locks = [CacheBackendLock(db, "disk") for _ in range(8)]
    failures: list[BaseException] = []
    barrier = threading.Barrier(len(locks))

    def start(lock: CacheBackendLock) -> None:
        barrier.wait()
        try:
            for _ in range(20):
                lock.acquire()
                lock.release()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(lock,)) for lock in locks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with pytest.raises(SettingsError):
        with_disk = CacheBackendLock(db, "disk")
        with_disk.acquire()
        try:
            CacheBackendLock(db, "postgres").acquire()
        finally:
            with_disk.release()
