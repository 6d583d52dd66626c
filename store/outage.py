"""Is the store reachable? Answered within a deadline, whatever Postgres is doing.

The connection pool is the wrong thing to ask while Postgres is down: a caller waits its whole
pool timeout (30 s) for a connection that never comes. :class:`StoreProbe` opens a fresh
connection instead (``SELECT 1``) on a background thread, shares one probe between every caller
and keeps its result for a second, and a caller waits at most its own deadline: a probe still
running by then counts as unreachable. ``/healthz`` (within 1 s), the Slack ack path and the
daemon's outage watch ask it (docs/ARCHITECTURE.md, "Failures: the store unreachable").

The probe logs the changes, so each process says once that the store went away and once that
it is back, however many requests noticed in between.
"""

from __future__ import annotations

import logging
import re
import threading
import time

import psycopg
from psycopg_pool import PoolTimeout

log = logging.getLogger(__name__)

PROBE_DEADLINE = 0.8  # seconds a caller waits: /healthz must answer within 1 s
FRESH_FOR = 1.0  # seconds a probe's result is reused
CONNECT_TIMEOUT = 2  # libpq's smallest connect_timeout; the caller's deadline is shorter


class StoreUnreachable(PoolTimeout):
    """The store did not answer a probe just now, so no pooled connection is waited for.

    A :class:`PoolTimeout` (and so a ``psycopg.OperationalError``), raised at once rather than
    after the pool's timeout, so every handler of a pool timeout handles it unchanged."""


class StoreProbe:
    """Reachability of one Postgres URL, probed at most once per :data:`FRESH_FOR` seconds."""

    def __init__(self, url: str, *, fresh_for: float = FRESH_FOR) -> None:
        self._url = url
        self._fresh_for = fresh_for
        self._lock = threading.Lock()
        self._result: tuple[float, bool] | None = None  # (when, reachable)
        self._running: threading.Event | None = None
        self._down_since: float | None = None

    def reachable(self, wait: float = PROBE_DEADLINE, *, fresh: bool = False) -> bool:
        """Whether the store answered a recent ``SELECT 1``; False when no answer came within
        ``wait`` seconds. ``fresh``: do not reuse an earlier answer (join a probe under way)."""
        with self._lock:
            recent = self._result is not None and time.monotonic() - self._result[0] < (
                0.0 if fresh else self._fresh_for
            )
            if recent and self._result is not None:
                return self._result[1]
            done = self._running
            if done is None:
                done = self._running = threading.Event()
                threading.Thread(
                    target=self._probe, args=(done,), name="kb-store-probe", daemon=True
                ).start()
        if not done.wait(wait):
            return False
        with self._lock:
            return self._result is not None and self._result[1]

    @property
    def down_since(self) -> float | None:
        """``time.time()`` of the first failed probe of the outage under way, else None."""
        return self._down_since

    def _probe(self, done: threading.Event) -> None:
        problem: str | None = None
        try:
            with psycopg.connect(
                self._url, connect_timeout=CONNECT_TIMEOUT, autocommit=True
            ) as conn:
                conn.execute("SELECT 1")
        except (psycopg.Error, OSError) as exc:
            problem = _one_line(exc)
        except BaseException:
            problem = "the probe failed"
            raise
        finally:
            with self._lock:
                self._result = (time.monotonic(), problem is None)
                self._running = None
                self._note(problem)
            done.set()

    def _note(self, problem: str | None) -> None:
        if problem is not None and self._down_since is None:
            self._down_since = time.time()
            log.warning(
                "the store (Postgres) is unreachable: %s; questions are answered with an "
                "apology and jobs wait until it is back (nothing needs a restart)",
                problem,
            )
        elif problem is None and self._down_since is not None:
            log.warning(
                "the store (Postgres) is reachable again after %.0f s",
                time.time() - self._down_since,
            )
            self._down_since = None


def _one_line(exc: BaseException) -> str:
    """libpq's message on one line, without any password it may quote."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return re.sub(r"(password=|://[^:/@]*:)[^@\s]*", r"\1***", text)[:300]


class QuietWhileUnreachable(logging.Filter):
    """A logging filter: while the store is unreachable, drop the records it causes (a
    traceback of a connection failure, the pool's reconnect warnings), since the probe's one
    line stands for all of them; the same records are kept while the store answers."""

    def __init__(self, probe: StoreProbe) -> None:
        super().__init__()
        self._probe = probe

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, StoreUnreachable):
            return False  # raised because a probe failed, which logged it
        caused = record.name.startswith("psycopg.pool") or _connection_failure(error)
        # A fresh probe: the record may be the first sign of an outage the last probe missed.
        return not caused or self._probe.reachable(fresh=True)


def _connection_failure(exc: BaseException | None) -> bool:
    for _ in range(8):  # a StoreError may wrap the driver's error
        if exc is None:
            return False
        if isinstance(exc, psycopg.OperationalError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
