"""The sync engine's I/O side: a thread that lists, fetches and prepares groups of items while
the caller's thread embeds and commits the previous group.

The queue between them is bounded (``depth`` groups), so a slow embedder holds back fetching
instead of piling pages up in memory; the model keeps the cores and never waits on the network
or the database except for the very first group.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

Raw = TypeVar("Raw")
Ready = TypeVar("Ready")

_DONE = object()
_POLL_SECONDS = 0.1


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Prefetcher(Generic[Raw, Ready]):
    """Yields ``prepare(group)`` for consecutive groups of up to ``group_size`` items of
    ``items``, computed on a background thread. An exception raised by the listing or by
    ``prepare`` is re-raised in the consuming thread after the groups before it."""

    def __init__(
        self,
        items: Iterable[Raw],
        prepare: Callable[[list[Raw]], list[Ready]],
        *,
        group_size: int = 32,
        depth: int = 2,
    ) -> None:
        self._items = items
        self._prepare = prepare
        self._group_size = group_size
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="sync-prefetch", daemon=True)

    def __enter__(self) -> Iterator[list[Ready]]:
        self._thread.start()
        return self._consume()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=_POLL_SECONDS)
        self._thread.join()

    def _consume(self) -> Iterator[list[Ready]]:
        while True:
            got = self._queue.get()
            if got is _DONE:
                return
            if isinstance(got, _Raised):
                raise got.exc
            yield got  # type: ignore[misc]

    def _put(self, value: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(value, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        group: list[Raw] = []
        try:
            for item in self._items:
                if self._stop.is_set():
                    return
                group.append(item)
                if len(group) >= self._group_size:
                    if not self._put(self._prepare(group)):
                        return
                    group = []
            if group and not self._put(self._prepare(group)):
                return
        except BaseException as exc:  # handed to the consumer, after what came before it
            if group:
                try:
                    ready = self._prepare(group)
                except BaseException:  # the first error is the one to report
                    pass
                else:
                    self._put(ready)
            self._put(_Raised(exc))
            return
        finally:
            close = getattr(self._items, "close", None)
            if callable(close) and self._stop.is_set():
                close()  # a generator stopped early releases what it holds
        self._put(_DONE)
