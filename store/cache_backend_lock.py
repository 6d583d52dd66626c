"""Every process of one store caches answers in the same backend (``KB_CACHE``).

A process with the answer cache on disk neither sees nor dirties the answers other processes
cache in Postgres, and the reverse: a daemon left on the default ``disk`` beside bots on
``postgres`` applies every source change to a cache nobody reads, marks it applied, and the
bots serve the old answer with no notice. So each process holds a shared session advisory
lock named after its backend while it runs, and one that finds the other backend's lock held
refuses to start. Postgres releases the lock with the connection, so a stopped process
leaves nothing behind and switching backends is: stop every process, restart them all.
"""

from __future__ import annotations

import psycopg

from core.errors import SettingsError
from store.db import Database

_LOCK = 0x6B62_6361  # "kbca": advisory-lock namespace of the answer-cache backends
BACKENDS = ("disk", "postgres")
# A granted two-key advisory lock shows in pg_locks as classid = key1, objid = key2, objsubid 2.
OTHER_HELD = """
SELECT EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 2
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid = %s::oid AND objid = hashtext(%s)::oid
)
"""


class CacheBackendLock:
    def __init__(self, db: Database, backend: str) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown answer-cache backend {backend!r}")
        self._db = db
        self._backend = backend
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def _key(self, backend: str) -> str:
        return f"{self._db.schema}:{backend}"

    def acquire(self) -> None:
        """Hold this backend's lock; raise SettingsError (KB_CACHE) while a process of this
        store runs with the other backend."""
        conn = psycopg.connect(self._db.url, autocommit=True)
        try:
            # Mine first, then probe the other: two processes starting at once with different
            # backends both refuse, never both run.
            conn.execute(
                "SELECT pg_advisory_lock_shared(%s, hashtext(%s))",
                (_LOCK, self._key(self._backend)),
            )
            other = next(b for b in BACKENDS if b != self._backend)
            # Look, do not touch: probing by taking the other lock would make two processes of
            # the same backend, starting together, each see the other's probe as a holder.
            row = conn.execute(OTHER_HELD, (_LOCK, self._key(other))).fetchone()
            if row and row[0]:
                raise SettingsError(
                    "KB_CACHE",
                    f"is {self._backend}, but another process of this store runs with "
                    f"KB_CACHE={other}; every process (bots, daemon, kb sync) must use the "
                    "same answer cache, or source changes dirty answers nobody reads",
                )
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def release(self) -> None:
        if self._conn is None:
            return
        try:
            # Unlocked before the close: a closed connection's server process releases its
            # locks only as it exits, a moment later, and a process started in that moment
            # with the other backend would be refused.
            self._conn.execute(
                "SELECT pg_advisory_unlock_shared(%s, hashtext(%s))",
                (_LOCK, self._key(self._backend)),
            )
        except psycopg.Error:
            pass  # the server releases it with the connection anyway
        finally:
            self._conn.close()
            self._conn = None
