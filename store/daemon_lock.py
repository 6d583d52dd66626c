"""One active ``kb daemon`` per store: a session advisory lock on a connection of its own.

A second daemon started by mistake (or a standby on another machine) waits for the lock
instead of running scheduled syncs, re-queueing the first one's claimed requests as
"abandoned", or delivering the outbox beside it; it takes over when the first one stops,
since Postgres releases a session lock when its connection goes.

A Postgres restart ends every session, so the active daemon loses the lock without stopping:
:meth:`DaemonLock.still_held` notices, takes it again if it is free, and says when another
daemon took it first; while the store is unreachable nobody can take it (docs/ARCHITECTURE.md,
"Failures: the store unreachable").
"""

from __future__ import annotations

import contextlib

import psycopg

from store.db import Database

_LOCK = 0x6B62_646D  # "kbdm": advisory-lock namespace of the daemon
_CONNECT_TIMEOUT = 5


class DaemonLock:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def try_acquire(self) -> bool:
        """Take the lock if no other daemon of this store holds it; True once held. False also
        while the store cannot be reached."""
        try:
            if self._conn is None:
                self._conn = psycopg.connect(
                    self._db.url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT
                )
            row = self._conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LOCK, self._db.schema)
            ).fetchone()
        except psycopg.OperationalError:
            self.release()
            return False
        return bool(row and row[0])

    def still_held(self) -> bool | None:
        """True while this daemon holds the lock (taken again if its session was lost and the
        lock is free); False when another daemon holds it now; None when the store cannot be
        reached (nobody can take it meanwhile)."""
        if self._conn is not None:
            try:
                self._conn.execute("SELECT 1")
                return True
            except psycopg.OperationalError:
                self.release()  # the session, and the lock with it, are gone
        if self.try_acquire():
            return True
        return None if self._conn is None else False

    def release(self) -> None:
        """Give the lock up (closing the connection does it)."""
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
