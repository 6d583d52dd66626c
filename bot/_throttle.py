"""Housekeeping that runs at most once per interval, in whichever request thread gets there."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Throttle:
    """Calls ``action`` when at least ``interval`` seconds have passed since the last call began;
    never two at once. A caller that finds it too soon, or already running, returns at once."""

    def __init__(self, interval: float, action: Callable[[], None]) -> None:
        self._interval = interval
        self._action = action
        self._last = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last < self._interval or not self._lock.acquire(blocking=False):
            return
        try:
            self._last = now
            self._action()
        finally:
            self._lock.release()
