from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from core.errors import RemoteError
from sync._prefetch import Prefetcher


def _doubled(group: list[int]) -> list[int]:
    return [2 * n for n in group]


def test_groups_arrive_in_order_and_prepared() -> None:
    with Prefetcher(range(7), _doubled, group_size=3) as groups:
        assert list(groups) == [[0, 2, 4], [6, 8, 10], [12]]


def test_a_listing_error_arrives_after_the_groups_before_it() -> None:
    def listing() -> Iterator[int]:
        yield from range(4)
        raise RemoteError("the listing broke")

    seen: list[list[int]] = []
    with (
        pytest.raises(RemoteError, match="listing broke"),
        Prefetcher(listing(), _doubled, group_size=2) as groups,
    ):
        for group in groups:
            seen.append(group)
    assert seen == [[0, 2], [4, 6]]


def test_fetching_runs_at_most_the_queue_depth_ahead_of_the_consumer() -> None:
    fetched: list[int] = []

    def listing() -> Iterator[int]:
        for n in range(100):
            fetched.append(n)
            yield n

    with Prefetcher(listing(), _doubled, group_size=1, depth=2) as groups:
        next(groups)
        threading.Event().wait(0.3)  # give the producer every chance to run ahead
        assert len(fetched) <= 1 + 2 + 1  # consumed, queued, and one being put


def test_leaving_early_stops_the_fetching_thread_and_closes_the_listing() -> None:
    closed = threading.Event()

    def listing() -> Iterator[int]:
        try:
            yield from range(1000)
        finally:
            closed.set()

    prefetch = Prefetcher(listing(), _doubled, group_size=1, depth=1)
    with prefetch as groups:
        next(groups)
    assert not prefetch._thread.is_alive()
    assert closed.wait(1.0)
