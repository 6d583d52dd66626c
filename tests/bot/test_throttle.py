"""The hourly housekeeping (pruning seen events and old turns) runs once per interval, in one
thread at a time, and never makes a request wait for it."""

from __future__ import annotations

import threading
import time

from bot._throttle import Throttle


def test_housekeeping_runs_once_per_interval() -> None:
    calls: list[float] = []
    throttle = Throttle(0.2, lambda: calls.append(time.monotonic()))
    throttle()
    throttle()
    assert len(calls) == 1, "a second request inside the interval does not prune again"
    time.sleep(0.25)
    throttle()
    assert len(calls) == 2


def test_a_request_never_waits_for_housekeeping_already_running() -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow() -> None:
        calls.append(1)
        started.set()
        release.wait(5)

    throttle = Throttle(0.0, slow)
    first = threading.Thread(target=throttle)
    first.start()
    assert started.wait(5)
    began = time.monotonic()
    throttle()  # interval passed, but the first run still holds it
    assert time.monotonic() - began < 0.5 and calls == [1]
    release.set()
    first.join(5)
    throttle()
    assert calls == [1, 1]
