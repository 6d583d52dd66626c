"""The outbox deliverer: sends queued notices, ops alerts and sync results to chat platforms.

Delivery is claim -> send -> mark, never "send inside the claiming transaction": a send is a
network call that can outlive a transaction, and a crash after the send but before COMMIT
would silently resend. Instead:

1. claim one due row (``FOR UPDATE SKIP LOCKED`` + a row in ``outbox_claims``) and commit;
2. send it;
3. mark it sent (and drop the claim) in one transaction; or, if the platform says it was not
   delivered (HTTP 429, an API error, connection refused), reschedule it with backoff or
   ``Retry-After``; or mark it dead after ``max_attempts`` or a permanent error.

If the outcome is unknown (the process died between 1 and 3, or a timeout after sending), the
claim stays. Once older than the lease, a deliverer takes it over and asks the platform whether
the message arrived (Slack: the ``kb_outbox`` metadata marker in the thread or channel). Yes:
mark sent. No: send again. Cannot tell (ephemeral replies): mark dead rather than risk a
duplicate. So nothing is sent twice, and only an unverifiable ephemeral reply can be lost.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.platform import (
    ChatPlatform,
    DeliveryFailed,
    OpsAlert,
    OpsRecovery,
    Outgoing,
    Requester,
    SourceNotice,
    SyncReport,
    SyncResult,
)
from store import outbox
from store.db import Database
from store.outbox import ClaimedMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboxPolicy:
    max_attempts: int = 8
    base_delay: float = 5.0
    max_delay: float = 1800.0
    # Longer than one send can take (client timeout 15 s): a claim older than this is orphaned.
    lease_seconds: float = 120.0
    poll_seconds: float = 2.0
    batch: int = 50


UNKNOWN_OUTCOME = "outcome unknown after an interrupted send; not resent, to avoid a duplicate"


class BadPayload(ValueError):
    """An outbox row this deliverer cannot make sense of; retrying will not help."""


class OutboxDeliverer:
    def __init__(
        self,
        db: Database,
        platforms: Mapping[str, ChatPlatform],
        ops_channel: str | None,
        *,
        ops_platform: str = "slack",
        policy: OutboxPolicy | None = None,
        instance_id: str | None = None,
    ) -> None:
        self._db = db
        self._platforms = dict(platforms)
        self._ops_channel = ops_channel
        self._ops_platform = ops_platform
        self.policy = policy or OutboxPolicy()
        self._id = instance_id or f"deliverer-{uuid.uuid4().hex[:12]}"
        self._paused_until: dict[str, float] = {}  # platform -> monotonic time (Retry-After)

    def deliver_due(self, limit: int = 50) -> int:
        """Send up to ``limit`` due messages; returns how many were sent."""
        self._recover_orphans()
        sent = 0
        for _ in range(limit):
            with self._db.connection() as conn:
                claimed = outbox.claim_one(conn, self._id)
            if claimed is None:
                break
            sent += self._deliver(claimed)
        return sent

    def run_forever(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set; a database hiccup is logged and retried, not fatal."""
        log.info("outbox deliverer %s started", self._id)
        while not stop.is_set():
            try:
                sent = self.deliver_due(self.policy.batch)
            except Exception:
                log.exception(
                    "outbox delivery failed; retrying in %.0f s", self.policy.poll_seconds
                )
                sent = 0
            if sent < self.policy.batch:
                stop.wait(self.policy.poll_seconds)
        log.info("outbox deliverer %s stopped", self._id)

    # --- one message ----------------------------------------------------------------------------

    def _deliver(self, claimed: ClaimedMessage) -> int:
        try:
            message = parse_payload(claimed.kind, claimed.payload)
            platform, channel = self._route(message)
        except BadPayload as exc:
            log.warning("outbox message %s dropped: %s", claimed.message_id, exc)
            self._finish(claimed, dead=str(exc))
            return 0
        paused = self._paused_until.get(platform.name, 0.0) - time.monotonic()
        if paused > 0:
            self._finish(claimed, retry_in=paused, error="waiting for Retry-After", refund=True)
            return 0
        try:
            self._send(platform, channel, message, claimed.message_id)
        except DeliveryFailed as exc:
            self._failed(claimed, platform.name, exc)
            return 0
        except Exception as exc:  # a bug or an unexpected library error: outcome unknown
            log.exception("outbox message %s: unexpected error while sending", claimed.message_id)
            self._failed(claimed, platform.name, DeliveryFailed(repr(exc)[:200], ambiguous=True))
            return 0
        with self._db.connection() as conn:
            outbox.mark_sent(conn, claimed.message_id, self._id)
        log.info(
            "outbox message %s (%s) sent via %s", claimed.message_id, claimed.kind, platform.name
        )
        return 1

    def _route(self, message: Outgoing) -> tuple[ChatPlatform, str | None]:
        if isinstance(message, OpsAlert | OpsRecovery):
            if not self._ops_channel:
                raise BadPayload("KB_OPS_CHANNEL is not set, so ops alerts have nowhere to go")
            name, channel = self._ops_platform, self._ops_channel
        elif isinstance(message, SourceNotice):
            name, channel = message.platform, message.channel
        else:
            name, channel = message.requested_by.platform, message.requested_by.channel
        platform = self._platforms.get(name)
        if platform is None:
            raise BadPayload(f"no {name!r} platform is configured in this process")
        return platform, channel

    @staticmethod
    def _send(
        platform: ChatPlatform, channel: str | None, message: Outgoing, message_id: int
    ) -> None:
        if isinstance(message, SourceNotice):
            platform.send_notice(message, message_id=message_id)
        elif isinstance(message, OpsAlert | OpsRecovery):
            assert channel is not None  # _route guarantees it
            platform.send_ops(channel, message, message_id=message_id)
        else:
            platform.send_sync_result(message, message_id=message_id)

    def _failed(self, claimed: ClaimedMessage, platform: str, exc: DeliveryFailed) -> None:
        error = str(exc)[:500]
        if exc.ambiguous:
            # Leave the claim: once the lease runs out, recovery asks the platform what happened.
            log.warning(
                "outbox message %s: %s; will verify before resending", claimed.message_id, error
            )
            with self._db.connection() as conn:
                outbox.note_error(conn, claimed.message_id, error)
            return
        if exc.retry_after is not None:
            self._paused_until[platform] = time.monotonic() + exc.retry_after
            log.info("%s asked us to wait %.0f s (429)", platform, exc.retry_after)
            self._finish(claimed, retry_in=exc.retry_after, error=error, refund=True)
        elif exc.permanent or claimed.attempts >= self.policy.max_attempts:
            log.warning(
                "outbox message %s is dead after %d attempts: %s",
                claimed.message_id,
                claimed.attempts,
                error,
            )
            self._finish(claimed, dead=error)
        else:
            delay = self._backoff(claimed.attempts)
            log.info(
                "outbox message %s failed (%s); retrying in %.0f s",
                claimed.message_id,
                error,
                delay,
            )
            self._finish(claimed, retry_in=delay, error=error)

    def _finish(
        self,
        claimed: ClaimedMessage,
        *,
        dead: str | None = None,
        retry_in: float = 0.0,
        error: str = "",
        refund: bool = False,
    ) -> None:
        with self._db.connection() as conn:
            if dead is not None:
                outbox.mark_dead(conn, claimed.message_id, self._id, dead)
            else:
                outbox.reschedule(
                    conn,
                    claimed.message_id,
                    self._id,
                    delay_seconds=retry_in,
                    error=error,
                    refund_attempt=refund,
                )

    def _backoff(self, attempts: int) -> float:
        ceiling = min(self.policy.max_delay, self.policy.base_delay * 2 ** max(0, attempts - 1))
        return random.uniform(ceiling * 0.75, ceiling)

    # --- orphans --------------------------------------------------------------------------------

    def take_over(self) -> None:
        """Settle every claim left by an earlier deliverer now, not once its lease runs out.
        Only for the one deliverer of a store (the active daemon's, store/daemon_lock.py):
        any other claim then belongs to a process that has stopped or died, mid-send
        perhaps, so each is checked with the platform before it is sent again."""
        self._recover_orphans(lease_seconds=0.0, limit=1000)

    def _recover_orphans(self, *, lease_seconds: float | None = None, limit: int = 20) -> None:
        lease = self.policy.lease_seconds if lease_seconds is None else lease_seconds
        with self._db.connection() as conn:
            orphans = outbox.reclaim_stale(conn, self._id, lease, limit)
        for claimed in orphans:
            try:
                message = parse_payload(claimed.kind, claimed.payload)
                platform, channel = self._route(message)
            except BadPayload as exc:
                self._finish(claimed, dead=str(exc))
                continue
            try:
                arrived = platform.was_delivered(
                    message, channel=channel, message_id=claimed.message_id, since=claimed.since
                )
            except Exception as exc:
                # Keep the claim; the check is repeated once the renewed lease runs out.
                log.warning("could not check outbox message %s: %s", claimed.message_id, exc)
                continue
            if arrived is True:
                with self._db.connection() as conn:
                    outbox.mark_sent(conn, claimed.message_id, self._id)
                log.info(
                    "outbox message %s had been delivered before a restart", claimed.message_id
                )
            elif arrived is False and claimed.attempts >= self.policy.max_attempts:
                self._finish(claimed, dead=f"never arrived after {claimed.attempts} attempts")
            elif arrived is False:
                self._finish(claimed, error="the last attempt never arrived; sending again")
            else:
                self._finish(
                    claimed,
                    dead=UNKNOWN_OUTCOME,
                )


# --- payloads -----------------------------------------------------------------------------------


def parse_payload(kind: str, payload: Any) -> Outgoing:
    """Turn an outbox row into a typed message; :class:`BadPayload` names what is wrong."""
    if isinstance(payload, str | bytes):
        payload = json.loads(payload)
    if not isinstance(payload, dict):
        raise BadPayload(f"{kind} payload is not a JSON object")
    p = _Fields(kind, payload)
    if kind == "notice":
        change = p.text("change")
        if change not in ("updated", "deleted"):
            raise BadPayload(f"notice change must be updated or deleted, got {change!r}")
        return SourceNotice(
            platform=p.text("platform", "slack"),
            channel=p.text("channel"),
            thread=p.text("thread"),
            artifact_id=p.text("artifact_id"),
            title=p.text("title", "") or p.text("artifact_id"),
            url=p.text("url", ""),
            change="updated" if change == "updated" else "deleted",
            old_version=p.optional("old_version"),
            new_version=p.optional("new_version"),
            question=p.text("question", ""),
            unit_id=p.optional("unit_id"),
        )
    if kind == "ops_alert":
        return OpsAlert(
            source=p.text("source"),
            error=p.text("error", "unknown error"),
            run_id=p.integer("run_id"),
            ongoing=bool(payload.get("ongoing")),
        )
    if kind == "ops_recovery":
        since = p.optional("failing_since")
        try:
            failing_since = datetime.fromisoformat(since).astimezone(UTC) if since else None
        except ValueError:
            failing_since = None
        return OpsRecovery(
            source=p.text("source"),
            run_id=p.integer("run_id"),
            failing_since=failing_since,
            last_error=p.text("last_error", ""),
        )
    if kind == "sync_result":
        asker = payload.get("requested_by")
        if not isinstance(asker, dict):
            raise BadPayload("sync_result has no requested_by object")
        a = _Fields("requested_by", asker)
        reports = payload.get("reports") or []
        if not isinstance(reports, list):
            raise BadPayload("sync_result reports is not a list")
        return SyncResult(
            request_id=p.integer("request_id"),
            requested_by=Requester(
                platform=a.text("platform", "slack"),
                user=a.text("user"),
                channel=a.text("channel"),
                response_url=a.optional("response_url"),
            ),
            reports=tuple(_report(r) for r in reports if isinstance(r, dict)),
        )
    raise BadPayload(f"unknown outbox kind {kind!r}")


def _report(raw: dict[str, Any]) -> SyncReport:
    r = _Fields("report", raw)
    errors = raw.get("errors") or []
    return SyncReport(
        source=r.text("source", "?"),
        status=r.text("status", "?"),
        synced=r.integer("synced") or 0,
        unchanged=r.integer("unchanged") or 0,
        deleted=r.integer("deleted") or 0,
        skipped=r.integer("skipped") or 0,
        failed=r.integer("failed") or 0,
        errors=tuple(str(e) for e in errors) if isinstance(errors, list) else (str(errors),),
        seconds=float(raw.get("seconds") or 0.0),
    )


class _Fields:
    def __init__(self, kind: str, data: dict[str, Any]) -> None:
        self._kind = kind
        self._data = data

    def text(self, key: str, default: str | None = None) -> str:
        value = self._data.get(key)
        if value is None or value == "":
            if default is None:
                raise BadPayload(f"{self._kind} payload has no {key!r}")
            return default
        return str(value)

    def optional(self, key: str) -> str | None:
        value = self._data.get(key)
        return None if value is None or value == "" else str(value)

    def integer(self, key: str) -> int | None:
        value = self._data.get(key)
        try:
            return None if value is None else int(value)
        except (TypeError, ValueError):
            return None
