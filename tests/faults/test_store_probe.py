"""Fault class 3, the parts: the store probe's deadline, the outage watch's one alert, the
replay memory that stands in for the store.

A Postgres that accepts connections and never answers (a hung server, a black-holed network)
must not hold ``/healthz`` past 1 s: the probe answers "unreachable" within its deadline. The
daemon's watch alerts the ops channel once per outage however long it lasts, retries when the
platform fails too, and says once when the store is back. The bot's replay memory drops a
delivery it saw while the store could not be asked.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from bot.outage import StoreOutageWatch
from bot.platform import DeliveryFailed, OpsMessage, StoreOutage
from bot.recent_deliveries import RecentDeliveries
from store.outage import StoreProbe


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


def test_the_probe_says_unreachable_within_its_deadline_when_postgres_hangs(
    silent_server: int,
) -> None:
    probe = StoreProbe(f"postgresql://kb@127.0.0.1:{silent_server}/kb")
    for _ in range(3):  # the first starts the probe; the others join it or reuse its answer
        started = time.monotonic()
        assert probe.reachable() is False
        assert time.monotonic() - started < 1.0


def test_the_probe_sees_a_live_store_and_notices_when_it_goes(pg_url: str) -> None:
    assert StoreProbe(pg_url).reachable() is True
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens: refused at once
    probe = StoreProbe(f"postgresql://kb@127.0.0.1:{port}/kb")
    assert probe.reachable() is False
    assert probe.down_since is not None


@dataclass
class SwitchableStore:
    """Stands in for the Database: only its reachability matters to the watch."""

    up: bool = True

    def reachable(self) -> bool:
        return self.up


@dataclass
class OpsChannel:
    """A ChatPlatform's ops side that records what it was sent (or fails while told to)."""

    sent: list[OpsMessage] = field(default_factory=list)
    failures: int = 0

    @property
    def name(self) -> str:
        return "fake"

    def send_ops(self, channel: str, message: OpsMessage, *, message_id: int) -> None:
        if self.failures:
            self.failures -= 1
            raise DeliveryFailed("the platform is down too")
        self.sent.append(message)


def _watch(store: SwitchableStore, ops: OpsChannel) -> StoreOutageWatch:
    return StoreOutageWatch(store, ops, "COPS", alert_after=0.0)  # type: ignore[arg-type]


def test_one_alert_per_outage_and_one_line_when_it_is_back() -> None:
    store, ops = SwitchableStore(), OpsChannel()
    watch = _watch(store, ops)
    watch.check()
    store.up = False
    for _ in range(20):  # twenty checks (and any number of questions) in one outage
        watch.check()
    assert len(ops.sent) == 1
    alert = ops.sent[0]
    assert isinstance(alert, StoreOutage) and alert.back_after is None
    store.up = True
    watch.check()
    watch.check()
    assert len(ops.sent) == 2
    recovery = ops.sent[1]
    assert isinstance(recovery, StoreOutage) and recovery.back_after is not None
    assert recovery.since == alert.since


def test_a_blip_shorter_than_the_alert_delay_pages_nobody() -> None:
    store, ops = SwitchableStore(up=False), OpsChannel()
    watch = StoreOutageWatch(store, ops, "COPS", alert_after=60.0)  # type: ignore[arg-type]
    watch.check()
    store.up = True
    watch.check()
    assert ops.sent == []


def test_an_alert_the_platform_refused_is_tried_again_later() -> None:
    store, ops = SwitchableStore(up=False), OpsChannel(failures=1)
    watch = StoreOutageWatch(store, ops, "COPS", alert_after=0.0, retry_every=0.3)  # type: ignore[arg-type]
    watch.check()  # refused
    watch.check()  # too soon to try again
    assert ops.sent == []
    time.sleep(0.35)
    watch.check()
    assert len(ops.sent) == 1


def test_the_replay_memory_drops_a_delivery_seen_within_its_window() -> None:
    memory = RecentDeliveries(ttl=60.0)
    assert memory.first_time("Ev1") is True
    assert memory.first_time("Ev2") is True
    assert memory.first_time("Ev1") is False
    forgetful = RecentDeliveries(ttl=0.0)
    assert forgetful.first_time("Ev1") is True
    assert forgetful.first_time("Ev1") is True  # outside its window: the store decides
