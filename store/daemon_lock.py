"""One active ``kb daemon`` per store: a session advisory lock on a connection of its own.

A second daemon started by mistake (or a standby on another machine) waits for the lock
instead of running scheduled syncs, re-queueing the first one's claimed requests as
"abandoned", or delivering the outbox beside it; it takes over when the first one stops,
since Postgres releases a session lock when its connection goes.
"""

from __future__ import annotations

import psycopg

from store.db import Database

_LOCK = 0x6B62_646D  # "kbdm": advisory-lock namespace of the daemon


class DaemonLock:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def try_acquire(self) -> bool:
        """Take the lock if no other daemon of this store holds it; True once held."""
        if self._conn is None:
            self._conn = psycopg.connect(self._db.url, autocommit=True)
        row = self._conn.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LOCK, self._db.schema)
        ).fetchone()
        return bool(row and row[0])

    def release(self) -> None:
        """Give the lock up (closing the connection does it)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
