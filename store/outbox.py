"""The outbox: one durable queue in Postgres for everything that must happen after a commit.

Two families of rows share the ``outbox`` table (docs/ARCHITECTURE.md, "Outbox"):

* **intents** (``source_change``): written by the sync engine in the same transaction as the
  artifact write or deletion that causes them, then applied by
  :class:`sync.freshness.ChangeApplier` (invalidate the answer cache, queue the notices). A crash
  after the content commit leaves the intent pending, so it is applied on the next pass.
* **deliveries** (``notice``, ``ops_alert``, ``ops_recovery``, ``sync_result``): claimed and
  sent by the deliverer (:mod:`bot.outbox`) with claim -> send -> mark.

Every payload is a frozen dataclass with its own dedupe key, so a message queued twice for
the same reason is stored once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from store.db import Connection

Change = Literal["updated", "deleted"]
DELIVERY_KINDS = ("notice", "ops_alert", "ops_recovery", "sync_result")


@dataclass(frozen=True)
class SourceChange:
    """Intent: a committed change of one artifact, still to be applied to cache and threads.

    ``content_hash`` is the new text's hash, or None for a deletion."""

    kind: ClassVar[str] = "source_change"
    artifact_id: str
    change: Change
    content_hash: str | None = None
    version: str | None = None
    # One intent per commit: a page edited back to an earlier text must be applied again.
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def dedupe_key(self) -> str:
        return f"source_change:{self.artifact_id}:{self.token}"


@dataclass(frozen=True)
class Notice:
    """A "source updated" notice for one thread where an answer citing the source was posted."""

    kind: ClassVar[str] = "notice"
    platform: str
    channel: str
    thread: str
    artifact_id: str
    title: str
    url: str
    change: Change
    old_version: str | None
    new_version: str | None
    question: str
    unit_id: str | None
    change_key: str = field(default="", repr=False)

    def dedupe_key(self) -> str:
        # One notice per thread per change, however often the change is reported.
        return (
            f"notice:{self.platform}:{self.channel}:{self.thread}:{self.artifact_id}:"
            f"{self.change_key or self.new_version or self.change}"
        )

    def fields(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("change_key")
        return out


@dataclass(frozen=True)
class OpsAlert:
    """A failing source (a sync run, or a webhook event that gave up)."""

    kind: ClassVar[str] = "ops_alert"
    source: str
    error: str
    run_id: int | None
    ongoing: bool
    key: str

    def dedupe_key(self) -> str:
        return f"ops_alert:{self.source}:{self.key}"

    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "key"}


@dataclass(frozen=True)
class OpsRecovery:
    kind: ClassVar[str] = "ops_recovery"
    source: str
    run_id: int
    failing_since: str
    last_error: str

    def dedupe_key(self) -> str:
        return f"ops_recovery:{self.source}:run:{self.run_id}"


@dataclass(frozen=True)
class SyncResult:
    """The outcome of a ``/kb-sync`` request, for the person who asked."""

    kind: ClassVar[str] = "sync_result"
    request_id: int
    requested_by: Mapping[str, Any]
    reports: tuple[Mapping[str, Any], ...]

    def dedupe_key(self) -> str:
        return f"sync_result:{self.request_id}"

    def fields(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "requested_by": dict(self.requested_by),
            "reports": [dict(r) for r in self.reports],
        }


Message = SourceChange | Notice | OpsAlert | OpsRecovery | SyncResult

ENQUEUE = """
INSERT INTO outbox (kind, dedupe_key, payload) VALUES (%s, %s, %s)
ON CONFLICT (dedupe_key) DO NOTHING
"""


def enqueue(conn: Connection, message: Message) -> bool:
    """Queue ``message`` in the caller's transaction; False if its dedupe key was queued."""
    data = message.fields() if hasattr(message, "fields") else asdict(message)
    return enqueue_json(conn, message.kind, message.dedupe_key(), data)


def enqueue_json(conn: Connection, kind: str, dedupe_key: str, payload: Mapping[str, Any]) -> bool:
    """The untyped form, for tests that plant malformed rows; code uses :func:`enqueue`."""
    return conn.execute(ENQUEUE, (kind, dedupe_key, json.dumps(dict(payload)))).rowcount > 0


# --- intents ------------------------------------------------------------------------------------

# Locked until the applier's transaction ends, so two appliers never apply the same intent and
# a crashed applier's intent is simply pending again.
CLAIM_CHANGES = """
SELECT message_id, payload FROM outbox
WHERE kind = 'source_change' AND sent_at IS NULL AND dead_at IS NULL
  AND (%(artifact_id)s::text IS NULL OR payload ->> 'artifact_id' = %(artifact_id)s)
ORDER BY message_id LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""

MARK_APPLIED = "UPDATE outbox SET sent_at = now(), attempts = attempts + 1 WHERE message_id = %s"

ARTIFACT_LABEL = "SELECT title, url FROM artifacts WHERE artifact_id = %s"


def claim_changes(
    conn: Connection, *, artifact_id: str | None = None, limit: int = 100
) -> list[tuple[int, SourceChange]]:
    """Pending intents (of one artifact, or all), oldest first, locked for this transaction."""
    rows = conn.execute(CLAIM_CHANGES, {"artifact_id": artifact_id, "limit": limit}).fetchall()
    out = []
    for row in rows:
        p = row["payload"]
        change: Change = "deleted" if p.get("change") == "deleted" else "updated"
        out.append(
            (
                int(row["message_id"]),
                SourceChange(
                    p["artifact_id"],
                    change,
                    p.get("content_hash"),
                    p.get("version"),
                    str(p.get("token") or row["message_id"]),
                ),
            )
        )
    return out


def mark_applied(conn: Connection, message_id: int) -> None:
    conn.execute(MARK_APPLIED, (message_id,))


def artifact_label(conn: Connection, artifact_id: str) -> tuple[str, str]:
    """(title, url) of an artifact for a notice; the id and no link once it is gone."""
    row = conn.execute(ARTIFACT_LABEL, (artifact_id,)).fetchone()
    return (row["title"], row["url"]) if row else (artifact_id, "")


# --- delivery claims (bot/outbox.py explains the claim -> send -> mark protocol) -----------------

# One due row, locked so two deliverers never pick the same one, and claimed in the same
# statement. ON CONFLICT covers a deliverer whose snapshot predates another's committed claim.
CLAIM_ONE = """
WITH due AS (
    SELECT o.message_id FROM outbox o
    WHERE o.sent_at IS NULL AND o.dead_at IS NULL AND o.next_attempt_at <= now()
      AND o.kind <> 'source_change'
      AND NOT EXISTS (SELECT 1 FROM outbox_claims c WHERE c.message_id = o.message_id)
    ORDER BY o.next_attempt_at, o.message_id
    LIMIT 1
    FOR UPDATE OF o SKIP LOCKED
), claimed AS (
    INSERT INTO outbox_claims (message_id, claimed_by) SELECT message_id, %s FROM due
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id, claimed_at
)
UPDATE outbox o SET attempts = o.attempts + 1
FROM claimed WHERE o.message_id = claimed.message_id
RETURNING o.message_id, o.kind, o.payload, o.attempts, claimed.claimed_at
"""

# Claims older than the lease belong to a deliverer that died (or hung) mid-send; take them
# over (renewing the lease) so exactly one survivor checks what happened to each.
RECLAIM_STALE = """
WITH stale AS (
    SELECT message_id FROM outbox_claims
    WHERE claimed_at < now() - make_interval(secs => %s)
    ORDER BY claimed_at LIMIT %s
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox_claims c SET claimed_by = %s, claimed_at = now()
FROM stale, outbox o
WHERE c.message_id = stale.message_id AND o.message_id = c.message_id
RETURNING c.message_id, o.kind, o.payload, o.attempts, o.created_at
"""

MARK_SENT = """
UPDATE outbox SET sent_at = now(), last_error = NULL WHERE message_id = %s AND sent_at IS NULL
"""

RESCHEDULE = """
UPDATE outbox SET next_attempt_at = now() + make_interval(secs => %s), last_error = %s,
    attempts = greatest(0, attempts - %s)
WHERE message_id = %s
"""

MARK_DEAD = "UPDATE outbox SET dead_at = now(), last_error = %s WHERE message_id = %s"

NOTE_ERROR = "UPDATE outbox SET last_error = %s WHERE message_id = %s"

RELEASE_CLAIM = "DELETE FROM outbox_claims WHERE message_id = %s AND claimed_by = %s"


@dataclass(frozen=True)
class ClaimedMessage:
    """A delivery row claimed by one deliverer; ``payload`` is decoded by bot/outbox.py."""

    message_id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    since: datetime


def claim_one(conn: Connection, claimed_by: str) -> ClaimedMessage | None:
    row = conn.execute(CLAIM_ONE, (claimed_by,)).fetchone()
    if row is None:
        return None
    return ClaimedMessage(
        row["message_id"], row["kind"], row["payload"], row["attempts"], row["claimed_at"]
    )


def reclaim_stale(
    conn: Connection, claimed_by: str, lease_seconds: float, limit: int
) -> list[ClaimedMessage]:
    rows = conn.execute(RECLAIM_STALE, (lease_seconds, limit, claimed_by)).fetchall()
    return [
        ClaimedMessage(r["message_id"], r["kind"], r["payload"], r["attempts"], r["created_at"])
        for r in rows
    ]


def mark_sent(conn: Connection, message_id: int, claimed_by: str) -> None:
    conn.execute(MARK_SENT, (message_id,))
    conn.execute(RELEASE_CLAIM, (message_id, claimed_by))


def reschedule(
    conn: Connection,
    message_id: int,
    claimed_by: str,
    *,
    delay_seconds: float,
    error: str,
    refund_attempt: bool = False,
) -> None:
    conn.execute(RESCHEDULE, (delay_seconds, error, 1 if refund_attempt else 0, message_id))
    conn.execute(RELEASE_CLAIM, (message_id, claimed_by))


def mark_dead(conn: Connection, message_id: int, claimed_by: str, error: str) -> None:
    conn.execute(MARK_DEAD, (error, message_id))
    conn.execute(RELEASE_CLAIM, (message_id, claimed_by))


def note_error(conn: Connection, message_id: int, error: str) -> None:
    conn.execute(NOTE_ERROR, (error, message_id))
