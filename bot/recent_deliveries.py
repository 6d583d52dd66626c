"""What this process saw lately, for the replay guard of every chat platform while the store
cannot be asked (docs/ARCHITECTURE.md, "Failures: the store unreachable")."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

# Slack's signature window is 5 min and its retries come within it; Teams redelivers within
# seconds. Replays older than this are the store's to recognise.
REPLAY_MEMORY_S = 15 * 60.0


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
