"""The answer workers, stopped within a bounded grace.

On SIGTERM a platform sends SIGKILL about 30 s later, so a stopping bot gives the answers under
way at most :data:`SHUTDOWN_GRACE` seconds. Work that finishes in time is posted as usual; a
question still unanswered after it is handed back: the asker is told to ask again (with a
Refresh button) and the working reaction is cleared, rather than left on the message forever.
Nothing new is accepted once stopping has begun.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 20.0


class DrainingPool:
    """A thread pool whose ``close`` waits at most ``grace`` seconds, then calls each
    unfinished task's ``hand_back``."""

    def __init__(self, workers: int, name: str, *, grace: float = SHUTDOWN_GRACE) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._grace = grace
        self._lock = threading.Lock()
        self._pending: dict[Future[None], Callable[[], None] | None] = {}

    def submit(self, task: Callable[[], None], hand_back: Callable[[], None] | None = None) -> None:
        with self._lock:
            future = self._pool.submit(task)  # raises RuntimeError once closing has begun
            self._pending[future] = hand_back
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.pop(future, None)

    def close(self) -> None:
        with self._lock:
            self._pool.shutdown(wait=False)
            pending = dict(self._pending)
        if pending:
            log.info("stopping: finishing %d answer(s) under way", len(pending))
        _, late = wait(pending, timeout=self._grace)
        if late:
            log.warning(
                "stopping: %d answer(s) not done after %.0f s; handed back", len(late), self._grace
            )
        for future in late:
            future.cancel()
            hand_back = pending[future]
            if hand_back is not None:
                try:
                    hand_back()
                except Exception as exc:  # a platform outage must not stop the shutdown
                    log.warning("handing back an answer failed: %s", type(exc).__name__)
