"""One ops alert per store outage, sent without the store (docs/ARCHITECTURE.md, "Failures:
the store unreachable").

Ops alerts normally go through the outbox, which lives in Postgres: useless while Postgres is
down. The daemon's :class:`StoreOutageWatch` probes the store every second; once it has been
unreachable for :data:`ALERT_AFTER` seconds it sends one :class:`bot.platform.StoreOutage`
alert straight to the ops channel through the platform, retried every :data:`RETRY_EVERY`
seconds if the platform fails too; when the store answers again it sends one recovery line
(which says how long it lasted, so it tells the whole story even if the alert never got
through). Questions asked meanwhile do not add alerts: there is one watch, in the daemon.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from bot.platform import ChatPlatform, StoreOutage
from store.db import Database

log = logging.getLogger(__name__)

CHECK_EVERY = 1.0
ALERT_AFTER = 2.0  # a blip shorter than this is not worth paging anyone
RETRY_EVERY = 30.0


class StoreOutageWatch:
    """Probe the store; alert ``channel`` on ``platform`` once per outage, and once when back."""

    def __init__(
        self,
        db: Database,
        platform: ChatPlatform | None,
        channel: str | None,
        *,
        check_every: float = CHECK_EVERY,
        alert_after: float = ALERT_AFTER,
        retry_every: float = RETRY_EVERY,
    ) -> None:
        self._db = db
        self._platform = platform
        self._channel = channel
        self._check_every = check_every
        self._alert_after = alert_after
        self._retry_every = retry_every
        self._down_since: float | None = None  # time.time() of the first failed probe
        self._alerted = False
        self._next_try = 0.0

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.wait(self._check_every):
            self.check()

    def check(self) -> None:
        now = time.time()
        if not self._db.reachable():
            if self._down_since is None:
                self._down_since, self._alerted, self._next_try = now, False, 0.0
            due = now - self._down_since >= self._alert_after and now >= self._next_try
            if due and not self._alerted:
                self._alerted = self._send(StoreOutage(_utc(self._down_since)))
                self._next_try = now + self._retry_every
            return
        if self._down_since is None:
            return
        since, self._down_since = self._down_since, None
        if self._alerted or now - since >= self._alert_after:
            self._send(StoreOutage(_utc(since), back_after=now - since))

    def _send(self, message: StoreOutage) -> bool:
        if self._platform is None or not self._channel:
            return True  # nowhere to send it: the probe's log line is the alert
        try:
            # No outbox row: message id 0 marks nothing a deliverer would look for.
            self._platform.send_ops(self._channel, message, message_id=0)
        except Exception as exc:
            log.warning(
                "could not tell the ops channel about the store (%s); retrying in %.0f s",
                exc,
                self._retry_every,
            )
            return False
        return True


def _utc(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, UTC)
