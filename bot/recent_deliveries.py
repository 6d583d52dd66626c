"""What this process saw lately, for the replay guard of every chat platform while the store
cannot be asked (docs/ARCHITECTURE.md, "Failures: the store unreachable")."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from store.db import Connection, Database

log = logging.getLogger(__name__)

# Slack's signature window is 5 min and its retries come within it; Teams redelivers within
# seconds. Replays older than this are the store's to recognise.
REPLAY_MEMORY_S = 15 * 60.0
ACK_STORE_WAIT = 1.0  # seconds a replay check may wait for a pooled connection


class RecentDeliveries:
    """The delivery keys this process saw within the replay window, oldest first: the replay
    guard while the store cannot be asked, and a second one after it is back (a delivery seen
    only during the outage is not in the store)."""

    def __init__(self, ttl: float = REPLAY_MEMORY_S, cap: int = 100_000) -> None:
        self._ttl = ttl
        self._cap = cap
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, key: str) -> bool:
        """Remember ``key``; False when it was seen within the window."""
        now = time.monotonic()
        with self._lock:
            while self._seen and (
                len(self._seen) >= self._cap or next(iter(self._seen.values())) < now - self._ttl
            ):
                self._seen.popitem(last=False)
            if key in self._seen:
                return False
            self._seen[key] = now
            return True

    def first_delivery(
        self,
        key: str,
        db: Database,
        record: Callable[[Connection], bool],
        *,
        on_repeat: Callable[[Connection], None] | None = None,
    ) -> bool:
        """Whether ``key`` is a first delivery, by the store (``record`` marks it seen and says
        whether it was new; ``on_repeat`` runs in the same transaction for a repeat) and by
        this memory. Never the pool's 30 s: an ack must not wait on the store; when it cannot
        be asked, this memory decides (docs/ARCHITECTURE.md, "Failures: the store
        unreachable")."""
        seen_here = not self.first_time(key)
        try:
            with db.connection(timeout=ACK_STORE_WAIT) as conn:
                first = record(conn) and not seen_here
                if not first and on_repeat is not None:
                    on_repeat(conn)
        except Exception as exc:  # the store is down: this process's memory guards replays
            log.info("replay check without the store (%s): from memory", type(exc).__name__)
            return not seen_here
        return first
