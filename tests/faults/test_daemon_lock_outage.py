"""Fault class 3, the daemon lock: one active daemon before, during and after a Postgres restart.

Two daemons on one store: one runs its jobs, the other stands by on the session advisory lock
(store/daemon_lock.py). A Postgres restart ends both sessions, so the lock is free for whoever
asks first. The standby used to crash on its next poll (the lock connection raised), and the
active one never noticed its lock was gone, so a standby that survived would have run beside
it. Now the standby keeps polling through the outage, and the active one checks its session
every few seconds: after the restart exactly one daemon runs jobs.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from fakes.postgres_outage import StoppablePostgres

from kb.daemon import LOCK_CHECK_TICKS, Daemon
from store.db import Database
from store.migrate import migrate


def _daemon(db: Database, name: str, running: dict[str, bool]) -> Daemon:
    def job(stop: threading.Event) -> None:
        running[name] = True
        stop.wait()
        running[name] = False

    return Daemon(
        db=db,
        engine=None,  # type: ignore[arg-type]  # no source: never asked to sync
        connectors={},
        sync_every_minutes=600,
        cache=None,  # type: ignore[arg-type]
        background=[job],
        standby_poll_seconds=0.2,
    )


def _holds(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_one_daemon_runs_jobs_after_postgres_restarts_under_an_active_and_a_standby(
    postgres: StoppablePostgres,
) -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    first_db = Database.open(postgres.url, schema=schema, max_size=4)
    migrate(first_db)
    second_db = Database.open(postgres.url, schema=schema, max_size=4)
    running = {"first": False, "second": False}
    daemons = [_daemon(first_db, "first", running), _daemon(second_db, "second", running)]
    threads = [threading.Thread(target=d.run, daemon=True) for d in daemons]
    try:
        threads[0].start()
        assert _holds(lambda: running["first"], 20)
        threads[1].start()
        time.sleep(1.0)
        assert running == {"first": True, "second": False}

        postgres.stop()
        time.sleep(2.0)  # the standby polls ten times into a dead store
        postgres.start()

        def one_runs() -> bool:
            return sum(running.values()) == 1

        # The first daemon finds its session gone within LOCK_CHECK_TICKS seconds; whichever
        # took the lock first runs, the other stands by.
        time.sleep(LOCK_CHECK_TICKS + 2)
        assert _holds(one_runs, 20), running
        for _ in range(int(LOCK_CHECK_TICKS * 1.5 / 0.1)):  # and it stays that way
            assert one_runs(), running
            time.sleep(0.1)
        assert all(t.is_alive() for t in threads), "a daemon crashed on the outage"
    finally:
        for daemon in daemons:
            daemon.stop.set()
        for thread in threads:
            thread.join(40)
        second_db.close()
        first_db.close()
